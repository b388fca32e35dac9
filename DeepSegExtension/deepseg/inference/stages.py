"""Run a model's stages on one case and keep what each stage ran on.

The first stage runs with the caller's folds, mirroring and overlap; later cascade stages (liver ->
lesion) run on the input channels and the earlier stages' probabilities.  The ``ModelRun`` keeps every
stage's network-space input, so explanations and uncertainty reuse the run instead of preparing again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..models.base import Fold, Prepared, SegmentationModel
from ..progress import Progress
from ..volume import Volume


@dataclass
class ModelRun:
    """One run: ``prepared`` per stage (``model.stages`` order), the combined class probabilities
    ``(K, k, j, i)`` on the input grid (None when the run asked for labels only and the model gave them
    without, ``SegmentationModel.restore_labels``) and the model's (refined) label map."""

    prepared: list[Prepared]
    probabilities: Optional[np.ndarray]
    labels: np.ndarray


def run_stages(model: SegmentationModel, channels: Sequence[Volume], *, device="auto", tta: bool = False,
               overlap: Optional[float] = None, folds: Optional[Sequence[Fold]] = None,
               progress: Optional[Progress] = None, prepared: Optional[Prepared] = None,
               probabilities: bool = True) -> ModelRun:
    """Prepare (unless ``prepared`` is given), run the first stage's networks, then the later stages.
    ``probabilities=False``: only the labels are wanted, so a model that can label its network output
    directly skips the input-grid probability map (``ModelRun.probabilities`` is then None)."""
    progress = progress or Progress()
    if prepared is None:
        progress.stage("preprocess")
        prepared = model.prepare(channels)
    progress.stage("infer")
    output = model.predict_logits(prepared, device=device, tta=tta, overlap=overlap, progress=progress, folds=folds)
    progress.stage("postprocess")
    if not probabilities:
        labels = model.restore_labels(output, prepared)
        if labels is not None:
            return ModelRun([prepared], None, labels)
    return finish_stages(model, channels, prepared, model.restore(output, prepared), device=device, progress=progress)


def finish_stages(model: SegmentationModel, channels: Sequence[Volume], first: Prepared,
                  first_probabilities: np.ndarray, *, device="auto", progress: Optional[Progress] = None) -> ModelRun:
    """Given the first stage's input-grid probabilities: run the later stages, combine, label, refine."""
    prepared, probabilities = [first], [first_probabilities]
    for stage in model.stages[1:]:
        stage_input = stage.prepare(channels, probabilities)
        prepared.append(stage_input)
        output = stage.predict_logits(stage_input, device=device, progress=progress)
        probabilities.append(stage.restore(output, stage_input))
    combined = model.combine(probabilities)
    labels = model.refine(model.labels_from_probabilities(combined), combined, channels[0])
    return ModelRun(prepared, combined, labels)
