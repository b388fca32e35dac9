"""Does a heat map point at what the model really uses?  Perturb the input and re-segment.

For a structure ``c`` predicted by the model (``reference`` = its original label map):

* **deletion**: remove the top-``k`` fraction of voxels by attribution (``removal``: set them to the
  background intensity, or impute them from their surroundings -- see ``removal.py``), re-run the
  model, report the Dice lost, ``1 - Dice(new_c, reference_c)`` (higher = the map found voxels the
  model needs);
* **insertion**: remove everything but the top-``k`` voxels, report the Dice regained (higher =
  those voxels suffice);
* **Prediction Preserved / Image Preserved** (SPIE Medical Imaging 2022, doi 10.1117/12.2612288):
  keep only the attributed region (map >= ``threshold``), re-segment; PP = fraction of the original
  structure still predicted, IP = fraction of the image that was kept (lower = more selective).

Baselines every method must beat: a ``random_map`` and a ``distance_map`` (1 at the structure's
core, decaying with the distance to it), the trivial "look at the structure itself" explanation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from ..measure.compare import dice
from ..volume import Volume
from .removal import remove_voxels

FRACTIONS = (0.01, 0.05, 0.2)


def random_map(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform random attribution (the chance baseline)."""
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def distance_map(structure: np.ndarray, spacing: Sequence[float], scale_mm: float = 10.0) -> np.ndarray:
    """``1 / (1 + d / scale_mm)`` at distance ``d`` mm outside ``structure``; inside it 1 at the deepest
    voxel, falling by at most 0.001 towards the border, so a top-k% that covers only part of the
    structure takes its core (one solid piece) rather than scattered voxels."""
    from scipy import ndimage

    if not structure.any():
        return np.zeros(structure.shape, np.float32)
    sampling = tuple(reversed(spacing))  # array order (k, j, i)
    d = ndimage.distance_transform_edt(~structure, sampling=sampling)
    depth = ndimage.distance_transform_edt(structure, sampling=sampling)
    inside = 1.0 - 1e-3 * (1.0 - depth / depth.max())
    return np.where(structure, inside, 1.0 / (1.0 + d / scale_mm)).astype(np.float32)


def top_fraction(heat: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the ``fraction`` of voxels with the highest attribution (ties broken at random)."""
    n = int(round(fraction * heat.size))
    mask = np.zeros(heat.size, dtype=bool)
    if n <= 0:
        return mask.reshape(heat.shape)
    jitter = np.random.default_rng(seed).random(heat.size, dtype=np.float32) * 1e-6
    key = heat.ravel().astype(np.float32) + jitter
    mask[np.argpartition(-key, n - 1)[:n]] = True
    return mask.reshape(heat.shape)


@dataclass
class Faithfulness:
    """Scores of one map; ``deletion``/``insertion`` map fraction -> Dice lost / regained."""

    deletion: dict[float, float] = field(default_factory=dict)
    insertion: dict[float, float] = field(default_factory=dict)
    prediction_preserved: float = float("nan")
    image_preserved: float = float("nan")

    @property
    def deletion_mean(self) -> float:
        return float(np.mean(list(self.deletion.values())))

    @property
    def insertion_mean(self) -> float:
        return float(np.mean(list(self.insertion.values()))) if self.insertion else float("nan")

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(deletion_mean=self.deletion_mean, insertion_mean=self.insertion_mean)
        return out


Segmenter = Callable[[Sequence[Volume]], np.ndarray]
"""Runs the model on channels and returns the label map array (input grid)."""


def model_segmenter(model, device: str = "auto", cancel=None) -> Segmenter:
    """The ordinary ``segment`` pipeline as a ``Segmenter`` (no post-processing, no outputs written)."""
    from ..inference.pipeline import segment

    return lambda channels: segment(model, list(channels), device=device, cancel=cancel).labels.array


def evaluate_map(segmenter: Segmenter, channels: Sequence[Volume], labels: np.ndarray, value: int,
                 heat: np.ndarray, *, fractions: Sequence[float] = FRACTIONS, threshold: float = 0.5,
                 background: Optional[Sequence[float]] = None, removal: str = "constant", seed: int = 0,
                 insertion: bool = True, preserved: bool = True,
                 step: Optional[Callable[[int, int], None]] = None) -> Faithfulness:
    """Deletion, (``insertion``) insertion and (``preserved``) PP/IP of ``heat`` (input grid, [0, 1])
    for structure ``value`` of the model's original label map ``labels``; ``segmenter`` re-runs the
    model on perturbed channels (``(1 + insertion) * len(fractions) + preserved`` runs).  ``removal``:
    "constant" (the ``background`` intensity per channel, default each channel's minimum) or "impute"."""
    reference = labels == value
    result = Faithfulness()
    total, done = (1 + int(insertion)) * len(fractions) + int(preserved), 0

    def run(keep: np.ndarray) -> np.ndarray:
        nonlocal done
        out = segmenter(remove_voxels(channels, ~keep, removal, background)) == value
        done += 1
        if step:
            step(done, total)
        return out

    for k in fractions:
        top = top_fraction(heat, k, seed)
        result.deletion[k] = 1.0 - dice(run(~top), reference)
        if insertion:
            result.insertion[k] = dice(run(top), reference)
    if preserved:
        kept = heat >= threshold
        if kept.any() and not kept.all():
            survived = run(kept)
        else:  # nothing kept: nothing survives; everything kept: the original prediction
            survived = reference if kept.all() else np.zeros_like(reference)
        result.prediction_preserved = float((survived & reference).sum() / max(1, reference.sum()))
        result.image_preserved = float(kept.mean())
    return result
