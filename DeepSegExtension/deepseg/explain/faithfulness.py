"""Does a heat map point at what the model really uses?  Perturb the input and re-segment.

For a structure ``c`` predicted by the model (``reference`` = its original label map):

* **deletion**: set the top-``k`` fraction of voxels by attribution to the background intensity,
  re-run the model, report the Dice lost, ``1 - Dice(new_c, reference_c)`` (higher = the map found
  voxels the model needs);
* **insertion**: start from an all-background image, put back only the top-``k`` voxels, report the
  Dice regained (higher = those voxels suffice);
* **Prediction Preserved / Image Preserved** (SPIE Medical Imaging 2022, doi 10.1117/12.2612288):
  keep only the attributed region (map >= ``threshold``), re-segment; PP = fraction of the original
  structure still predicted, IP = fraction of the image that was kept (lower = more selective).

Baselines every method must beat: a ``random_map`` and a ``distance_map`` (1 inside the structure,
decaying with the distance to it), the trivial "look at the structure itself" explanation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from ..measure.compare import dice
from ..volume import Volume

FRACTIONS = (0.01, 0.05, 0.2)


def random_map(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform random attribution (the chance baseline)."""
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def distance_map(structure: np.ndarray, spacing: Sequence[float], scale_mm: float = 10.0) -> np.ndarray:
    """1 inside ``structure``, ``1 / (1 + d / scale_mm)`` at distance ``d`` mm outside it."""
    from scipy import ndimage

    if not structure.any():
        return np.zeros(structure.shape, np.float32)
    d = ndimage.distance_transform_edt(~structure, sampling=tuple(reversed(spacing)))  # array order (k, j, i)
    return (1.0 / (1.0 + d / scale_mm)).astype(np.float32)


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
        return float(np.mean(list(self.insertion.values())))

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


def background_values(channels: Sequence[Volume]) -> list[float]:
    """The "removed" intensity of each channel: its minimum (air in CT, zero outside the head in MR)."""
    return [float(c.array.min()) for c in channels]


def evaluate_map(segmenter: Segmenter, channels: Sequence[Volume], labels: np.ndarray, value: int,
                 heat: np.ndarray, *, fractions: Sequence[float] = FRACTIONS, threshold: float = 0.5,
                 background: Optional[Sequence[float]] = None, seed: int = 0, preserved: bool = True,
                 step: Optional[Callable[[int, int], None]] = None) -> Faithfulness:
    """Deletion, insertion and (``preserved``) PP/IP of ``heat`` (input grid, [0, 1]) for structure
    ``value`` of the model's original label map ``labels``; ``segmenter`` re-runs the model on
    perturbed channels (``2 * len(fractions) + preserved`` runs)."""
    reference = labels == value
    background = background_values(channels) if background is None else list(background)
    result = Faithfulness()
    total, done = 2 * len(fractions) + int(preserved), 0

    def run(keep: np.ndarray) -> np.ndarray:
        nonlocal done
        perturbed = [c.with_array(np.where(keep, c.array, np.asarray(b, dtype=c.array.dtype)))
                     for c, b in zip(channels, background)]
        out = segmenter(perturbed) == value
        done += 1
        if step:
            step(done, total)
        return out

    for k in fractions:
        top = top_fraction(heat, k, seed)
        result.deletion[k] = 1.0 - dice(run(~top), reference)
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
