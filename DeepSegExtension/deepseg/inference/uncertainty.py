"""Where is the model unsure?  Voxel-wise uncertainty maps and a per-structure review score.

Maps (all on the input grid, in [0, 1]):

* ``entropy``: entropy of the class probabilities, divided by ``log K`` (1 = uniform guess);
* ``variance`` across members (mirroring TTA and/or folds): ``sum_c Var(p_c)`` scaled by its
  maximum ``1 - 1/K``, accumulated in one pass (``MemberStats``) so members are never all held;
* ``disagreement`` across folds: fraction of folds whose label differs from the ensemble's.

``structure_uncertainty`` averages a map inside each structure and on its boundary (the voxels
within one voxel of the surface, inside or out), so a reviewer can sort structures by how much
they need checking.  ``uncertainty_maps`` runs a model member by member and returns everything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from .stages import ModelRun
from ..models.base import Fold, SegmentationModel, select_folds
from ..models.card import LabelInfo
from ..progress import CancelToken, Progress, ProgressCallback
from ..volume import Volume

def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Normalised Shannon entropy ``(k, j, i)`` of class probabilities ``(K, k, j, i)``."""
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-12, 1.0)
    k = p.shape[0]
    h = -(p * np.log(p)).sum(axis=0)
    return (h / np.log(k)).astype(np.float32) if k > 1 else np.zeros(p.shape[1:], np.float32)


class MemberStats:
    """Running mean and summed per-class variance of member probabilities (one pass, O(volume))."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Optional[np.ndarray] = None
        self._sq: Optional[np.ndarray] = None

    def add(self, probabilities: np.ndarray) -> None:
        p = np.asarray(probabilities, dtype=np.float32)
        if self.mean is None:
            self.mean = np.zeros_like(p)
            self._sq = np.zeros(p.shape[1:], np.float32)
        self.n += 1
        self.mean += (p - self.mean) / self.n
        self._sq += (p * p).sum(axis=0)

    def variance(self) -> np.ndarray:
        """``sum_c Var(p_c)`` over members, scaled to [0, 1] by its maximum ``1 - 1/K``."""
        if self.mean is None:
            raise ValueError("no member was added")
        k = self.mean.shape[0]
        v = self._sq / self.n - (self.mean * self.mean).sum(axis=0)
        return np.clip(v / (1.0 - 1.0 / k), 0.0, 1.0).astype(np.float32)


def member_variance(members: Iterable[np.ndarray]) -> np.ndarray:
    """Variance map of an iterable of member probability arrays ``(K, k, j, i)`` (see ``MemberStats``)."""
    stats = MemberStats()
    for p in members:
        stats.add(p)
    return stats.variance()


def fold_disagreement(fold_labels: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Fraction of folds whose label map differs from the ensemble ``labels`` at each voxel."""
    out = np.zeros(labels.shape, np.float32)
    for f in fold_labels:
        out += f != labels
    return out / max(1, len(fold_labels))


def _boundary(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)


@dataclass
class StructureUncertainty:
    value: int
    name: str
    voxels: int
    mean_inside: float
    mean_boundary: float

    @property
    def score(self) -> float:
        """Review priority: the larger of the inside and boundary means."""
        return max(self.mean_inside, self.mean_boundary)


def structure_uncertainty(uncertainty: np.ndarray, labels: np.ndarray,
                          label_info: Sequence[LabelInfo]) -> list[StructureUncertainty]:
    """Mean uncertainty inside and on the boundary of every predicted structure, most uncertain first."""
    rows = []
    for lab in label_info:
        mask = labels == lab.value
        if not mask.any():
            continue
        rows.append(StructureUncertainty(lab.value, lab.name, int(mask.sum()), float(uncertainty[mask].mean()),
                                         float(uncertainty[_boundary(mask)].mean())))
    return sorted(rows, key=lambda r: r.score, reverse=True)


@dataclass
class UncertaintyResult:
    """``maps``: measure name -> Volume on the input grid; ``structures``: per-structure scores
    (of ``primary``); ``labels``/``probabilities``: the ensemble prediction the maps belong to;
    ``run``: that prediction's ``ModelRun`` (every stage's network-space input), for explain to reuse."""

    maps: dict[str, Volume]
    structures: list[StructureUncertainty]
    labels: Volume
    probabilities: np.ndarray
    primary: str
    info: dict = field(default_factory=dict)
    run: Optional[ModelRun] = None


def _flip(array, dims: tuple[int, ...]):
    import torch

    return torch.flip(torch.as_tensor(array), dims) if dims else torch.as_tensor(array)


def uncertainty_maps(
    model: "str | Path | SegmentationModel",
    inputs: Sequence["str | Path | Volume"],
    *,
    tta: bool = True,
    folds: Optional[Sequence[Fold]] = None,
    device: str = "auto",
    overlap: Optional[float] = None,
    progress: "Progress | ProgressCallback | None" = None,
    cancel: Optional[CancelToken] = None,
) -> UncertaintyResult:
    """Run ``model`` member by member (each fold x each mirroring when ``tta``) and return the
    ensemble prediction with its entropy, member variance and (several folds) fold disagreement.

    ``folds`` are fold names (``"0"``, ``"all"``; default: every loaded fold).  The ensemble averages
    member outputs, exactly what ``segment`` does with ``--tta`` and the same folds.  Members are those
    of the first stage; a cascade's later stages run once, on the ensemble.
    """
    from ..models.loaders import as_model
    from .channels import load_channels
    from .device import resolve_device
    from .sliding_window import mirror_combinations
    from .stages import finish_stages

    if not isinstance(progress, Progress):
        progress = Progress(progress, cancel or CancelToken())
    model = as_model(model, folds)
    fold_names = select_folds(model.fold_names, folds, f"Model {model.card.id!r}")
    dev = resolve_device(device)
    channels, _ = load_channels(list(inputs), model.card)
    reference = channels[0]
    progress.stage("preprocess")
    prepared = model.prepare(channels)
    flips = [tuple(d - 1 for d in dims) for dims in mirror_combinations(model.window.mirror_axes)] if tta else [()]
    stats, fold_labels, output_sum = MemberStats(), [], None
    members = len(fold_names) * len(flips)
    single_stage = len(model.stages) == 1
    progress.stage("uncertainty")
    for fold in fold_names:
        fold_sum = None
        for dims in flips:
            member = type(prepared)(_flip(prepared.image, dims).numpy(), prepared.reference, prepared.context)
            output = model.predict_logits(member, device=dev, tta=False, overlap=overlap, progress=Progress(
                cancel=progress.cancel), folds=[fold])
            output = _flip(output, dims).float()
            fold_sum = output if fold_sum is None else fold_sum + output
            stats.add(model.restore(output, prepared))
            progress.step(stats.n, members)
        output_sum = fold_sum if output_sum is None else output_sum + fold_sum
        if len(fold_names) > 1 and single_stage:
            fold_labels.append(model.labels_from_probabilities(model.restore(fold_sum / len(flips), prepared)))
    run = finish_stages(model, channels, prepared, model.restore(output_sum / members, prepared), device=dev,
                        progress=progress)
    probabilities, labels = run.probabilities, run.labels
    maps = {"entropy": reference.with_array(entropy(probabilities), name="entropy")}
    if members > 1:
        maps["variance"] = reference.with_array(stats.variance(), name="member variance")
    if fold_labels:
        maps["disagreement"] = reference.with_array(fold_disagreement(fold_labels, labels), name="fold disagreement")
    primary = "disagreement" if fold_labels else "variance" if members > 1 else "entropy"
    structures = structure_uncertainty(maps[primary].array, labels, model.card.labels)
    progress.finish()
    info = {"members": members, "folds": len(fold_names), "mirrorings": len(flips), "primary": primary,
            "timings_s": {k: round(v, 3) for k, v in progress.timings.items()}}
    return UncertaintyResult(maps, structures, reference.with_array(labels.astype(np.uint16), name="labels"),
                             probabilities, primary, info, run)


def uncertainty_summary(result: UncertaintyResult) -> dict:
    """JSON-ready summary for the CLIs: the measure written and the structures, most uncertain first."""
    return {"measure": result.primary, **result.info,
            "structures": [dict(vars(s), score=s.score) for s in result.structures]}
