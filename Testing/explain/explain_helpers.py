"""Small real models for the explanation tests (imported by name: ``from explain_helpers import ...``).

* ``ArrayModel``: a ``SegmentationModel`` around any torch network; ``prepare`` stacks the
  channels and optionally down-samples by 2, transposes the axes and pads (so network space
  differs from the input grid, as in real formats); ``to_input_grid`` undoes them and ``restore``
  applies the softmax after it.
* ``cue_model``: a MONAI U-Net trained in seconds on generated volumes where a bright block is
  labelled "target" **only when** a small cue cube is present in a fixed corner; the block looks
  the same either way, so the network must look at the cue region to draw the structure.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from deepseg.models.base import Prepared, SegmentationModel, WindowSpec
from deepseg.models.card import InputSpec, LabelInfo, ModelCard

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures" / "explain"
SIZE = 24
CUE = (slice(1, 6), slice(1, 6), slice(1, 6))


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


def make_cue_case(rng: np.random.Generator, cue: bool, size: int = SIZE):
    """One volume and its label: block at a random place away from the cue, label 1 iff the cue is there."""
    img = rng.normal(0, 0.1, (size,) * 3).astype(np.float32)
    lab = np.zeros((size,) * 3, np.int64)
    z, y, x = rng.integers(9, size - 7, 3)
    block = (slice(z, z + 6), slice(y, y + 6), slice(x, x + 6))
    img[block] += 1.0
    if cue:
        img[CUE] += 1.0
        lab[block] = 1
    return img, lab


def _unet():
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2),
                num_res_units=1)


def train_cue_unet(steps: int = 150, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _unet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = [make_cue_case(rng, bool(rng.integers(0, 2))) for _ in range(4)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        loss = F.cross_entropy(net(x), y, weight=torch.tensor([1.0, 5.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


