"""Per-voxel argmax over the class channels of a probability volume, fast for whole-head/whole-body maps.

``np.argmax(p, axis=0)`` first copies the whole ``(C, ...)`` array into channel-last order (1.2 GB for 18
classes on a 256^3 grid) and then scans it; a running maximum over the channels, a few slices at a time so
they stay in the CPU cache, reads every value once and needs no copy.
"""
from __future__ import annotations

import numpy as np

CHUNK_VOXELS = 1 << 17  # voxels per chunk: the chunk's running maximum and flags stay in the L2 cache


def index_dtype(channels: int) -> np.dtype:
    """The smallest index type for ``channels`` classes: uint8 up to 256, else int64."""
    return np.dtype(np.uint8 if channels <= 256 else np.int64)


class RunningArgmax:
    """Argmax over channels given one at a time (``add``), so no ``(C, ...)`` stack needs to exist:
    ``index`` is the position of the largest channel so far, the earlier one on ties (as ``np.argmax``)."""

    def __init__(self, first: np.ndarray, index: np.ndarray) -> None:
        self.best = np.array(first, dtype=first.dtype, copy=True)
        self.index = index  # written in place: the caller's output (all zeros: channel 0 leads)
        self._greater = np.empty(self.best.shape, dtype=bool)
        self.count = 1

    def add(self, channel: np.ndarray) -> None:
        """Take the next channel into account."""
        np.greater(channel, self.best, out=self._greater)
        self.index[self._greater] = self.count
        np.maximum(self.best, channel, out=self.best)
        self.count += 1


def argmax_channels(probabilities: np.ndarray) -> np.ndarray:
    """Index of the largest of the ``C`` channels of ``(C, *spatial)`` per voxel (the first one on ties, as
    ``np.argmax``); uint8 for up to 256 channels, else int64. Works on strided views (no copy)."""
    p = np.asarray(probabilities)
    if p.ndim < 2:
        raise ValueError(f"expected (channels, *spatial) probabilities, got shape {p.shape}")
    out = np.zeros(p.shape[1:], dtype=index_dtype(p.shape[0]))
    if out.size == 0:
        return out
    # chunks along the spatial axis that is outermost in memory, so a chunk is a compact block of it
    axis = int(np.argmax([abs(st) for st in p.strides[1:]]))
    step = max(1, CHUNK_VOXELS * p.shape[1 + axis] // out.size)
    for s in range(0, p.shape[1 + axis], step):
        rows = (slice(None),) * axis + (slice(s, s + step),)
        running = RunningArgmax(p[(0, *rows)], out[rows])
        for c in range(1, p.shape[0]):
            running.add(p[(c, *rows)])
    return out
