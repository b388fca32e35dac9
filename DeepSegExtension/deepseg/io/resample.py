"""Resample a volume onto another voxel grid (SimpleITK), the one place the core does so."""
from __future__ import annotations

import numpy as np

from ..volume import Volume
from .convert import volume_to_sitk


def resample_onto(volume: Volume, target: Volume, *, nearest: bool = False, default: float = 0.0,
                  transform=None) -> Volume:
    """``volume`` sampled at ``target``'s voxel centres: linear (float32), or nearest neighbour for
    label maps (integer labels keep their values, as uint32).  ``default`` fills points outside.

    ``transform`` (a SimpleITK transform) maps target physical points to ``volume``'s, as SimpleITK's
    resampler expects (e.g. a rigid registration result)."""
    import SimpleITK as sitk

    if transform is None and volume.same_grid(target):
        return target.with_array(volume.array.copy(), name=volume.name)
    integer = nearest and np.issubdtype(volume.array.dtype, np.integer)
    pixel = sitk.sitkUInt32 if integer else sitk.sitkFloat32
    source = volume.with_array(np.ascontiguousarray(volume.array, dtype=np.uint32 if integer else np.float32))
    out = sitk.Resample(volume_to_sitk(source), [int(s) for s in target.size_ijk], transform or sitk.Transform(),
                        sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear, target.origin, target.spacing,
                        tuple(target.direction.ravel()), float(default), pixel)
    return target.with_array(sitk.GetArrayFromImage(out), name=volume.name)
