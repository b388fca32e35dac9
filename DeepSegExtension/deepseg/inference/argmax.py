"""Per-voxel argmax over the class channels of a probability volume, fast for whole-head/whole-body maps.

``np.argmax(p, axis=0)`` first copies the whole ``(C, ...)`` array into channel-last order (1.2 GB for 18
classes on a 256^3 grid) and then scans it; a running maximum over the channels, a few slices at a time so
they stay in the CPU cache, reads every value once and needs no copy.
"""
from __future__ import annotations

import numpy as np

CHUNK_VOXELS = 1 << 17  # voxels per chunk: the chunk's running maximum and flags stay in the L2 cache


def argmax_channels(probabilities: np.ndarray) -> np.ndarray:
    """Index of the largest of the ``C`` channels of ``(C, *spatial)`` per voxel (the first one on ties, as
    ``np.argmax``); uint8 for up to 256 channels, else int64. Works on strided views (no copy)."""
    p = np.asarray(probabilities)
    if p.ndim < 2:
        raise ValueError(f"expected (channels, *spatial) probabilities, got shape {p.shape}")
    out = np.zeros(p.shape[1:], dtype=np.uint8 if p.shape[0] <= 256 else np.int64)
    if out.size == 0:
        return out
    # chunks along the spatial axis that is outermost in memory, so a chunk is a compact block of it
    axis = int(np.argmax([abs(st) for st in p.strides[1:]]))
    step = max(1, CHUNK_VOXELS * p.shape[1 + axis] // out.size)
    for s in range(0, p.shape[1 + axis], step):
        rows = (slice(None),) * axis + (slice(s, s + step),)
        best = p[(0, *rows)].copy()
        index = out[rows]
        greater = np.empty(best.shape, dtype=bool)
        for c in range(1, p.shape[0]):
            np.greater(p[(c, *rows)], best, out=greater)
            index[greater] = c
            np.maximum(best, p[(c, *rows)], out=best)
    return out
