"""nnU-Net's decoder steps for export, with each upsampling folded into the convolution that follows it.

A step of ``dynamic_network_architectures``' ``UNetDecoder`` upsamples the coarser features with a transposed
convolution whose kernel equals its stride, concatenates the skip connection, and convolves the concatenation
(odd kernel, "same" zero padding). Both are linear, so the part of that convolution that reads the upsampled
half equals ONE transposed convolution of the coarse features (stride S, kernel S + 2p, padding p; weights
multiplied out in float64): ``conv(cat(up(low), skip)) == up'(low) + conv_skip(skip)``. The full-resolution
upsampled tensor and the concatenation are never made, and the multiply-adds on that half fall from
27 x C^2 per output voxel (3^3 kernel) to 64/8 x 2C x C = 16 x C^2 (float32 throughout, the sums merely
grouped differently: measured as close to float64 as the original order). The transposed convolution's
bias reaches an output voxel only through taps inside the image (zero padding outside), so it rides on an
extra all-ones input channel, which the padding zeroes exactly where the original's padding did.
On the TotalSegmentator-sized network this removes ~10 % of the convolution work per patch
(``benchmarks/RESULTS.md``, "Where the compiled network's time goes").
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_UP = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class _FoldedStep(nn.Module):
    """``conv(cat(up(low), skip))`` of one decoder step as ``up'(cat(low, 1)) + conv_skip(skip)``, then the rest
    of the step (the first block's norm and nonlinearity, the further blocks)."""

    def __init__(self, up: nn.modules.conv._ConvTransposeNd, conv: nn.modules.conv._ConvNd, rest: nn.Module) -> None:
        super().__init__()
        dims = len(up.stride)
        stride, pad = tuple(up.stride), tuple(k // 2 for k in conv.kernel_size)
        up_w = up.weight.detach().double()  # (C_low, C, S...)
        conv_w = conv.weight.detach().double()  # (C_out, C + C_skip, k...)
        low, mid = up_w.shape[:2]
        folded = torch.zeros(low + 1, conv_w.shape[0], *(s + 2 * p for s, p in zip(stride, pad)), dtype=torch.float64)
        up_b = up.bias.detach().double() if up.bias is not None else torch.zeros(mid, dtype=torch.float64)
        # output voxel r takes input tap q = r + d (d in [-p, p]); q comes from coarse voxel i = q // S through the
        # upsampling kernel's entry q - S i = sub, so the folded kernel's entry is r - S i + p = sub - d + p
        for sub in itertools.product(*(range(s) for s in stride)):
            for tap in itertools.product(*(range(2 * p + 1) for p in pad)):
                at = (slice(None), slice(None), *(s - t + 2 * p for s, t, p in zip(sub, tap, pad)))
                w = conv_w[(slice(None), slice(0, mid), *tap)]  # (C_out, C)
                folded[(slice(0, low), *at[1:])] += up_w[(slice(None), slice(None), *sub)] @ w.T
                folded[(low, *at[1:])] += w @ up_b
        self.register_buffer("up_weight", folded.float())
        self.register_buffer("skip_weight", conv_w[:, mid:].float().contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride, self.pad, self.dims, self.rest = stride, pad, dims, rest

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(low[:, :1])
        up = _UP[self.dims](torch.cat((low, ones), 1), self.up_weight, stride=self.stride, padding=self.pad)
        return self.rest(up + _CONV[self.dims](skip, self.skip_weight, self.bias, padding=self.pad))


class FoldedUNetDecoder(nn.Module):
    """``UNetDecoder.forward`` (without deep supervision) over ``_FoldedStep`` s."""

    def __init__(self, steps: list[_FoldedStep], head: nn.Module) -> None:
        super().__init__()
        self.steps, self.head = nn.ModuleList(steps), head

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for s, step in enumerate(self.steps):
            x = step(x, skips[-(s + 2)])
        return self.head(x)


def _foldable(up: nn.Module, conv: nn.Module) -> bool:
    """A transposed convolution that places each kernel once (kernel == stride, no padding), followed by a plain
    "same"-padded convolution with an odd kernel."""
    return (isinstance(up, nn.modules.conv._ConvTransposeNd) and tuple(up.kernel_size) == tuple(up.stride)
            and not any(up.padding) and not any(up.output_padding) and set(up.dilation) == {1} and up.groups == 1
            and type(conv) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and set(conv.stride) == {1}
            and set(conv.dilation) == {1} and conv.groups == 1 and conv.padding_mode == "zeros"
            and all(k % 2 == 1 and p == k // 2 for k, p in zip(conv.kernel_size, conv.padding))
            and conv.in_channels > up.out_channels)


def folded_decoder(decoder: nn.Module) -> Optional[FoldedUNetDecoder]:
    """``decoder`` with its upsamplings folded, if it is a ``UNetDecoder`` without deep supervision whose every
    step qualifies; else None (exported as it is)."""
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

    if type(decoder) is not UNetDecoder or decoder.deep_supervision:
        return None
    steps = []
    for up, stage in zip(decoder.transpconvs, decoder.stages):
        first = stage.convs[0]
        if not _foldable(up, first.conv) or first.all_modules[0] is not first.conv:
            return None
        steps.append(_FoldedStep(up, first.conv, nn.Sequential(*first.all_modules[1:], *stage.convs[1:])))
    return FoldedUNetDecoder(steps, decoder.seg_layers[-1])
