"""FreeSurfer-style conform: resample a volume onto a 256^3, 1 mm grid in LIA orientation.

FreeSurfer's ``mri_convert --conform`` (and brainchop, which trains/runs its MeshNets on such
volumes) keeps the centre of the input field of view (the physical point of continuous voxel
index ``size/2``) at conformed voxel ``(128, 128, 128)`` and orients the axes i -> Left,
j -> Inferior, k -> Anterior.  Here the centre may move by less than half a voxel so that a 1 mm
input aligned with those axes keeps its voxel centres (``conformed_grid``).  ``resample_to`` maps arrays between any two grids (linear for
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
    """An empty (zero-filled, uint8) volume on the conformed grid for ``volume``.

    Along every conformed axis that runs parallel to an input axis with the conformed spacing, the grid
    is moved by less than half a voxel onto the input's voxel centres (FreeSurfer's centre, index
    ``size/2``, falls between them when that axis has an odd number of voxels, or after a 90-degree
    relabelling): those voxels are then copied, not interpolated, so the same image in any storage order
    or field of view on a 1 mm lattice reaches the network with the same intensities."""
    centre = volume.ijk_to_lps() @ np.append(np.asarray(volume.size_ijk, dtype=float) / 2.0, 1.0)
    origin = centre[:3] - LIA_LPS @ np.full(3, size / 2.0 * spacing)
    index = np.linalg.solve(volume.ijk_to_lps()[:3, :3], origin - np.asarray(volume.origin, float))
    for b in range(3):  # input axis b
        parallel = np.abs(LIA_LPS.T @ volume.direction[:, b]).max() > 1.0 - 1e-6
        if parallel and abs(volume.spacing[b] - spacing) < 1e-6:
            origin = origin + volume.direction[:, b] * volume.spacing[b] * (np.round(index[b]) - index[b])
    return Volume(np.zeros((size, size, size), dtype=np.uint8), (spacing,) * 3, tuple(origin),
                  LIA_LPS.copy(), name=volume.name)


def resample_to(array: np.ndarray, source: Volume, target: Volume, *, linear: bool = True,
                default: float = 0.0) -> np.ndarray:
    """``array`` (``[k, j, i]`` on ``source``'s grid) sampled on ``target``'s grid, float32."""
    from ..io import resample_onto

    moved = resample_onto(source.with_array(np.asarray(array, dtype=np.float32)), target, nearest=not linear,
                          default=default)
    return moved.array.astype(np.float32, copy=False)
