"""Render 3D U-Net: nested attention U-Net + 3D point rendering + false-positive screening.

Design after "Render U-Net" (Applied Sciences 2020, doi 10.3390/app10196838), which adapts the
PointRend idea from computer graphics to 3D CT organ segmentation:

* **Backbone: 3D ANU-Net** (attention + nested U-Net).  An encoder of ``len(features)`` levels
  (two 3x3x3 conv/instance-norm/leaky-ReLU per level, max-pool down-sampling) feeds UNet++ style
  *nested* skip paths: decoder node ``X[i][j]`` concatenates all earlier nodes of level ``i``
  (``X[i][0..j-1]``) — weighted by an additive **attention gate** driven by the up-sampled
  coarser node ``X[i+1][j-1]`` — with that up-sampled node.  Up-sampling resizes to the exact
  skip size, so odd input sizes work.
* **Deep supervision**: every nested node of the *coarse* level ``coarse_level`` (``X[c][1..]``)
  has a 1x1x1 segmentation head; all heads are trained (their logits up-sampled to full
  resolution for a Dice + cross-entropy loss), the deepest one gives the coarse prediction.
* **Point rendering instead of plain up-sampling**: levels finer than ``coarse_level`` have no
  decoder.  At inference each subdivision step up-samples the coarse logits x2 and re-predicts
  only the ``subdivision_points`` most uncertain boundary voxels (smallest top-2 logit margin)
  with a shared point MLP fed by fine encoder features (levels ``0..c-1``, sampled trilinearly)
  and the coarse logits (``point_head.PointHead.subdivide``).  At training the point MLP is
  supervised on uncertainty-biased random points (``point_head.training_points``).
* **False-positive screening** (``fp_screen.ComponentScreen``): a small classifier over the
  connected components of the final label map, trained after the network on components of
  training predictions vs ground truth; ``CardModel.refine`` applies it as post-processing.

``forward`` returns full-resolution logits ``(B, K, z, y, x)`` in eval mode, and in training mode
a dict with the deep-supervision logits and the point predictions, consumed by ``loss``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import AttentionGate, ConvBlock, resize_to
from .fp_screen import ComponentScreen
from .point_head import PointHead, sample_points, training_points


class RenderUNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, features: Sequence[int] = (16, 32, 64, 128),
                 coarse_level: int = 1, subdivision_points: int = 4096, train_points: int = 2048,
                 point_hidden: int = 64, point_loss_weight: float = 1.0, fp_hidden: int = 16,
                 fp_threshold: float = 0.5) -> None:
        super().__init__()
        depth = len(features)
        if not 1 <= coarse_level <= depth - 2:
            raise ValueError(f"coarse_level must be in 1..{depth - 2} for {depth} levels, got {coarse_level}")
        self.features = tuple(int(f) for f in features)
        self.coarse_level = coarse_level
        self.subdivision_points = subdivision_points
        self.train_points = train_points
        self.point_loss_weight = point_loss_weight
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else features[i - 1], features[i]) for i in range(depth))
        self.nodes = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        for j in range(1, depth - coarse_level):
            for i in range(coarse_level, depth - j):
                f, g = features[i], features[i + 1]
                self.gates[f"{i}_{j}"] = AttentionGate(f * j, g, max(1, f // 2))
                self.nodes[f"{i}_{j}"] = ConvBlock(f * j + g, f)
        self.heads = nn.ModuleList(
            nn.Conv3d(features[coarse_level], out_channels, 1) for _ in range(1, depth - coarse_level))
        self.point_head = PointHead(sum(features[:coarse_level]), out_channels, hidden=point_hidden)
        self.fp_screen = ComponentScreen(out_channels, hidden=fp_hidden, threshold=fp_threshold)

    def _backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encoder features per level and the deep-supervision logits (coarse level)."""
        enc = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool3d(x, 2, ceil_mode=True))
            enc.append(x)
        grid = {(i, 0): e for i, e in enumerate(enc)}
        depth, c = len(self.features), self.coarse_level
        for j in range(1, depth - c):
            for i in range(c, depth - j):
                skips = torch.cat([grid[(i, k)] for k in range(j)], dim=1)
                up = resize_to(grid[(i + 1, j - 1)], skips.shape[2:])
                grid[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat([self.gates[f"{i}_{j}"](skips, up), up], dim=1))
        deep = [head(grid[(c, j)]) for j, head in enumerate(self.heads, start=1)]
        return enc, deep

    def forward(self, x: torch.Tensor):
        enc, deep = self._backbone(x)
        fine = enc[:self.coarse_level]
        if self.training:
            coarse = deep[-1]
            coords = training_points(coarse, self.train_points)
            return {"deep": deep, "points": self.point_head.point_logits(fine, coarse, coords), "coords": coords}
        logits = deep[-1]
        for level in range(self.coarse_level - 1, -1, -1):
            logits, _ = self.point_head.subdivide(logits, fine, enc[level].shape[2:], self.subdivision_points)
        return logits

    def loss(self, outputs: dict, target: torch.Tensor) -> torch.Tensor:
        """Deep-supervised Dice + CE at full resolution plus point cross-entropy.
        ``target``: class indices ``(B, 1, z, y, x)``."""
        from monai.losses import DiceCELoss

        seg_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        size = target.shape[2:]
        weights = [2.0 ** j for j in range(len(outputs["deep"]))]  # deeper nested nodes weigh more
        seg = sum(w * seg_loss(resize_to(d, size), target) for w, d in zip(weights, outputs["deep"])) / sum(weights)
        point_target = sample_points(target.float(), outputs["coords"], mode="nearest")[:, 0].long()
        return seg + self.point_loss_weight * F.cross_entropy(outputs["points"], point_target)
