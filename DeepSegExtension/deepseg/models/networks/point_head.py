"""Point rendering in 3D (the PointRend idea): re-predict only the uncertain boundary voxels.

At inference a coarse logit map is up-sampled x2; the ``n`` voxels with the smallest margin
between their two largest logits, among voxels on a predicted boundary, are re-predicted by a
small shared MLP (1x1 convolutions) from fine-grained encoder features sampled at those voxels
concatenated with the coarse logits there.  All other voxels keep the up-sampled coarse logits.
At training, points are drawn PointRend style: ``oversample * n`` uniform random points, the
``importance * n`` most uncertain of them, plus ``(1 - importance) * n`` uniform ones.

Point coordinates are normalised ``(z, y, x)`` in [-1, 1] with ``align_corners=False``
(voxel centres at ``(2 i + 1) / size - 1``), the convention of ``torch.nn.functional.grid_sample``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """``top2 - top1`` of the class logits (dim 1): close to 0 = uncertain, very negative = sure."""
    top = logits.topk(2, dim=1).values
    return top[:, 1] - top[:, 0]


def boundary_mask(logits: torch.Tensor) -> torch.Tensor:
    """Voxels whose 3x3x3 neighbourhood holds more than one arg-max class, ``(B, z, y, x)`` bool."""
    lab = logits.argmax(1, keepdim=True).float()
    return (F.max_pool3d(lab, 3, 1, 1) != -F.max_pool3d(-lab, 3, 1, 1))[:, 0]


def select_uncertain_points(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices of the (at most) ``n`` most uncertain boundary voxels of one ``(K, z, y, x)`` map."""
    score = uncertainty(logits[None])[0]
    score = torch.where(boundary_mask(logits[None])[0], score, torch.full_like(score, -torch.inf)).flatten()
    values, index = score.topk(min(n, score.numel()))
    return index[torch.isfinite(values)]


def index_to_coords(index: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Flat voxel indices on a grid of ``size`` -> normalised ``(N, 3)`` (z, y, x) voxel-centre coordinates."""
    coords = []
    for extent in reversed(size):
        coords.append(index % extent)
        index = index // extent
    ijk = torch.stack(coords[::-1], dim=-1).float()
    return (2 * ijk + 1) / torch.tensor(list(size), dtype=torch.float32, device=ijk.device) - 1


def sample_points(maps: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``(B, C, z, y, x)`` maps at normalised ``(B, N, 3)`` (z, y, x) points -> ``(B, C, N)``."""
    grid = coords.flip(-1)[:, :, None, None, :].to(maps.dtype)  # grid_sample wants (x, y, z)
    out = F.grid_sample(maps, grid, mode=mode, padding_mode="border", align_corners=False)
    return out[:, :, :, 0, 0]


def training_points(coarse: torch.Tensor, n: int, oversample: int = 3, importance: float = 0.75) -> torch.Tensor:
    """Uncertainty-biased random points ``(B, n, 3)`` for supervising the point head (PointRend)."""
    b = coarse.shape[0]
    candidates = torch.rand(b, n * oversample, 3, device=coarse.device) * 2 - 1
    with torch.no_grad():
        score = uncertainty(sample_points(coarse.detach(), candidates))
    n_important = int(importance * n)
    pick = score.topk(n_important, dim=1).indices
    important = torch.gather(candidates, 1, pick[..., None].expand(-1, -1, 3))
    uniform = torch.rand(b, n - n_important, 3, device=coarse.device) * 2 - 1
    return torch.cat([important, uniform], dim=1)


class PointHead(nn.Module):
    """Shared MLP over points: fine features + coarse logits -> refined logits (coarse logits are
    re-concatenated after every hidden layer, as in PointRend)."""

    def __init__(self, fine_channels: int, num_classes: int, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.hidden = nn.ModuleList()
        width = fine_channels + num_classes
        for _ in range(layers):
            self.hidden.append(nn.Conv1d(width, hidden, 1))
            width = hidden + num_classes
        self.out = nn.Conv1d(width, num_classes, 1)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``fine`` ``(B, Cf, N)``, ``coarse`` ``(B, K, N)`` -> logits ``(B, K, N)``."""
        x = torch.cat([fine, coarse], dim=1)
        for layer in self.hidden:
            x = torch.cat([F.relu(layer(x)), coarse], dim=1)
        return self.out(x)

    def point_logits(self, fine_maps: Sequence[torch.Tensor], coarse: torch.Tensor,
                     coords: torch.Tensor) -> torch.Tensor:
        """Predict at ``(B, N, 3)`` points from full feature/logit maps (sampled trilinearly)."""
        fine = torch.cat([sample_points(f, coords) for f in fine_maps], dim=1)
        return self(fine, sample_points(coarse, coords))

    def subdivide(self, coarse: torch.Tensor, fine_maps: Sequence[torch.Tensor], size: Sequence[int],
                  n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One subdivision step: up-sample ``coarse`` to ``size`` and re-predict its ``n`` most
        uncertain boundary voxels per sample.  Returns the refined logits and the flat indices
        that were re-predicted (one tensor per batch element)."""
        up = F.interpolate(coarse, size=tuple(size), mode="trilinear", align_corners=False)
        out = up.clone()
        flat = out.view(out.shape[0], out.shape[1], -1)
        chosen = []
        for b in range(up.shape[0]):
            index = select_uncertain_points(up[b], n)
            chosen.append(index)
            if index.numel() == 0:
                continue
            coords = index_to_coords(index, size)[None]
            fine = torch.cat([sample_points(f[b:b + 1], coords) for f in fine_maps], dim=1)
            flat[b][:, index] = self(fine, up[b:b + 1].reshape(1, up.shape[1], -1)[:, :, index])[0].to(flat.dtype)
        return out, chosen
