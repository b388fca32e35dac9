"""Refuse image files whose voxels or geometry would silently give a wrong segmentation.

The readers underneath are lenient: ITK's NIfTI reader zero-fills a file that was cut short and
turns NaN voxels into 0, and a zero or negative ``pixdim`` becomes 1 mm or a flipped axis.  These
checks look at what the file itself says (header and payload bytes) and at the geometry that was
read, and raise ``InputError`` naming the problem and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..volume import Volume

CHUNK = 1 << 22  # payload bytes checked per step (a multiple of every voxel size)


def parse_spacing(value: "str | float | Sequence[float] | None") -> Optional[tuple[float, float, float]]:
    """``1.5`` / ``"1.5"`` (isotropic) or ``"0.8,0.8,3"`` / ``(0.8, 0.8, 3)`` (x, y, z in mm) -> 3 floats."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")] if isinstance(value, str) else (
            [float(value)] if np.isscalar(value) else [float(v) for v in value])
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not all(np.isfinite(p) and p > 0 for p in parts):
        raise InputError(f"Assumed spacing {value!r} is not one or three positive numbers (mm).",
                         "Give e.g. --assume-spacing 1.5 or --assume-spacing 0.8,0.8,3.")
    return tuple(parts)  # type: ignore[return-value]


def check_payload(path: Path, proxy) -> None:
    """Compare the voxel bytes stored after the header with what the header's shape and type need, and
    refuse NaN/Inf voxels (read from the bytes: ITK's NIfTI reader would silently turn them into 0).

    ``proxy`` is the nibabel ``ArrayProxy`` of the file (NIfTI or MGH): its offset, dtype and shape."""
    from nibabel.openers import ImageOpener

    dtype = np.dtype(proxy.dtype)
    needed = int(np.prod(proxy.shape)) * dtype.itemsize
    floating = dtype.kind in "fc"
    got = bad = 0
    try:
        with ImageOpener(proxy.file_like) as fh:
            fh.seek(proxy.offset)
            while got < needed:
                block = fh.read(min(CHUNK, needed - got))
                if not block:
                    break
                got += len(block)
                if floating:
                    usable = len(block) - len(block) % dtype.itemsize
                    bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], dtype))))
    except (EOFError, OSError, ValueError) as exc:  # gzip stream cut short or corrupt
        if isinstance(exc, OSError) and not _is_stream_error(exc):
            raise
        raise InputError(f"{path} is truncated or corrupt: its compressed data ends "
                         f"before the {needed} voxel bytes its header needs for shape {tuple(proxy.shape)}, "
                         f"type {dtype} ({type(exc).__name__}: {exc}).",
                         "Copy or export the file again: the copy was cut short.") from exc
    if got < needed:
        raise InputError(f"{path} is truncated: it holds {got} of the {needed} voxel bytes its header needs "
                         f"(shape {tuple(proxy.shape)}, type {dtype}); the missing voxels would be read as 0.",
                         "Copy or export the file again: the copy was cut short.")
    if bad:
        raise _nonfinite(path, bad)


def _nonfinite(path: "Path | str", count: int) -> InputError:
    return InputError(f"{path} contains {count} NaN/Inf voxel value(s).",
                      "Replace them (e.g. with the background intensity) and save the image again.")


def _is_stream_error(exc: OSError) -> bool:
    """gzip raises ``BadGzipFile`` (an OSError) for corrupt streams; real I/O errors have an errno."""
    return exc.errno is None


def nifti_geometry(path: Path, header, assume_spacing: Optional[tuple[float, float, float]]) -> bool:
    """Refuse zero, negative or non-finite ``pixdim``; return True when the file has no geometry at all
    (qform and sform codes 0) and the user gave ``assume_spacing``, refuse it when they did not."""
    pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
    no_geometry = int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0
    if no_geometry:
        if assume_spacing is None:
            raise InputError(f"{path} stores no geometry: its qform and sform codes are 0, so its voxel spacing "
                             f"(pixdim {pixdim.tolist()}) and orientation are unknown; volumes would be wrong.",
                             "Fix the header with the tool that made it, or, if you know the voxel size, pass "
                             "--assume-spacing X,Y,Z (mm) (Python: assume_spacing=(x, y, z)); it is recorded "
                             "in the provenance.")
        return True
    check_spacing(path, pixdim)
    return False


def check_spacing(path: "Path | str", spacing: Sequence[float]) -> None:
    s = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        kind = "non-finite" if not np.all(np.isfinite(s)) else ("zero" if np.any(s == 0) else "negative")
        raise spacing_error(path, f"{kind} voxel spacing {s.tolist()} mm")


def spacing_error(path: "Path | str", detail: str) -> InputError:
    return InputError(f"{path} has {detail}; voxel sizes must be positive, and volumes computed from this "
                      "header would be wrong.",
                      "Fix the spacing in the image header (e.g. re-export the image from its source).")


NRRD_SPATIAL_KINDS = {"domain", "space"}  # NRRD axis kinds sampled in space
# axes ITK reads as image axes (teem's domain kinds, and axes of unknown kind); the others are per-voxel components
NRRD_GRID_KINDS = NRRD_SPATIAL_KINDS | {"time", "???", "none"}


def check_stored_header(path: Path) -> None:
    """The number of image axes and the spacing a MetaImage (``NDims``, ``ElementSpacing``) or NRRD
    (``sizes``, ``kinds``, ``spacings``) header stores, before ITK turns a negative spacing into a flipped
    axis.  A 4-D image is named as such: its extra axis (time, or no kind given) often has spacing NaN,
    which is not a bad spacing but a second volume."""
    with open(path, "rb") as fh:
        head = fh.read(8192).decode("latin-1")
    fields = {}
    for line in head.splitlines():
        if not line.strip():
            break  # the end of the header (a NRRD's blank line): what follows may be voxel data
        key, sep, value = line.replace("=", ":", 1).partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.split())
    kinds = [k.lower() for k in fields.get("kinds", [])]
    axes = _grid_axes(fields.get("sizes") or fields.get("dimsize", []), kinds)
    if len(axes) > 3:
        raise InputError(f"{path} holds a {len(axes)}-D image (axes {' x '.join(axes)}), such as a time series, "
                         "not one 3-D volume; a model segments one 3-D volume.",
                         "Save the 3-D volume to segment (e.g. one time point) as a file of its own and give that "
                         "(in 3D Slicer: load the file as a sequence and save the volume it shows at that time "
                         "point; in SimpleITK: sitk.ReadImage(path)[:, :, :, t]).")
    # NRRD's non-spatial axes (a vector or colour image's components) have "kinds" such as "vector" and
    # spacing NaN: they are not spacings, and the reader refuses multi-component images by their own name
    spatial = [k in NRRD_SPATIAL_KINDS for k in kinds]
    for key in ("elementspacing", "elementsize", "spacings"):
        try:
            values = [float(v) for v in fields.get(key, [])]
        except ValueError:  # "nan" parses; other text is left to the reader
            continue
        if key == "spacings" and len(spatial) == len(values):
            values = [v for v, keep in zip(values, spatial) if keep]
        if values:
            check_spacing(path, values)


def _grid_axes(sizes: list[str], kinds: list[str]) -> list[str]:
    """The image axes a NRRD (``sizes``, ``kinds``) or MetaImage (``DimSize``) header declares, each as its
    size and NRRD kind; per-voxel component axes (NRRD kinds such as "vector" or "list") are left out."""
    if len(kinds) != len(sizes):
        return sizes
    return [f"{s} ({k})" for s, k in zip(sizes, kinds) if k in NRRD_GRID_KINDS]


def check_direction(path: "Path | str", direction: np.ndarray, tol: float = 1e-3) -> None:
    d = np.asarray(direction, dtype=float)
    if not np.all(np.isfinite(d)) or not np.allclose(d.T @ d, np.eye(3), atol=tol):
        raise direction_error(path, f"direction cosines {np.round(d, 4).tolist()}")


def direction_error(path: "Path | str", detail: str) -> InputError:
    """The orientation is degenerate (a zero or repeated axis) or its axes are not perpendicular."""
    return InputError(f"{path} has a degenerate or non-orthonormal orientation ({detail}): its axes are not "
                      "perpendicular unit vectors, so positions and volumes cannot be trusted.",
                      "Fix the orientation in the image header (qform/sform, 'space directions' or "
                      "TransformMatrix), e.g. by re-exporting the image from its source.")


def check_volume(path: "Path | str", volume: Volume) -> None:
    """Spacing, orientation and finite voxels of a volume that was read (every format)."""
    check_spacing(path, volume.spacing)
    check_direction(path, volume.direction)
    if np.issubdtype(volume.array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(volume.array)))
        if bad:
            raise _nonfinite(path, bad)
