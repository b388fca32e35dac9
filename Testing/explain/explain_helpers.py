"""Small real models for the explanation tests (imported by name: ``from explain_helpers import ...``).

* ``ArrayModel``: a ``SegmentationModel`` around any torch network; ``prepare`` stacks the
  channels and optionally down-samples by 2, transposes the axes and pads (so network space
  differs from the input grid, as in real formats); ``to_input_grid`` undoes them and ``restore``
  applies the softmax after it.
* the cue network (``Testing/fixtures/cue_unet.py``, shipped weights): a MONAI U-Net that draws a
  bright block as "target" only when a small cue cube is present in a fixed corner.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from fixtures.cue_unet import CUE, SIZE  # noqa: F401  (the tests import them from here)

from deepseg.models.base import Prepared, SegmentationModel, WindowSpec
from deepseg.models.card import InputSpec, LabelInfo, ModelCard


class ArrayModel(SegmentationModel):
    def __init__(self, net: torch.nn.Module, n_labels: int = 1, patch=(SIZE,) * 3, in_channels: int = 1,
                 downsample: bool = False, transpose: bool = False, pad: int = 0, overlap: float = 0.5,
                 margin: int = 0) -> None:
        labels = [LabelInfo(i + 1, ["target", "other", "third"][i]) for i in range(n_labels)]
        self.card = ModelCard("test-array", "test", "test", labels,
                              inputs=[InputSpec(f"c{i}") for i in range(in_channels)])
        self.networks = {"0": net.eval()}
        self.window = WindowSpec(tuple(patch), overlap=overlap, mirror_axes=(0, 1, 2), output_margin=(margin,) * 3)
        self.downsample, self.transpose, self.pad = downsample, transpose, pad

    def prepare(self, channels, previous=()):
        img = np.stack([c.array for c in channels]).astype(np.float32)  # the cue net was trained on raw intensities
        t = torch.from_numpy(img)[None]
        if self.downsample:
            t = F.interpolate(t, scale_factor=0.5, mode="trilinear", align_corners=False)
        if self.transpose:
            t = t.permute(0, 1, 4, 3, 2)
        if self.pad:
            t = F.pad(t, [self.pad] * 6, mode="replicate")
        return Prepared(t[0].numpy(), channels[0], {"shape": channels[0].shape})

    def to_input_grid(self, maps, prepared, fill=0.0):
        t = torch.as_tensor(maps, dtype=torch.float32)[None]
        if self.pad:
            t = t[:, :, self.pad:-self.pad, self.pad:-self.pad, self.pad:-self.pad]
        if self.transpose:
            t = t.permute(0, 1, 4, 3, 2)
        if self.downsample:
            t = F.interpolate(t, size=prepared.context["shape"], mode="trilinear", align_corners=False)
        return t[0].numpy()

    def restore(self, logits, prepared):
        return torch.softmax(torch.from_numpy(self.to_input_grid(logits, prepared)), 0).numpy()


def two_fold_model(net: torch.nn.Module) -> ArrayModel:
    """``net`` as fold "0" and a seeded noisy copy of it as fold "1" (the same second fold whatever ran
    before), mirroring on axes 0 and 2: an ensemble whose members disagree near decision boundaries."""
    import copy

    other = copy.deepcopy(net)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=noise))
    model = ArrayModel(net)
    model.networks = {"0": net, "1": other.eval()}
    model.window.mirror_axes = (0, 2)
    return model
