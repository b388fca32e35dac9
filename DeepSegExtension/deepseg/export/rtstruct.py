"""RT Structure Set (RT-STRUCT) export and rasterisation, written with pydicom.

One ROI per non-empty label: ROI name (the TG-263 name when the label has one), RT ROI Interpreted
Type (ORGAN, GTV, ...), display colour and, when known, its SNOMED CT code (RT ROI Identification
Code Sequence).  Contours are traced per slice with marching squares at the 0.5 level of the mask
(so the polygon runs half-way between inside and outside pixel centres) and placed in patient
coordinates with each slice's own Image Position/Orientation, so any series orientation is right.
Holes and separate islands are separate CLOSED_PLANAR contours on the slice; readers fill them
with the even-odd rule (a pixel is inside when an odd number of a slice's contours enclose it),
as ``rasterise_rtstruct`` does.

rt-utils 1.2.7 (PyPI) was read and not used: it loads a series only when pixel data decode
(a JPEG 2000 series such as the TotalSegmentator example needs an extra decoder), traces OpenCV
contours on pixel indices and reads them back by rounding vertices to whole pixels and filling
polygons with their boundary (over-filling by up to a pixel), and sets no interpreted type or code.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import find_objects

from ..version import __version__
from ..errors import ExportError
from ..models.card import LabelInfo
from ..volume import Volume
from .dicom_ref import ReferenceSeries, labels_on_series

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
INTERPRETED_TYPES = {"EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "OAR", "BOLUS",
                     "AVOIDANCE", "ORGAN", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY",
                     "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT",
                     "FIXATION", "DOSE_REGION", "CONTROL", "DOSE_MEASUREMENT"}


def _drop_collinear(poly: np.ndarray) -> np.ndarray:
    """Remove vertices lying on the straight line through their neighbours (closed polygon)."""
    before, after = np.roll(poly, 1, axis=0), np.roll(poly, -1, axis=0)
    d1, d2 = poly - before, after - poly
    turn = np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) > 1e-9
    return poly[turn]


def slice_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (N x 2, (column, row) pixel coordinates) outlining a 2D mask, holes included."""
    from skimage.measure import find_contours

    out = []
    for c in find_contours(np.pad(mask2d, 1).astype(np.float32), 0.5):
        c = _drop_collinear(c[:-1]) - 1.0  # the repeated end point and straight-run vertices go
        if len(c) >= 3:
            out.append(c[:, ::-1])
    return out


def _patient_points(ds, colrow: np.ndarray) -> np.ndarray:
    """Pixel (column, row) -> patient LPS mm on the slice ``ds``."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(x) for x in ds.PixelSpacing)
    return (np.asarray(ds.ImagePositionPatient, float)[None]
            + colrow[:, :1] * col_spacing * iop[None, :3] + colrow[:, 1:] * row_spacing * iop[None, 3:])


CONTOUR_DATA = 0x30060050


def _decimal_strings(tag: int, values: np.ndarray):
    """A DS element already encoded (pydicom would otherwise build and validate one object per
    number, which dominates the run time for large structure sets); 0.001 mm resolution."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    raw = "\\".join(f"{v:.3f}" for v in values).encode("ascii")
    raw += b" " * (len(raw) % 2)
    return RawDataElement(Tag(tag), "DS", len(raw), raw, 0, False, True)


def _item(**kw):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _code_item(code) -> object:
    return _item(CodeValue=code.value, CodingSchemeDesignator=code.scheme, CodeMeaning=code.meaning)


def roi_name(label: LabelInfo, use_tg263: bool = True) -> str:
    return label.display_name(use_tg263)[:64]


def build_rtstruct(labels: Volume, label_info: Sequence[LabelInfo], ref: ReferenceSeries,
                   use_tg263: bool = True, label: str = "DeepSeg"):
    """The RT-STRUCT data set (not yet written) for the non-empty labels of ``labels``."""
    from pydicom.dataset import FileMetaDataset, FileDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    arr = labels_on_series(labels, ref).array
    present = set(np.unique(arr).tolist())
    kept = [lab for lab in label_info if lab.value in present]
    if not kept:
        raise ExportError("The segmentation has no labelled voxel on the reference series: nothing to export.",
                          "Check that the segmentation belongs to this series.")
    boxes = find_objects(arr)
    src = ref.datasets[0]
    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, meta.MediaStorageSOPInstanceUID
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription"):
        setattr(ds, kw, src.get(kw, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = generate_uid(), 902, f"{label} structures"[:64]
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "DeepSeg", "DeepSeg", __version__
    ds.OperatorsName = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SeriesDate, ds.SeriesTime = ds.StructureSetDate, ds.StructureSetTime
    frame_uid = str(src.FrameOfReferenceUID)
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = src.get("PositionReferenceIndicator", "")
    contour_images = [_item(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID)
                      for d in ref.datasets]
    ds.ReferencedFrameOfReferenceSequence = [_item(
        FrameOfReferenceUID=frame_uid,
        RTReferencedStudySequence=[_item(
            ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",  # Detached Study Management (as the standard requires)
            ReferencedSOPInstanceUID=src.StudyInstanceUID,
            RTReferencedSeriesSequence=[_item(SeriesInstanceUID=src.SeriesInstanceUID,
                                              ContourImageSequence=contour_images)])])]
    rois, contours, observations = [], [], []
    for number, lab in enumerate(kept, start=1):
        interpreted = lab.interpreted_type.upper() if lab.interpreted_type.upper() in INTERPRETED_TYPES else "ORGAN"
        rois.append(_item(ROINumber=number, ReferencedFrameOfReferenceUID=frame_uid, ROIName=roi_name(lab, use_tg263),
                          ROIDescription=lab.name[:64], ROIGenerationAlgorithm="AUTOMATIC"))
        seq = []
        ks, js, is_ = boxes[lab.value - 1]
        for k in range(ks.start, ks.stop):
            sl = ref.datasets[k]
            for poly in slice_contours(arr[k, js, is_] == lab.value):
                pts = _patient_points(sl, poly + [is_.start, js.start])
                item = _item(ContourImageSequence=[_item(ReferencedSOPClassUID=sl.SOPClassUID,
                                                         ReferencedSOPInstanceUID=sl.SOPInstanceUID)],
                             ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(pts))
                item[CONTOUR_DATA] = _decimal_strings(CONTOUR_DATA, pts.ravel())
                seq.append(item)
        contours.append(_item(ReferencedROINumber=number, ROIDisplayColor=list(lab.color), ContourSequence=seq))
        obs = _item(ObservationNumber=number, ReferencedROINumber=number, RTROIInterpretedType=interpreted,
                    ROIInterpreter="")
        if lab.type:
            obs.RTROIIdentificationCodeSequence = [_code_item(lab.type)]
        observations.append(obs)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours
    ds.RTROIObservationsSequence = observations
    return ds


def write_rtstruct(path: "str | Path", labels: Volume, label_info: Sequence[LabelInfo], ref: ReferenceSeries,
                   use_tg263: bool = True) -> dict:
    """Write the RT-STRUCT; returns a summary (UIDs, ROI names)."""
    ds = build_rtstruct(labels, label_info, ref, use_tg263)
    ds.save_as(str(path), enforce_file_format=True)
    return {"file": str(path), "sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
            "study_instance_uid": str(ds.StudyInstanceUID),
            "rois": [str(r.ROIName) for r in ds.StructureSetROISequence], "reference_repairs": ref.repairs}


def rasterise_rtstruct(path: "str | Path", ref: ReferenceSeries) -> dict[str, np.ndarray]:
    """ROI name -> boolean mask on ``ref``'s grid: each contour is matched to its slice by position
    along the slice normal and filled with the even-odd rule (pixel centres inside the polygon)."""
    import pydicom
    from skimage.draw import polygon

    ds = pydicom.dcmread(str(path))
    grid = ref.grid
    origin, axes = np.asarray(grid.origin), grid.direction * np.asarray(grid.spacing)
    inverse = np.linalg.inv(axes)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out = {}
    for roi in ds.ROIContourSequence:
        mask = np.zeros(grid.shape, bool)
        for c in getattr(roi, "ContourSequence", []):
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            ijk = (pts - origin) @ inverse.T
            k = int(round(float(np.median(ijk[:, 2]))))
            if not 0 <= k < grid.shape[0]:
                continue
            rr, cc = polygon(ijk[:, 1], ijk[:, 0], shape=grid.shape[1:])
            mask[k, rr, cc] ^= True
        out[names[int(roi.ReferencedROINumber)]] = mask
    return out
