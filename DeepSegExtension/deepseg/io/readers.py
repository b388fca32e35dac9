"""Read and write volumes: NIfTI, NRRD, MHA/MHD (SimpleITK), MGZ/MGH (nibabel) and DICOM folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .atomic import full_suffix

SITK_SUFFIXES = {".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd"}
NIBABEL_SUFFIXES = {".mgz", ".mgh"}


def volume_from_sitk(image, name: str = "") -> Volume:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise InputError(f"Image {name!r} has {image.GetDimension()} dimensions; a 3D volume is required.",
                         "Give a 3D volume (a 4D/time series must be split into 3D volumes first).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"Image {name!r} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                         "(colour or vector image).", "Give a scalar (grey-level) volume.")
    return Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                  np.asarray(image.GetDirection()).reshape(3, 3), name=name)


def volume_to_sitk(volume: Volume):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def _read_nibabel(path: Path, name: str) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path} has shape {data.shape}; a 3D volume is required.", "Give a single 3D volume.")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), tuple(spacing), tuple(affine[:3, 3]),
                  affine[:3, :3] / spacing, name=name)


def read_volume(path: "str | Path", name: str = "") -> Volume:
    """Read one 3D scalar volume from a file or a DICOM series folder (``FOLDER::SERIES_UID`` picks a series)."""
    text = str(path)
    series_uid = None
    if "::" in text:
        text, series_uid = text.split("::", 1)
    p = Path(text).expanduser()
    name = name or p.name.split(".")[0]
    if p.is_dir():
        from .dicom import read_dicom_series

        return read_dicom_series(p, series_uid, name=name)
    if not p.exists():
        raise InputError(f"Input {p} does not exist.", "Check the path (and that the file was fully copied).")
    suffix = full_suffix(p).lower()
    try:
        if suffix in NIBABEL_SUFFIXES:
            return _read_nibabel(p, name)
        if suffix in SITK_SUFFIXES or suffix in {".dcm", ""}:
            import SimpleITK as sitk

            return volume_from_sitk(sitk.ReadImage(str(p)), name=name)
    except InputError:
        raise
    except Exception as exc:  # SimpleITK/nibabel raise many types for broken files
        first = str(exc).strip().splitlines()
        detail = first[-1][:200] if first else type(exc).__name__
        raise InputError(f"{p} could not be read: it looks truncated or corrupt ({detail}).",
                         "Copy or export the file again and check its size.") from exc
    raise InputError(f"{p} has an unsupported file type {suffix!r}.",
                     "Use NIfTI (.nii/.nii.gz), NRRD, MHA/MHD, MGZ or a DICOM series folder.")


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
