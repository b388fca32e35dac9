"""Move maps between a model's network space and the input grid using only the model's own
``restore`` (so one explainer serves every format, whatever resampling, cropping or axis order
``prepare`` applied).

``restore`` turns network-space logits into class probabilities on the input grid.  Two-class
"logits" ``(0, logit(t))`` restore to probability ``t`` wherever ``restore`` places network voxels,
and to 0 where it fills in background (cropped-away regions).  So:

* ``restore_map`` carries a [0, 1] map from network space to the input grid;
* ``network_coordinates`` restores the network-space coordinate of every input voxel (one probe
  per axis), from which ``region_to_network`` marks the network voxels an input region covers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import ModelError
from ..models.base import Prepared, SegmentationModel

_LO, _HI = 0.05, 0.95   # coordinate codes stay clear of 0 (background fill) and 1
_FLOOR = 1e-6


def _probe(model: SegmentationModel, prepared: Prepared, values: np.ndarray) -> np.ndarray:
    """Restore a network-space map of probabilities in (0, 1) as channel 1 of a K-class output."""
    t = np.clip(values.astype(np.float64), _FLOOR, 1 - _FLOOR)
    logits = torch.full((model.num_classes, *values.shape), -1e4, dtype=torch.float32)
    logits[0] = 0.0
    logits[1] = torch.from_numpy(np.log(t / (1 - t)).astype(np.float32))
    probs = model.restore(logits, prepared)
    return np.asarray(probs[1], dtype=np.float32)


def restore_map(model: SegmentationModel, prepared: Prepared, heat: np.ndarray) -> np.ndarray:
    """A [0, 1] map ``(z, y, x)`` in network space -> the same map on the input grid ``(k, j, i)``."""
    out = _probe(model, prepared, heat)
    out[out <= 2 * _FLOOR] = 0.0
    return out


def network_coordinates(model: SegmentationModel, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """For every input voxel, the index ``(3, k, j, i)`` of the network voxel it comes from, and a
    mask of input voxels that map into network space at all."""
    shape = prepared.image.shape[1:]
    coords, inside = [], None
    for axis, n in enumerate(shape):
        ramp = _LO + (_HI - _LO) * (np.arange(n) + 0.5) / n
        code = np.broadcast_to(ramp.reshape([-1 if a == axis else 1 for a in range(3)]), shape)
        restored = _probe(model, prepared, np.ascontiguousarray(code))
        ok = restored > _LO / 2
        inside = ok if inside is None else inside & ok
        idx = np.rint((restored - _LO) / (_HI - _LO) * n - 0.5)
        coords.append(np.clip(idx, 0, n - 1).astype(np.int64))
    if inside is None or not inside.any():
        raise ModelError("The model's restore step did not map network space onto the input grid.",
                         "This model format cannot be explained yet; report it with the model id.")
    return np.stack(coords), inside


def region_to_network(model: SegmentationModel, prepared: Prepared, region: np.ndarray,
                      coordinates: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """Boolean network-space mask of the voxels an input-grid ``region`` comes from."""
    coords, inside = coordinates or network_coordinates(model, prepared)
    sel = region.astype(bool) & inside
    mask = np.zeros(prepared.image.shape[1:], dtype=bool)
    mask[tuple(c[sel] for c in coords)] = True
    return mask
