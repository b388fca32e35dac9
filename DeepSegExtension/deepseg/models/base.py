"""The contract every model format honours, so one pipeline (and one explainer) serves all.

A model is one or more **stages** (a cascade: liver -> lesion).  Each stage turns the input channels
(and, for later stages, the earlier stages' probabilities) into class probabilities on the *input*
grid in three steps:

1. ``prepare``: resample/crop/normalise into network space -> ``Prepared``;
2. ``predict_logits``: run the stage's networks over ``Prepared.image`` (sliding window, folds, TTA);
   the stage declares in ``output`` whether that is logits or already probabilities;
3. ``restore``: network-space output -> probabilities on the input grid.

``to_input_grid`` is the stage's explicit network-grid -> input-grid mapping of any map (no
nonlinearity), which the explainer uses both ways.  Networks are kept by fold *name* ("0", "3",
"all"); ``select_folds`` is the one place a fold request is checked.  The model combines its stages'
probabilities (``combine``) and turns them into the final label map (``labels_from_probabilities``,
then ``refine``: Render 3D U-Net adds its false-positive screening there).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import InputError, ModelError
from ..inference.argmax import argmax_channels
from ..inference.windows import WindowSpec
from ..progress import Progress
from ..volume import Volume
from .card import ModelCard

Fold = Union[int, str]


class Output(str, Enum):
    """What a stage's ``predict_logits`` returns: logits (``restore`` applies softmax/sigmoid) or probabilities."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


@dataclass
class Prepared:
    """Network-space input (``image`` is ``(C, z, y, x)`` float32) and whatever ``to_input_grid`` needs."""

    image: np.ndarray
    reference: Volume
    context: dict[str, Any] = field(default_factory=dict)


def fold_name(fold: Fold) -> str:
    """The name of a fold: ``3``, ``"3"`` and ``"fold_3"`` are all ``"3"``; ``"all"`` stays ``"all"``."""
    name = str(fold).strip()
    return name[len("fold_"):] if name.startswith("fold_") else name


def select_folds(available: Sequence[str], requested: Optional[Sequence[Fold]], where: str = "this model") -> list[str]:
    """Names of the requested folds (all ``available`` ones when ``requested`` is None), in request order.

    Folds are names (``"0"``, ``"3"``, ``"all"``), never list positions; ints are accepted as names."""
    if requested is None:
        return list(available)
    names = list(dict.fromkeys(fold_name(f) for f in requested))
    missing = [n for n in names if n not in available]
    if missing or not names:
        listed = ", ".join(available) or "none"
        example = available[0] if available else "0"
        raise ModelError(f"{where} has no {', '.join('fold_' + n for n in missing) or 'fold in an empty selection'}; "
                         f"available folds: {listed}.",
                         f"Choose folds by name from: {listed} (e.g. --folds {example} runs fold_{example}), "
                         "or leave the fold selection out to use all of them.")
    return names


def require_channel_count(card: ModelCard, given: int) -> None:
    """Refuse a wrong number of input channels, naming the model's channels in order."""
    expected = [i.name for i in card.inputs]
    if given != len(expected):
        raise InputError(
            f"Model {card.id!r} takes {len(expected)} input channel(s) ({', '.join(expected)}), "
            f"but {given} were given.",
            "Pass one --input per channel, in this order: " + ", ".join(expected) + ".")


class Stage(ABC):
    """One set of networks (keyed by fold name) run over one network-space image."""

    name: str = "main"
    networks: dict  # fold name -> torch.nn.Module in eval mode
    window: WindowSpec
    output: Output = Output.LOGITS
    label_values: tuple[int, ...]  # the label value of output channel c > 0 is label_values[c - 1]

    @property
    def num_classes(self) -> int:
        """Number of output classes (background included)."""
        return len(self.label_values) + 1

    @property
    def fold_names(self) -> list[str]:
        return list(self.networks)

    def fold_networks(self, folds: Optional[Sequence[Fold]] = None) -> list:
        """The networks of the selected folds (by name; all when ``folds`` is None)."""
        where = f"Model {self.card.id!r}" if isinstance(self, SegmentationModel) else f"Stage {self.name!r}"
        return [self.networks[n] for n in select_folds(self.fold_names, folds, where)]

    @abstractmethod
    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        """Channels (all on one grid) and the earlier stages' input-grid probabilities -> network-space image."""

    def predict_logits(self, prepared: Prepared, *, device="auto", tta: bool = False, overlap: Optional[float] = None,
                       progress: Optional[Progress] = None, folds: Optional[Sequence[Fold]] = None):
        """Average the sliding-window outputs of the selected folds (nnU-Net's ensembling)."""
        from ..inference.sliding_window import predict_sliding_window

        return predict_sliding_window(
            self.fold_networks(folds), prepared.image, self.window, self.num_classes, device=device,
            mirror=tta, overlap=self.window.overlap if overlap is None else overlap, progress=progress)

    @abstractmethod
    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        """Network-space maps ``(C, z, y, x)`` -> the same maps ``(C, k, j, i)`` on the input grid (values
        interpolated, no nonlinearity); input voxels the network never saw get ``fill`` (one per channel)."""

    @abstractmethod
    def restore(self, output, prepared: Prepared) -> np.ndarray:
        """Network-space output ``(K, z, y, x)`` -> probabilities ``(K, k, j, i)`` on the input grid."""

    def network_coordinates(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """For every input voxel, the network-space index ``(3, k, j, i)`` it comes from, and the mask of
        input voxels that come from network space at all (both through ``to_input_grid``)."""
        shape = prepared.image.shape[1:]
        inside = self.to_input_grid(np.ones((1, *shape), np.float32), prepared, fill=0.0)[0] > 0.5
        coords = []
        for axis, n in enumerate(shape):  # one axis at a time: a CT's input grid is large
            ramp = np.arange(n, dtype=np.float32).reshape([1] + [-1 if a == axis else 1 for a in range(3)])
            mapped = self.to_input_grid(np.broadcast_to(ramp, (1, *shape)).copy(), prepared, fill=0.0)[0]
            coords.append(np.clip(np.rint(mapped), 0, n - 1).astype(np.int32))
        return np.stack(coords), inside

    def class_channel(self, value: int) -> int:
        """Output channel of label ``value``."""
        return list(self.label_values).index(value) + 1


def fill_values(fill: "float | Sequence[float]", channels: int) -> list[float]:
    """``to_input_grid``'s ``fill`` as one value per channel."""
    values = [float(fill)] * channels if np.isscalar(fill) else [float(f) for f in fill]  # type: ignore[arg-type]
    if len(values) != channels:
        raise ValueError(f"{len(values)} fill values for {channels} channels")
    return values


class SegmentationModel(Stage):
    """A loaded model: its card and its stages; a single-stage model is its own (first) stage."""

    card: ModelCard

    @property
    def label_values(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(lab.value for lab in self.card.labels)

    @property
    def stages(self) -> list[Stage]:
        """The stages in run order; the first is the model itself."""
        return [self]

    def stage_of(self, value: int) -> Stage:
        """The stage whose networks decide label ``value`` (the last one that outputs it)."""
        for stage in reversed(self.stages):
            if value in stage.label_values:
                return stage
        raise ModelError(f"No stage of model {self.card.id!r} outputs label {value}.", "Choose one of the model's labels.")

    def combine(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """The stages' input-grid probabilities -> the model's ``(len(card.labels) + 1, k, j, i)``."""
        return probabilities[-1]

    def check_channels(self, channels: Sequence[Volume]) -> None:
        require_channel_count(self.card, len(channels))

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """Argmax over classes, mapping channel index c>0 to ``card.labels[c-1].value``."""
        return self.labels_from_index(argmax_channels(probabilities))

    def labels_from_index(self, index: np.ndarray) -> np.ndarray:
        """Class channel indices -> label values (uint16): channel c>0 is ``card.labels[c-1].value``."""
        lut = np.zeros(len(self.card.labels) + 1, dtype=np.uint16)
        lut[1:] = [lab.value for lab in self.card.labels]
        return lut[index]

    def refine(self, labels: np.ndarray, probabilities: Optional[np.ndarray], reference: Volume) -> np.ndarray:
        """Model-specific clean-up of the label map (default: none).  ``probabilities`` is None on a
        labels-only run (``restore_labels``), which only models whose refinement ignores it take."""
        return labels

    def restore_labels(self, output, prepared: Prepared) -> Optional[np.ndarray]:
        """The model's refined label map on the input grid straight from its first stage's network ``output``,
        without building the input-grid probability map (``(K, k, j, i)`` float32: 1.2 GB for 18 classes on
        256^3), or None when the model cannot (cascades, refinements that read the probabilities): then the
        pipeline restores the probabilities and labels them.  When given, it equals that path's labels
        voxel for voxel, or says where not (nnU-Net: ties its softmax's rounding would create).  Used when a run
        asks for labels only (``run_stages(probabilities=False)``)."""
        return None
