"""The multi-resolution U-Net of ``pyliverlesionseg`` (DeepVoxNet's ``create_unet_like_model``) in PyTorch.

The network is a U-Net whose "pathways" work at growing subsampling factors (liver: 1, 3, 9, 27;
lesion: 1, 2, 4, 8).  Facts reproduced from the Keras original:

* pathway p max-pools the previous pathway's output by ``factor[p] / factor[p-1]`` (valid pooling);
* every convolution but the very first is preceded by a *parameter-free* instance normalisation
  ``(x - mean) / (std + 1e-7)`` (population std over the patch, per channel) and a leaky ReLU (0.01);
* convolutions are ``same`` (zero-padded) or ``valid`` (the patch shrinks: sliding windows need a halo);
* on the way up, the skip connection is the pathway's output centre-cropped to the up-sampled path and
  concatenated *before* it (skip channels first);
* up-sampling is ``copy`` (nearest repeat) or ``linear`` (repeat, then a stride-1 average pool of the
  same size, which loses ``factor - 1`` voxels);
* optional residual connections add the (centre-cropped) block input, through a 1x1x1 convolution
  when the channel count changes;
* a final normalisation, activation and 1x1x1 convolution give one logit (the original applies a
  sigmoid: probability of the structure).

Spatial axes are PyTorch ``(z, y, x)``; kernel sizes in ``arch`` are given in that order.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

EPSILON = 1e-7  # keras.backend.epsilon()
LEAK = 0.01


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    std = x.var(dim=(2, 3, 4), keepdim=True, unbiased=False).sqrt()
    return (x - mean) / (std + EPSILON)


def _norm_act(x: torch.Tensor, owned: bool = False) -> torch.Tensor:
    """Instance normalisation then leaky ReLU.  Without autograd (inference) both run in place: on ``x``
    itself when the caller owns it (``owned``: nothing else reads it later), else on the one new tensor
    ``x - mean``.  The same numbers with fewer full-size temporaries: these are the largest tensors of a
    run (the liver network concatenates 80 channels of a 189 x 162 x 162 patch: 1.6 GiB)."""
    if torch.is_grad_enabled():
        return F.leaky_relu(_instance_norm(x), LEAK)
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    std = x.var(dim=(2, 3, 4), keepdim=True, unbiased=False).sqrt()
    centred = x.sub_(mean) if owned else x - mean
    return F.leaky_relu_(centred.div_(std + EPSILON), LEAK)


def _center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    cut = [(a - b) // 2 for a, b in zip(x.shape[2:], size)]
    return x[:, :, cut[0]:cut[0] + size[0], cut[1]:cut[1] + size[1], cut[2]:cut[2] + size[2]]


class LiverUNet(nn.Module):
    """One pyliverlesionseg network; ``arch`` is the dict stored in the model card (see ``ARCHITECTURES``).

    ``forward`` returns the pre-sigmoid logit ``(B, 1, z, y, x)``.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        self.factors = [tuple(int(v) for v in f) for f in arch["factors"]]
        self.padding = arch["padding"]
        self.upsampling = arch["upsampling"]
        self.residual = bool(arch["residual"])
        self.down = nn.ModuleList()
        self.down_proj = nn.ModuleDict()
        self.up = nn.ModuleList()
        self.up_proj = nn.ModuleDict()
        channels = int(arch.get("in_channels", 1))
        skip_channels = []
        for p, (kernels, features) in enumerate(zip(arch["down_kernels"], arch["down_features"])):
            block_in = channels
            convs = nn.ModuleList()
            for k, n in zip(kernels, features):
                convs.append(self._conv(channels, n, k))
                channels = n
            self.down.append(convs)
            if self.residual and block_in != channels:
                self.down_proj[str(p)] = nn.Conv3d(block_in, channels, 1)
            skip_channels.append(channels)
        for p, (kernels, features) in enumerate(zip(arch["up_kernels"], arch["up_features"])):
            convs = nn.ModuleList()
            if p < len(self.factors) - 1:  # every pathway but the deepest concatenates and convolves
                block_in = c = skip_channels[p] + self._channels_entering_up(p, skip_channels, arch)
                for k, n in zip(kernels, features):
                    convs.append(self._conv(c, n, k))
                    c = n
                if self.residual and block_in != c:
                    self.up_proj[str(p)] = nn.Conv3d(block_in, c, 1)
            self.up.append(convs)
        self.final = nn.Conv3d(self._channels_entering_up(-1, skip_channels, arch), int(arch.get("out_channels", 1)), 1)

    @staticmethod
    def _channels_entering_up(p: int, skip_channels: list[int], arch: dict) -> int:
        """Channels arriving from pathway ``p + 1`` (its up-path output, or its down output if it is the deepest)."""
        q = p + 1
        if q == len(skip_channels) - 1 or not arch["up_features"][q]:
            return skip_channels[q]
        return arch["up_features"][q][-1]

    def _conv(self, cin: int, cout: int, kernel: Sequence[int]) -> nn.Conv3d:
        pad = tuple((k - 1) // 2 for k in kernel) if self.padding == "same" else 0
        return nn.Conv3d(cin, cout, tuple(kernel), padding=pad)

    def _block(self, x: torch.Tensor, convs: nn.ModuleList, proj, first: bool) -> torch.Tensor:
        shortcut = x
        for j, conv in enumerate(convs):
            if not (first and j == 0):  # the raw input enters the first convolution un-normalised
                x = _norm_act(x, owned=j > 0 or not self.residual)  # the block input is the shortcut
            x = conv(x)
        if self.residual and len(convs):
            s = _center_crop(shortcut, x.shape[2:])
            s = proj(s) if proj is not None else s
            x = x + s if torch.is_grad_enabled() else x.add_(s)
        return x

    def _upsample(self, x: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
        if all(f == 1 for f in factor):
            return x
        for dim, f in enumerate(factor):
            x = x.repeat_interleave(f, dim=dim + 2)
        if self.upsampling == "linear":
            x = F.avg_pool3d(x, kernel_size=tuple(factor), stride=1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for p, convs in enumerate(self.down):
            if p > 0:
                step = tuple(a // b for a, b in zip(self.factors[p], self.factors[p - 1]))
                x = F.max_pool3d(x, step, step)
            x = self._block(x, convs, self.down_proj[str(p)] if str(p) in self.down_proj else None, first=p == 0)
            skips.append(x)
        for p in reversed(range(len(self.factors))):
            if p < len(self.factors) - 1:
                x = torch.cat([_center_crop(skips[p], x.shape[2:]), x], dim=1)
                skips[p] = None  # copied into the concatenation: not kept through the block
                x = self._block(x, self.up[p], self.up_proj[str(p)] if str(p) in self.up_proj else None, first=False)
            if p > 0:
                x = self._upsample(x, tuple(a // b for a, b in zip(self.factors[p], self.factors[p - 1])))
        return self.final(_norm_act(x, owned=True))

    def keras_conv_order(self) -> list[str]:
        """State-dict prefixes of the convolutions in the order Keras created them (conv3d_1, conv3d_2, ...)."""
        names = []
        for p, convs in enumerate(self.down):
            names += [f"down.{p}.{j}" for j in range(len(convs))]
            names += [f"down_proj.{p}"] if str(p) in self.down_proj else []
        for p in reversed(range(len(self.up))):
            names += [f"up.{p}.{j}" for j in range(len(self.up[p]))]
            names += [f"up_proj.{p}"] if str(p) in self.up_proj else []
        return names + ["final"]


def output_size(arch: dict[str, Any], input_size: Sequence[int]) -> tuple[int, ...]:
    """Spatial output size for an input patch (pure arithmetic, mirrors ``forward``); raises ValueError
    when the size is not one the network accepts (pooling must divide exactly)."""
    factors = [tuple(int(v) for v in f) for f in arch["factors"]]
    valid = arch["padding"] == "valid"
    size = list(input_size)
    skips = []
    for p, kernels in enumerate(arch["down_kernels"]):
        if p > 0:
            step = [a // b for a, b in zip(factors[p], factors[p - 1])]
            if any(s % f for s, f in zip(size, step)):
                raise ValueError(f"size {size} not divisible by pooling {step}")
            size = [s // f for s, f in zip(size, step)]
        for k in kernels:
            size = [s - (kk - 1) * valid for s, kk in zip(size, k)]
        skips.append(list(size))
    for p in reversed(range(len(factors))):
        if p < len(factors) - 1:
            if any(a < b or (a - b) % 2 for a, b in zip(skips[p], size)):
                raise ValueError(f"skip {skips[p]} cannot be centre-cropped to {size}")
            for k in arch["up_kernels"][p]:
                size = [s - (kk - 1) * valid for s, kk in zip(size, k)]
        if p > 0:
            step = [a // b for a, b in zip(factors[p], factors[p - 1])]
            size = [s * f - (f - 1) * (arch["upsampling"] == "linear") for s, f in zip(size, step)]
    if min(size) < 1:
        raise ValueError(f"input {list(input_size)} is too small")
    return tuple(size)
