"""Reusable pre-processing: per-channel intensity normalisation and grid resampling.

Every model family needs the same two steps before its networks run: scale each channel's
intensities the way the network was trained (CT window, z-score, percentiles...) and resample the
voxel grid to the training spacing.  ``restore`` then resamples the network output back onto the
input grid.  The resampling here keeps the *physical extent* of the grid (voxel corners aligned,
i.e. ``align_corners=False``), so a voxel grid and its resampled copy cover exactly the same box
and ``resampled_grid`` gives the new grid's LPS geometry; resampling back to the original shape
is then geometrically exact.

Normalisation specs (JSON objects, one per input channel; ``method`` selects the formula):

* ``{"method": "none"}`` — cast to float32;
* ``{"method": "clip", "lower": a, "upper": b}`` — clip only;
* ``{"method": "window", "lower": a, "upper": b}`` — CT window: clip to [a, b], scale to [0, 1];
* ``{"method": "ct", "lower": a, "upper": b, "mean": m, "std": s}`` — clip to [a, b], then
  ``(x - m) / s`` with the training set's foreground statistics (nnU-Net ``CTNormalization``);
* ``{"method": "zscore", "nonzero": false}`` — per-image ``(x - mean) / std``; with ``nonzero``
  the statistics use non-zero voxels only and zero voxels stay 0 (skull-stripped MRI);
* ``{"method": "percentile", "lower": 2, "upper": 98, "clip": true}`` — map the image's
  ``lower``/``upper`` percentiles to 0 and 1 (optionally clipping outside);
* ``{"method": "minmax"}`` — scale the image's range to [0, 1].
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..volume import Volume

NORMALIZATION_METHODS = ("none", "clip", "window", "ct", "zscore", "percentile", "minmax")

_EPS = 1e-8


def normalize(array: np.ndarray, spec: Optional[dict]) -> np.ndarray:
    """Intensity-normalise one channel according to ``spec`` (see module docstring); float32 out."""
    x = np.asarray(array, dtype=np.float32)
    spec = spec or {"method": "none"}
    method = spec.get("method", "none")
    if method == "none":
        return x.copy()
    if method == "clip":
        return np.clip(x, spec["lower"], spec["upper"])
    if method == "window":
        lo, hi = float(spec["lower"]), float(spec["upper"])
        return (np.clip(x, lo, hi) - lo) / max(hi - lo, _EPS)
    if method == "ct":
        return (np.clip(x, spec["lower"], spec["upper"]) - float(spec["mean"])) / max(float(spec["std"]), _EPS)
    if method == "zscore":
        if spec.get("nonzero", False):
            mask = x != 0
            values = x[mask] if mask.any() else x.ravel()
            out = (x - values.mean()) / max(float(values.std()), _EPS)
            return np.where(mask, out, 0).astype(np.float32)
        return (x - x.mean()) / max(float(x.std()), _EPS)
    if method == "percentile":
        lo, hi = np.percentile(x, [spec.get("lower", 2.0), spec.get("upper", 98.0)])
        out = (x - lo) / max(float(hi - lo), _EPS)
        return np.clip(out, 0, 1) if spec.get("clip", True) else out
    if method == "minmax":  # one float32 copy scaled in place (fresh memory is slow to touch on a busy VM)
        out = np.array(x, dtype=np.float32)
        lo, hi = out.min(), out.max()
        out -= lo
        out /= max(float(hi - lo), _EPS)
        return out
    raise ValueError(f"unknown normalisation method {method!r}; use one of {NORMALIZATION_METHODS}")


def resampled_shape(shape: Sequence[int], old_spacing: Sequence[float],
                    new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Voxel counts covering the same extent at ``new_spacing`` (array axis order, at least 1)."""
    return tuple(max(1, int(round(n * o / s))) for n, o, s in zip(shape, old_spacing, new_spacing))


def resample_array(array: np.ndarray, old_spacing: Optional[Sequence[float]] = None,
                   new_spacing: Optional[Sequence[float]] = None, new_shape: Optional[Sequence[int]] = None,
                   order: int = 1) -> np.ndarray:
    """Resample a ``(z, y, x)`` or ``(C, z, y, x)`` array to ``new_shape`` (or to ``new_spacing``).

    Spacings are in **array axis order** (z, y, x), i.e. ``Volume.spacing[::-1]``.  The grid's
    extent is kept (corner-aligned).  ``order`` 0 = nearest (labels keep their dtype), 1 = linear,
    2-5 = spline (scipy).  Orders 0/1 run in PyTorch (multi-threaded); float32 out except order 0.
    """
    spatial = array.shape[-3:]
    if new_shape is None:
        if old_spacing is None or new_spacing is None:
            raise ValueError("give new_shape, or both old_spacing and new_spacing")
        new_shape = resampled_shape(spatial, old_spacing, new_spacing)
    new_shape = tuple(int(n) for n in new_shape)
    if new_shape == tuple(spatial):
        return array.copy() if order == 0 else np.asarray(array, dtype=np.float32).copy()
    if order in (0, 1):
        return _resample_torch(array, new_shape, order)
    from scipy.ndimage import zoom

    channels = array.reshape((-1, *spatial))
    factors = [n / o for n, o in zip(new_shape, spatial)]
    out = np.stack([zoom(c.astype(np.float32), factors, order=order, mode="nearest", grid_mode=True)
                    for c in channels])
    return out.reshape((*array.shape[:-3], *new_shape))


def _resample_torch(array: np.ndarray, new_shape: tuple[int, ...], order: int) -> np.ndarray:
    import torch

    spatial = array.shape[-3:]
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, -1, *spatial)
    mode = "nearest-exact" if order == 0 else "trilinear"
    kwargs = {} if order == 0 else {"align_corners": False}
    with torch.inference_mode():
        out = torch.nn.functional.interpolate(t, size=new_shape, mode=mode, **kwargs)
    out = out.reshape((*array.shape[:-3], *new_shape)).numpy()
    return out.astype(array.dtype) if order == 0 else out


def resampled_grid(volume: Volume, new_shape: Sequence[int]) -> Volume:
    """The geometry of ``volume``'s grid resampled to ``new_shape`` (same extent and direction).

    Returned as a ``Volume`` whose array is a read-only zero placeholder of ``new_shape`` (no
    memory); use it for its ``spacing``/``origin``/``direction`` and ``ijk_to_lps``.
    """
    old = np.asarray(volume.shape, dtype=float)[::-1]  # (i, j, k)
    new = np.asarray(new_shape, dtype=float)[::-1]
    spacing = np.asarray(volume.spacing) * old / new
    # voxel centres move by half the change of voxel size, along each axis direction
    origin = np.asarray(volume.origin) + volume.direction @ ((spacing - np.asarray(volume.spacing)) / 2)
    placeholder = np.broadcast_to(np.uint8(0), tuple(int(n) for n in new_shape))
    return Volume(placeholder, tuple(spacing), tuple(origin),
                  volume.direction.copy(), volume.name)
