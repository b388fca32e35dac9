"""The source image series a DICOM SEG or RT-STRUCT refers to: its headers in slice order, its
voxel grid, and a check that it has the UIDs a reference needs.

Real exports sometimes carry empty UIDs (anonymisers that blank them, as in the TotalSegmentator
example series, where the SOP Instance/Class UIDs survive only in the file meta).  An object that
references empty UIDs points at nothing, so by default such a series is refused with a message
naming each missing UID; with ``repair=True`` the SOP UIDs are taken from the file meta and missing
Study/Series/Frame of Reference UIDs are generated, and the repair is reported (never silent).
The files on disk are never modified.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ExportError
from ..io.dicom import series_in_folder
from ..volume import Volume

log = logging.getLogger(__name__)

UID_ATTRIBUTES = {
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
    "SOPClassUID": "MediaStorageSOPClassUID",
    "StudyInstanceUID": None,
    "SeriesInstanceUID": None,
    "FrameOfReferenceUID": None,
}


@dataclass
class ReferenceSeries:
    """Headers of the source series sorted along the slice normal (k = 0 first), and its grid."""

    datasets: list
    files: list[Path]
    grid: Volume
    repairs: list[str] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return str(self.datasets[0].get("Modality", ""))


def _missing_uids(datasets: list) -> dict[str, int]:
    """Attribute -> number of data sets where it is absent or empty."""
    return {attr: n for attr in UID_ATTRIBUTES if (n := sum(not str(ds.get(attr, "") or "").strip() for ds in datasets))}


def _repair(datasets: list) -> list[str]:
    """Fill empty UIDs in place (copies of the headers): SOP UIDs from the file meta, the rest generated."""
    from pydicom.uid import generate_uid

    repairs = []
    for attr, meta_attr in UID_ATTRIBUTES.items():
        empty = [ds for ds in datasets if not str(ds.get(attr, "") or "").strip()]
        if not empty:
            continue
        if meta_attr:
            lacking = [ds for ds in empty if not str(getattr(getattr(ds, "file_meta", None), meta_attr, "") or "")]
            if lacking:
                raise ExportError(f"{len(lacking)} slice(s) have no {attr} in the data set nor in the file meta.",
                                  "The series cannot be referenced; export it again from the PACS/scanner.")
            for ds in empty:
                setattr(ds, attr, ds.file_meta.get(meta_attr))
            repairs.append(f"{attr} copied from the file meta ({meta_attr}) for {len(empty)} slice(s)")
        else:
            existing = {str(ds.get(attr)) for ds in datasets if str(ds.get(attr, "") or "").strip()}
            how, uid = ("set to the one the other slices carry", existing.pop()) if len(existing) == 1 \
                else ("generated", generate_uid())
            for ds in empty:
                setattr(ds, attr, uid)
            repairs.append(f"{attr} was empty in {len(empty)} slice(s): {how} {uid}")
    return repairs


def _slice_order(datasets: list) -> np.ndarray:
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return np.argsort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for ds in datasets])


def _grid(datasets: list) -> Volume:
    """Voxel grid of headers already in slice order."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    pos = np.array([np.dot(normal, np.asarray(ds.ImagePositionPatient, float)) for ds in datasets])
    step = float(np.median(np.diff(pos))) if len(pos) > 1 else float(datasets[0].get("SliceThickness", 1.0) or 1.0)
    row_spacing, col_spacing = (float(x) for x in datasets[0].PixelSpacing)
    shape = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    return Volume(np.zeros(shape, np.uint8), spacing=(col_spacing, row_spacing, step),
                  origin=tuple(float(x) for x in datasets[0].ImagePositionPatient),
                  direction=np.stack([row_cos, col_cos, normal], 1), name="reference")


def read_reference_series(folder: "str | Path", repair: bool = False, series_uid: Optional[str] = None) -> ReferenceSeries:
    """Headers and grid of the one image series in ``folder``; refuse or repair empty UIDs (see module doc)."""
    folder = Path(folder)
    groups = series_in_folder(folder)
    if not groups:
        raise ExportError(f"{folder} contains no DICOM image slices.",
                          "Point --reference-dicom at the folder holding the source CT/MR series.")
    if series_uid is None and len(groups) > 1:
        raise ExportError(f"{folder} holds {len(groups)} series ({', '.join(u or '(no UID)' for u in groups)}).",
                          "Put the source series alone in a folder.")
    entries = groups[series_uid if series_uid is not None else next(iter(groups))]
    files = [f for f, _ in entries]
    datasets = [copy.deepcopy(ds) for _, ds in entries]
    missing = _missing_uids(datasets)
    repairs: list[str] = []
    if missing:
        listing = ", ".join(f"{attr} ({n} of {len(datasets)} slices)" for attr, n in missing.items())
        if not repair:
            in_meta = [a for a in missing if UID_ATTRIBUTES[a]]
            raise ExportError(
                f"The reference series in {folder} has empty UIDs: {listing}. A DICOM SEG/RT-STRUCT referencing "
                "it would point at nothing.",
                "Re-export the series with its UIDs, or pass --repair-uids to "
                + (f"copy {' and '.join(in_meta)} from the file meta and " if in_meta else "")
                + "generate the missing Study/Series/Frame of Reference UIDs (the export then reports them).")
        repairs = _repair(datasets)
        for message in repairs:
            log.warning("Reference series repaired: %s", message)
    order = _slice_order(datasets)
    datasets = [datasets[i] for i in order]
    return ReferenceSeries(datasets, [files[i] for i in order], _grid(datasets), repairs)


def labels_on_series(labels: Volume, ref: ReferenceSeries) -> Volume:
    """The label map on the series' grid: as is when it already is, else nearest-neighbour resampled
    (exact for flips/permutations such as a NIfTI export of the same series); refuses maps that
    do not cover the series or that would change volume by resampling."""
    from ..measure.grid import resample_labels
    from ..measure.segments import label_array

    if labels.same_grid(ref.grid, tol=1e-3):
        return labels
    out = resample_labels(labels, ref.grid)
    before = np.bincount(label_array(labels).ravel()) * labels.voxel_volume_mm3
    after = np.bincount(out.array.ravel(), minlength=len(before)) * ref.grid.voxel_volume_mm3
    if before[1:].sum() > 0 and after[1:].sum() == 0:
        raise ExportError("The segmentation does not overlap the reference series (no label falls on its grid).",
                          "Give the DICOM series the segmentation was made from.")
    change = np.abs(after[1:len(before)].sum() - before[1:].sum()) / max(before[1:].sum(), 1e-9)
    if change > 0.01:
        log.warning("The segmentation was resampled onto the reference series grid; total labelled volume changed "
                    "by %.1f%%", 100 * change)
    return out
