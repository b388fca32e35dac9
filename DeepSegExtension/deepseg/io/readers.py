"""Read and write volumes: NIfTI, NRRD, MHA/MHD (SimpleITK), MGZ/MGH (nibabel) and DICOM folders."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .atomic import full_suffix
from .convert import volume_from_sitk, volume_to_sitk
from .integrity import (check_payload, check_spacing, check_stored_header, check_volume, direction_error,
                        nifti_geometry, parse_spacing, spacing_error)

NIFTI_SUFFIXES = {".nii", ".nii.gz"}
SITK_SUFFIXES = {".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd"}
NIBABEL_SUFFIXES = {".mgz", ".mgh"}


def _read_nibabel(path: Path, name: str) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    if hasattr(img.header, "get_zooms"):
        check_spacing(path, img.header.get_zooms()[:3])  # as stored: the affine would divide by a zero
    check_payload(path, img.dataobj)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path} has shape {data.shape}; a 3D volume is required.", "Give a single 3D volume.")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), tuple(spacing), tuple(affine[:3, 3]),
                  affine[:3, :3] / spacing, name=name)


def _read_nifti(path: Path, name: str, assume_spacing: Optional[tuple[float, float, float]]) -> Volume:
    """NIfTI through ITK (its qform/sform rules), after checking the header and payload with nibabel."""
    import nibabel as nib
    import SimpleITK as sitk

    from nibabel.openers import ImageOpener

    logger, level = nib.imageglobals.logger, nib.imageglobals.logger.level
    logger.setLevel(logging.CRITICAL)  # its "setting 0 dims to 1" would contradict the error we raise
    try:
        img = nib.load(str(path))
        with ImageOpener(str(path)) as fh:  # the header as stored: nibabel's loaded copy has pixdim "repaired"
            stored = type(img.header).from_fileobj(fh, check=False)
    finally:
        logger.setLevel(level)
    assumed = nifti_geometry(path, stored, assume_spacing)
    check_payload(path, img.dataobj)
    volume = volume_from_sitk(sitk.ReadImage(str(path)), name=name)
    if assumed:
        volume.spacing = assume_spacing
        volume.meta["assumed_spacing"] = list(assume_spacing)
    return volume


def read_volume(path: "str | Path", name: str = "",
                assume_spacing: "str | float | Sequence[float] | None" = None) -> Volume:
    """Read one 3D scalar volume from a file or a DICOM series folder (``FOLDER::SERIES_UID`` picks a series).

    Truncated files, NaN/Inf voxels, zero/negative spacing and non-orthonormal orientations are refused.
    A NIfTI file with no geometry (qform and sform codes 0) is refused unless ``assume_spacing`` (mm,
    one number or x, y, z) is given; the volume then records it in ``meta["assumed_spacing"]``."""
    assume = parse_spacing(assume_spacing)
    text = str(path)
    series_uid = None
    if "::" in text:
        text, series_uid = text.split("::", 1)
    p = Path(text).expanduser()
    name = name or p.name.split(".")[0]
    if p.is_dir():
        from .dicom import read_dicom_series

        volume = read_dicom_series(p, series_uid, name=name)
        check_volume(p, volume)
        return volume
    if not p.exists():
        raise InputError(f"Input {p} does not exist.", "Check the path (and that the file was fully copied).")
    suffix = full_suffix(p).lower()
    try:
        if suffix in NIBABEL_SUFFIXES:
            volume = _read_nibabel(p, name)
        elif suffix in NIFTI_SUFFIXES:
            volume = _read_nifti(p, name, assume)
        elif suffix in SITK_SUFFIXES or suffix in {".dcm", ""}:
            import SimpleITK as sitk

            if suffix in {".mha", ".mhd", ".nrrd", ".nhdr", ".seg.nrrd"}:
                check_stored_header(p)
            volume = volume_from_sitk(sitk.ReadImage(str(p)), name=name)
        else:
            volume = None
    except InputError:
        raise
    except Exception as exc:  # SimpleITK/nibabel raise many types for broken files
        first = str(exc).strip().splitlines()
        detail = first[-1][:200] if first else type(exc).__name__
        itk = next((re.sub(r"^.*ITK ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", ln)[:200] for ln in first
                    if "ITK ERROR:" in ln), detail)
        if "orthonormal" in str(exc) or "Bad direction" in str(exc):  # ITK refuses a degenerate orientation
            raise direction_error(p, f"the reader says: {itk}") from exc
        if "spacing" in itk.lower():  # ITK: "Zero-valued spacing is not supported"
            raise spacing_error(p, f"unusable voxel spacing (the reader says: {itk})") from exc
        raise InputError(f"{p} could not be read: it looks truncated or corrupt ({detail}).",
                         "Copy or export the file again and check its size.") from exc
    if volume is None:
        raise InputError(f"{p} has an unsupported file type {suffix!r}.",
                         "Use NIfTI (.nii/.nii.gz), NRRD, MHA/MHD, MGZ or a DICOM series folder.")
    check_volume(p, volume)
    return volume


def write_volume(volume: Volume, path: "str | Path", compress: bool = True) -> None:
    """Write a volume with its exact geometry (NIfTI/NRRD/MHA via SimpleITK, MGZ via nibabel)."""
    p = Path(path)
    suffix = full_suffix(p).lower()
    if suffix in NIBABEL_SUFFIXES:
        import nibabel as nib

        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.ijk_to_lps()
        nib.save(nib.MGHImage(volume.array.transpose(2, 1, 0), affine), str(p))
        return
    import SimpleITK as sitk

    sitk.WriteImage(volume_to_sitk(volume), str(p), useCompression=compress)
