"""The one image type of the core: a voxel array plus its exact physical geometry.

Conventions (the same as SimpleITK and ``slicer.util.arrayFromVolume``):

* ``array`` is indexed ``[k, j, i]`` (slice, row, column);
* ``spacing`` and ``origin`` are given in ``(i, j, k)`` / ``(x, y, z)`` order, millimetres;
* physical coordinates are **LPS** (DICOM/ITK); the Slicer bridge converts to RAS;
* ``direction`` is a 3x3 matrix whose *columns* are the unit directions of the i, j, k axes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .errors import InputError


@dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    name: str = ""
    meta: dict = field(default_factory=dict)  # e.g. modality, DICOM series UID and files

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(k, j, i)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (ITK ``GetSize`` order)."""
        return tuple(reversed(self.array.shape))  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        """True when both volumes sample space on exactly the same voxel grid."""
        return (
            self.shape[-3:] == other.shape[-3:]
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def with_array(self, array: np.ndarray, name: Optional[str] = None) -> "Volume":
        """A volume on this grid holding ``array`` (geometry copied, never shared mutably)."""
        if tuple(array.shape[-3:]) != self.shape[-3:]:
            raise ValueError(f"array shape {array.shape} does not fit grid {self.shape}")
        return replace(self, array=array, direction=self.direction.copy(), meta=dict(self.meta),
                       name=self.name if name is None else name)


def check_image(volume: Volume, what: str = "input image") -> None:
    """Reject volumes no 3D model can segment, with a message naming the problem and fix."""
    label = f"{what} {volume.name!r}" if volume.name else what
    arr = volume.array
    if arr.ndim != 3:
        raise InputError(f"The {label} has {arr.ndim} dimensions (shape {arr.shape}); a 3D volume is required.",
                         "Give a single-channel 3D volume; pass each sequence/channel as its own --input.")
    if min(arr.shape) < 2:
        raise InputError(f"The {label} is a 2D image (shape {arr.shape}, one slice).",
                         "3D models need a volume with several slices; load the whole series, not one slice.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"The {label} has non-numeric voxel type {arr.dtype}.", "Convert it to a scalar volume.")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputError(f"The {label} contains {int(bad.sum())} NaN/Inf voxels.",
                             "Replace them (e.g. with the background intensity) before segmenting.")
    if arr.size and arr.min() == arr.max():
        raise InputError(f"The {label} is constant (every voxel is {arr.flat[0]}); there is nothing to segment.",
                         "Check that the right image was loaded and that it is not empty.")
    if not np.all(np.asarray(volume.spacing) > 0):
        raise InputError(f"The {label} has non-positive voxel spacing {volume.spacing}.",
                         "Fix the image header (spacing must be > 0 mm).")
