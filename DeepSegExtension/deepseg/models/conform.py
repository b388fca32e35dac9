"""FreeSurfer-style conform: resample a volume onto a 256^3, 1 mm grid in LIA orientation.

FreeSurfer's ``mri_convert --conform`` (and brainchop, which trains/runs its MeshNets on such
volumes) keeps the centre of the input field of view (the physical point of continuous voxel
index ``size/2``) at conformed voxel ``(128, 128, 128)`` and orients the axes i -> Left,
j -> Inferior, k -> Anterior.  ``resample_to`` maps arrays between any two grids (linear for
intensities/probabilities, nearest for labels); when the grids are identical it copies, so a
volume that is already conformed (e.g. a FreeSurfer ``norm.mgz``) round-trips exactly.
"""
from __future__ import annotations

import numpy as np

from ..volume import Volume

CONFORM_SIZE = 256
# LPS directions (columns) of conformed i, j, k: Left = +x, Inferior = -z, Anterior = -y.
LIA_LPS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])


def conformed_grid(volume: Volume, size: int = CONFORM_SIZE, spacing: float = 1.0) -> Volume:
    """An empty (zero-filled, uint8) volume on the conformed grid for ``volume``."""
    centre = volume.ijk_to_lps() @ np.append(np.asarray(volume.size_ijk, dtype=float) / 2.0, 1.0)
    origin = centre[:3] - LIA_LPS @ np.full(3, size / 2.0 * spacing)
    return Volume(np.zeros((size, size, size), dtype=np.uint8), (spacing,) * 3, tuple(origin),
                  LIA_LPS.copy(), name=volume.name)


def resample_to(array: np.ndarray, source: Volume, target: Volume, *, linear: bool = True,
                default: float = 0.0) -> np.ndarray:
    """``array`` (``[k, j, i]`` on ``source``'s grid) sampled on ``target``'s grid, float32."""
    from ..io import resample_onto

    moved = resample_onto(source.with_array(np.asarray(array, dtype=np.float32)), target, nearest=not linear,
                          default=default)
    return moved.array.astype(np.float32, copy=False)
