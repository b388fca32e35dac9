"""How voxels are "removed" from an image when an explanation or a faithfulness score perturbs it.

* ``constant``: set to a background value per channel (the channel minimum: air in CT, zero outside
  the head in MR).  Scattered removed voxels then form salt noise the model never saw, and a model
  that normalises over the whole patch (instance norm) can lose its prediction to any 5 % of voxels,
  wherever they are -- the score then says nothing about the map.
* ``impute``: linear imputation (Rong et al., "A Consistent and Efficient Evaluation Strategy for
  Attribution Methods", ICML 2022, ROAD; here without its noise term, in 3D): each removed voxel
  becomes the mean of its 6 neighbours, solved jointly (a discrete Laplace equation with the kept
  voxels as boundary values).  A scattered voxel is replaced by its neighbourhood's value (removing
  nothing the model could miss); a removed region is filled smoothly from its border, so what is
  lost is the region's content, not the intensity scale.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..options import REMOVALS
from ..volume import Volume


def impute_linear(array: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``array`` (float32) with the ``removed`` voxels replaced by the harmonic interpolation of the rest."""
    from scipy import sparse
    from scipy.sparse.linalg import cg

    out = np.asarray(array, dtype=np.float32).copy()
    removed = np.asarray(removed, dtype=bool)
    if not removed.any():
        return out
    if removed.all():  # nothing to interpolate from
        out.fill(float(np.mean(array)))
        return out
    shape = removed.shape
    index = np.full(shape, -1, dtype=np.int64)
    unknown = np.flatnonzero(removed)
    index.ravel()[unknown] = np.arange(unknown.size)
    coords = np.unravel_index(unknown, shape)
    diag = np.zeros(unknown.size)
    rhs = np.zeros(unknown.size)
    rows, cols = [], []
    for axis in range(3):
        for step in (-1, 1):
            nb = list(coords)
            nb[axis] = coords[axis] + step
            ok = (nb[axis] >= 0) & (nb[axis] < shape[axis])
            me = np.flatnonzero(ok)
            nb_flat = np.ravel_multi_index(tuple(c[ok] for c in nb), shape)
            diag[me] += 1
            nb_index = index.ravel()[nb_flat]
            free = nb_index >= 0
            rows.append(me[free])
            cols.append(nb_index[free])
            np.add.at(rhs, me[~free], out.ravel()[nb_flat[~free]])
    # a tiny pull towards the mean keeps regions with no kept neighbour well-posed
    eps = 1e-6
    known_mean = float(out.ravel()[~removed.ravel()].mean())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    a = sparse.csr_matrix((np.full(rows.size, -1.0), (rows, cols)), shape=(unknown.size,) * 2)
    a = a + sparse.diags(diag + eps)
    rhs += eps * known_mean
    x0 = np.full(unknown.size, known_mean)
    solution, _ = cg(a, rhs, x0=x0, rtol=1e-5, maxiter=5000, M=sparse.diags(1.0 / (diag + eps)))
    out.ravel()[unknown] = solution.astype(np.float32)
    return out


def background_values(channels: Sequence[Volume]) -> list[float]:
    """The ``constant`` removal intensity of each channel: its minimum."""
    return [float(c.array.min()) for c in channels]


def remove_voxels(channels: Sequence[Volume], removed: np.ndarray, removal: str = "constant",
                  background: Optional[Sequence[float]] = None) -> list[Volume]:
    """``channels`` with the ``removed`` voxels taken out by ``removal`` (see the module docstring)."""
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; use one of {REMOVALS}")
    if removal == "impute":
        return [c.with_array(impute_linear(c.array, removed).astype(np.result_type(c.array.dtype, np.float32)))
                for c in channels]
    background = background_values(channels) if background is None else list(background)
    return [c.with_array(np.where(removed, np.asarray(b, dtype=c.array.dtype), c.array))
            for c, b in zip(channels, background)]
