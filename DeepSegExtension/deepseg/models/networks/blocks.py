"""Building blocks of the Render 3D U-Net backbone: conv blocks, resizing and attention gates."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Two 3x3x3 convolutions, each followed by instance norm and leaky ReLU (nnU-Net style)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trilinear resize of ``(B, C, z, y, x)`` to an exact spatial ``size`` (odd sizes included)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


class AttentionGate(nn.Module):
    """Additive attention gate (Attention U-Net): weights skip features by a gating signal.

    ``alpha = sigmoid(psi(relu(W_x skip + W_g gate)))`` per voxel; returns ``skip * alpha`` so
    the decoder attends to the regions the coarser level deems relevant.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_x = nn.Conv3d(skip_channels, inter_channels, 1, bias=False)
        self.w_g = nn.Conv3d(gate_channels, inter_channels, 1, bias=True)
        self.psi = nn.Conv3d(inter_channels, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(skip) + self.w_g(gate))))
        return skip * alpha
