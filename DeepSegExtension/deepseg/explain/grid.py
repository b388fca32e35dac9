"""Move maps between a model's network space and the input grid using only the model's own
``restore`` (so one explainer serves every format, whatever resampling, cropping, flipping or
axis order ``prepare`` applied).

``restore`` turns network-space outputs into class probabilities on the input grid.  A probe puts
a value ``t`` in class 1's channel; wherever ``restore`` places network voxels, class 1's restored
probability is ``t`` again, and background fill (cropped-away regions) gives 0.  Models differ in
what ``restore`` expects: logits it applies a softmax to (probe channels ``(0, logit t)``), or
probabilities it uses as they are (probe channels ``(1 - t, t)``); ``probe_mode`` finds out by
restoring a known constant.  Codes stay in (0.5, 1) so post-processing that keeps only voxels
above 0.5 (e.g. the liver model's mask clean-up) lets them through.

* ``restore_map`` carries a [0, 1] map from network space to the input grid;
* ``network_coordinates`` restores the network-space index of every input voxel (one probe per
  axis), from which ``region_to_network`` marks the network voxels an input region covers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import ModelError
from ..models.base import Prepared, SegmentationModel

_LO, _HI = 0.55, 0.95   # code range: above any 0.5 threshold, clear of 0 (background fill) and 1
_MODES = ("logits", "probabilities")


def _probe(model: SegmentationModel, prepared: Prepared, values: np.ndarray, mode: str) -> np.ndarray:
    """Restore a network-space map ``values`` in (0, 1) as class 1's channel of a K-class output."""
    t = np.clip(values.astype(np.float64), 1e-6, 1 - 1e-6)
    shape = (model.num_classes, *values.shape)
    if mode == "logits":
        out = torch.full(shape, -1e4, dtype=torch.float32)
        out[0] = 0.0
        out[1] = torch.from_numpy(np.log(t / (1 - t)).astype(np.float32))
    else:
        out = torch.zeros(shape, dtype=torch.float32)
        out[0] = torch.from_numpy((1 - t).astype(np.float32))
        out[1] = torch.from_numpy(t.astype(np.float32))
    return np.asarray(model.restore(out, prepared)[1], dtype=np.float32)


def probe_mode(model: SegmentationModel, prepared: Prepared) -> str:
    """"logits" or "probabilities": the encoding under which ``restore`` gives a constant back."""
    shape = prepared.image.shape[1:]
    for mode in _MODES:
        for value in (0.65, 0.85):
            restored = _probe(model, prepared, np.full(shape, value), mode)
            inside = restored[restored > 0.5]
            if inside.size == 0 or abs(float(np.median(inside)) - value) > 0.01:
                break
        else:
            return mode
    raise ModelError(f"Model {model.card.id!r}: its restore step does not carry values from network space "
                     "to the input grid, so maps cannot be placed on the image.",
                     "This model format cannot be explained yet; report it with the model id.")


def _encode(values: np.ndarray) -> np.ndarray:
    return _LO + (_HI - _LO) * values


def _decode(restored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inside = restored > 0.5
    return np.clip((restored - _LO) / (_HI - _LO), 0.0, 1.0), inside


def restore_map(model: SegmentationModel, prepared: Prepared, heat: np.ndarray, mode: Optional[str] = None) -> np.ndarray:
    """A [0, 1] map ``(z, y, x)`` in network space -> the same map on the input grid ``(k, j, i)``."""
    mode = mode or probe_mode(model, prepared)
    value, inside = _decode(_probe(model, prepared, _encode(np.clip(heat, 0.0, 1.0)), mode))
    return np.where(inside, value, 0.0).astype(np.float32)


def network_coordinates(model: SegmentationModel, prepared: Prepared,
                        mode: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """For every input voxel, the index ``(3, k, j, i)`` of the network voxel it comes from, and a
    mask of input voxels that map into network space at all."""
    mode = mode or probe_mode(model, prepared)
    shape = prepared.image.shape[1:]
    coords, inside = [], None
    for axis, n in enumerate(shape):
        ramp = (np.arange(n) + 0.5) / n
        code = np.broadcast_to(ramp.reshape([-1 if a == axis else 1 for a in range(3)]), shape)
        value, ok = _decode(_probe(model, prepared, _encode(np.ascontiguousarray(code)), mode))
        inside = ok if inside is None else inside & ok
        coords.append(np.clip(np.rint(value * n - 0.5), 0, n - 1).astype(np.int64))
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
