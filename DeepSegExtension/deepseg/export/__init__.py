"""Writers for results: Slicer .seg.nrrd, NIfTI label maps, provenance; DICOM SEG and RT-STRUCT."""
