"""DICOM Segmentation (SEG) objects with highdicom, referencing the source CT/MR series.

Each non-empty label becomes one segment (numbered 1..N in label order) with its name, colour,
SNOMED CT category/type(/modifier) and the algorithm that made it.  A label without a type code is
typed with a local code (scheme ``99DEEPSEG``, as in the .seg.nrrd files) so no structure is
mislabelled as something it is not.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..version import __version__
from ..errors import ExportError
from ..models.card import Code, LabelInfo
from ..volume import Volume
from .dicom_ref import ReferenceSeries, labels_on_series

log = logging.getLogger(__name__)


LOCAL_SCHEME = "99DEEPSEG"


def type_code(label: LabelInfo) -> Code:
    """The label's SNOMED CT type, or a local code naming it when it has none."""
    return label.type or Code(f"deepseg-{label.value}", LOCAL_SCHEME, label.name)


def _local_scheme():
    """Coding Scheme Identification item declaring the local scheme, as DICOM asks for private schemes."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "DeepSeg local structure codes (structures without a SNOMED CT code)"
    item.CodingSchemeResponsibleOrganization = "DeepSeg"
    return item


def _coded(code: Code):
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning)


def segment_descriptions(labels: Sequence[LabelInfo], automatic: bool = True) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="DeepSeg", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    out = []
    for number, lab in enumerate(labels, start=1):
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=lab.name[:64],
            segmented_property_category=_coded(lab.category), segmented_property_type=_coded(type_code(lab)),
            algorithm_type="AUTOMATIC" if automatic else "MANUAL",
            algorithm_identification=algorithm if automatic else None,
            tracking_id=f"label {lab.value}", tracking_uid=hd.UID(),
            display_color=hd.color.CIELabColor.from_rgb(*lab.color)))
        if lab.modifier:
            out[-1].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [_coded(lab.modifier)]
    return out


def write_dicom_seg(path: "str | Path", labels: Volume, label_info: Sequence[LabelInfo], ref: ReferenceSeries,
                    series_description: str = "DeepSeg segmentation", automatic: bool = True,
                    deflate: bool = True) -> dict:
    """Write a binary DICOM SEG of ``labels`` referencing ``ref``; returns a summary (UIDs, segments).

    ``deflate``: use the (lossless, standard) Deflated Explicit VR Little Endian transfer syntax; the
    bit-packed frames are mostly zeros, so files are ~100x smaller.  A few tools (e.g. dicom3tools)
    cannot read it: ``deflate=False`` writes plain Explicit VR Little Endian."""
    import highdicom as hd
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every copied module at INFO
    on_grid = labels_on_series(labels, ref)
    arr = on_grid.array
    present = set(np.unique(arr).tolist())
    kept = [lab for lab in label_info if lab.value in present]
    skipped = [lab.name for lab in label_info if lab.value not in present]
    if not kept:
        raise ExportError("The segmentation has no labelled voxel on the reference series: nothing to export.",
                          "Check that the segmentation belongs to this series.")
    if skipped:
        log.info("DICOM SEG: %d empty segment(s) not written: %s", len(skipped), ", ".join(skipped))
    numbers = np.zeros(int(arr.max()) + 1, np.uint16)
    for number, lab in enumerate(kept, start=1):
        numbers[lab.value] = number
    seg = hd.seg.Segmentation(
        source_images=ref.datasets, pixel_array=numbers[arr], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(kept, automatic), series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="DeepSeg", manufacturer_model_name="DeepSeg",
        software_versions=__version__, device_serial_number="none", series_description=series_description[:64],
        content_label="DEEPSEG", content_description=series_description[:64])
    if any(type_code(lab).scheme == LOCAL_SCHEME for lab in kept):
        seg.CodingSchemeIdentificationSequence = [_local_scheme()]
    if deflate:
        seg.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    seg.save_as(str(path))
    return {"file": str(path), "sop_instance_uid": str(seg.SOPInstanceUID),
            "series_instance_uid": str(seg.SeriesInstanceUID), "study_instance_uid": str(seg.StudyInstanceUID),
            "segments": [lab.name for lab in kept], "skipped_empty": skipped, "reference_repairs": ref.repairs}


def read_dicom_seg(path: "str | Path", ref: ReferenceSeries) -> tuple[Volume, list[LabelInfo]]:
    """A DICOM SEG back as a label map on ``ref``'s grid; label values are restored from the segments'
    tracking ids (``label N``) when present, else the segment numbers are used."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    uids = [str(ds.SOPInstanceUID) for ds in ref.datasets]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                               relabel=False, ignore_spatial_locations=True)
    labels = []
    lut = np.zeros(max(seg.get_segment_numbers()) + 1, np.uint16)
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        tracking = str(getattr(desc, "tracking_id", "") or "")
        value = int(tracking.split()[-1]) if tracking.startswith("label ") else number
        lut[number] = value
        t = desc.segmented_property_type
        c = desc.segmented_property_category
        lab_value = desc.get("RecommendedDisplayCIELabValue")
        color = hd.color.CIELabColor.from_dicom_value(lab_value).to_rgb() if lab_value else (128, 174, 128)
        modifier = (t.get("SegmentedPropertyTypeModifierCodeSequence") or [None])[0]
        labels.append(LabelInfo(value, desc.segment_label, tuple(int(c) for c in color),
                                category=Code(c.value, c.scheme_designator, c.meaning),
                                type=None if t.scheme_designator == LOCAL_SCHEME else Code(t.value, t.scheme_designator,
                                                                                         t.meaning),
                                modifier=Code(str(modifier.CodeValue), str(modifier.CodingSchemeDesignator),
                                              str(modifier.CodeMeaning)) if modifier is not None else None))
    return ref.grid.with_array(lut[np.asarray(pixels)]), labels
