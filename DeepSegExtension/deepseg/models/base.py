"""The interface every model format implements, so one pipeline (and one explainer) serves all.

A model turns input channels into class probabilities on the *input* grid in three steps:

1. ``prepare``: resample/crop/normalise the channels into network space -> ``Prepared``;
2. ``predict_logits``: run the networks over ``Prepared.image`` (sliding window, folds, TTA);
3. ``restore``: map network-space logits back to probabilities on the input grid.

``labels_from_probabilities`` and ``refine`` turn probabilities into the final label map
(argmax by default; Render 3D U-Net adds its false-positive screening in ``refine``).
The explainer reuses ``prepare``, ``networks`` and ``window`` to compute gradients patch by patch.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress
from ..volume import Volume
from .card import ModelCard


@dataclass
class WindowSpec:
    """How networks are run over a volume.

    ``output_margin``: voxels a valid-convolution network loses on each side (input patch =
    ``patch_size``, output = ``patch_size - 2*margin``); ``blend``: "gaussian" (nnU-Net) or
    "constant" (plain average; with a margin this is tiling with a halo).
    """

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    blend: str = "gaussian"
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    output_margin: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Prepared:
    """Network-space input (``image`` is ``(C, z, y, x)`` float32) and whatever ``restore`` needs."""

    image: np.ndarray
    reference: Volume
    context: dict[str, Any] = field(default_factory=dict)


def require_channel_count(card: ModelCard, given: int) -> None:
    """Refuse a wrong number of input channels, naming the model's channels in order."""
    expected = [i.name for i in card.inputs]
    if given != len(expected):
        raise InputError(
            f"Model {card.id!r} takes {len(expected)} input channel(s) ({', '.join(expected)}), "
            f"but {given} were given.",
            "Pass one --input per channel, in this order: " + ", ".join(expected) + ".")


class SegmentationModel(ABC):
    """A loaded model: its card, its networks (one per fold) and how to run them."""

    card: ModelCard
    networks: list  # list[torch.nn.Module], one per fold, in eval mode
    window: WindowSpec

    @property
    def num_classes(self) -> int:
        """Number of network output channels (background included)."""
        return len(self.card.labels) + 1

    def check_channels(self, channels: Sequence[Volume]) -> None:
        require_channel_count(self.card, len(channels))

    @abstractmethod
    def prepare(self, channels: Sequence[Volume]) -> Prepared:
        """Channels (all on one grid) -> network-space image."""

    @abstractmethod
    def restore(self, logits, prepared: Prepared) -> np.ndarray:
        """Network-space logits ``(K, z, y, x)`` -> probabilities ``(K, k, j, i)`` on the input grid."""

    def predict_logits(self, prepared: Prepared, *, device, tta: bool, overlap: Optional[float],
                       progress: Progress, folds: Optional[Sequence[int]] = None):
        """Average the sliding-window logits of the selected folds (nnU-Net's ensembling)."""
        from ..inference.sliding_window import predict_sliding_window

        nets = self.networks if folds is None else [self.networks[f] for f in folds]
        return predict_sliding_window(
            nets, prepared.image, self.window, self.num_classes, device=device,
            mirror=tta, overlap=self.window.overlap if overlap is None else overlap, progress=progress)

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """Argmax over classes, mapping channel index c>0 to ``card.labels[c-1].value``."""
        index = np.argmax(probabilities, axis=0)
        lut = np.zeros(self.num_classes, dtype=np.uint16)
        lut[1:] = [lab.value for lab in self.card.labels]
        return lut[index]

    def refine(self, labels: np.ndarray, probabilities: np.ndarray, reference: Volume) -> np.ndarray:
        """Model-specific clean-up of the label map (default: none)."""
        return labels
