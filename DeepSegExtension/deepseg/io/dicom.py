"""Read a DICOM series folder into a ``Volume``, refusing folders that would give a wrong volume.

Checks before reading: one series only (else the user is told which series there are and how to
pick one), one orientation and matrix size, no missing slices (gaps in slice positions).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..volume import Volume


def _headers(folder: Path) -> list:
    import pydicom

    out = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # not DICOM (DICOMDIR, notes, thumbnails...): ignore
            continue
        if "ImagePositionPatient" in ds and "PixelSpacing" in ds:
            out.append((f, ds))
    return out


def series_in_folder(folder: "str | Path") -> dict[str, list]:
    """Image files grouped by Series Instance UID (empty UIDs form one group)."""
    groups: dict[str, list] = defaultdict(list)
    for f, ds in _headers(Path(folder)):
        groups[str(ds.get("SeriesInstanceUID", "") or "")].append((f, ds))
    return dict(groups)


def read_dicom_series(folder: "str | Path", series_uid: Optional[str] = None, name: str = "") -> Volume:
    import SimpleITK as sitk

    folder = Path(folder)
    groups = series_in_folder(folder)
    if not groups:
        raise InputError(f"{folder} contains no DICOM image slices.",
                         "Point --input at the folder that holds the series' .dcm files.")
    if series_uid is None:
        if len(groups) > 1:
            listing = "; ".join(f"{uid or '(no UID)'}: {len(v)} slices, "
                                f"{v[0][1].get('Modality', '?')} {v[0][1].get('SeriesDescription', '')}".strip()
                                for uid, v in groups.items())
            raise InputError(f"{folder} mixes {len(groups)} DICOM series ({listing}).",
                             "Put each series in its own folder, or pass the series as FOLDER::SERIES_UID.")
        series_uid = next(iter(groups))
    if series_uid not in groups:
        raise InputError(f"Series {series_uid} is not in {folder}.", "List the folder's series and pick one.")
    slices = groups[series_uid]
    if len(slices) < 2:
        raise InputError(f"The DICOM series in {folder} has a single slice: a 2D image.",
                         "3D models need the whole series (several slices).")
    orient = {tuple(np.round(np.asarray(ds.ImageOrientationPatient, float), 4)) for _, ds in slices}
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in slices}
    if len(orient) > 1 or len(sizes) > 1:
        raise InputError(f"The DICOM series in {folder} mixes slice orientations or matrix sizes "
                         f"({len(orient)} orientations, sizes {sorted(sizes)}).",
                         "Export a single consistent series (e.g. one reconstruction) into its own folder.")
    iop = np.asarray(next(iter(orient)), float)
    normal = np.cross(iop[:3], iop[3:])
    pos = np.sort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for _, ds in slices])
    gaps = np.diff(pos)
    if np.any(gaps < 1e-3):
        raise InputError(f"The DICOM series in {folder} has duplicate slice positions.",
                         "Remove duplicated files or split the acquisitions into separate folders.")
    step = float(np.median(gaps))
    if np.any(np.abs(gaps - step) > 0.1 * step + 1e-3):
        missing = int(np.round(gaps[gaps > 1.5 * step] / step - 1).sum())
        raise InputError(f"The DICOM series in {folder} has uneven slice spacing: about {missing} slice(s) "
                         f"missing (spacing {step:.2f} mm, largest gap {gaps.max():.2f} mm).",
                         "Re-export the complete series; a volume with missing slices would be distorted.")
    files = [str(f) for f, _ in sorted(slices, key=lambda s: np.dot(normal, np.asarray(s[1].ImagePositionPatient, float)))]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"The DICOM series in {folder} could not be decoded ({str(exc).splitlines()[-1][:160]}).",
                         "The files may be corrupt or use an unsupported transfer syntax; re-export them.") from exc
    from .convert import volume_from_sitk

    modality = str(slices[0][1].get("Modality", ""))
    vol = volume_from_sitk(image, name=name or folder.name)
    vol.meta.update(modality=modality, series_uid=series_uid, files=files)
    return vol
