"""MeshNet (Fedorov et al. 2017): a plain stack of dilated 3D convolutions, no down-sampling.

Built in PyTorch from a TensorFlow.js/Keras topology (``models/tfjs.py``): ``Conv3D`` layers with
``padding="same"`` and stride 1 become ``nn.Conv3d`` (TF kernels ``(kd, kh, kw, in, out)`` are
transposed to torch ``(out, in, kd, kh, kw)``; spatial axes keep their order, so a torch tensor
``(B, C, D, H, W)`` sees the same D/H/W axes as the TF ``(B, D, H, W, C)`` one).  A
``BatchNormalization`` right after a convolution is folded into it.  Brainchop marks convolutions
followed by a per-channel instance normalisation (z-score over the whole volume, no affine) with
a ``_gn`` name suffix; those get ``InstanceNorm3d`` and make the network *not* tile-exact
(``receptive_radius`` is then ``None``).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ModelError
from ..tfjs import TfjsModel

_ACTIVATIONS = {
    "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
    "selu": nn.SELU, "softplus": nn.Softplus, "swish": nn.SiLU, "silu": nn.SiLU,
}
_IGNORED = {"InputLayer", "Dropout", "SpatialDropout3D", "GaussianNoise"}


def _activation(name: str, where: str) -> "nn.Module | None":
    name = (name or "linear").lower()
    if name == "linear":
        return None
    if name == "softmax":
        return nn.Softmax(dim=1)
    if name not in _ACTIVATIONS:
        raise ModelError(f"{where}: activation {name!r} is not supported.",
                         "Supported: linear, softmax, " + ", ".join(sorted(_ACTIVATIONS)) + ".")
    return _ACTIVATIONS[name]()


def _conv(cfg: dict, w: dict, in_ch: int, where: str) -> nn.Conv3d:
    kernel = w.get("kernel")
    if kernel is None or kernel.ndim != 5:
        raise ModelError(f"{where}: Conv3D {cfg.get('name')!r} has no 5-D kernel in the weights.",
                         "model.json and the weight shards do not match; download the model again.")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ModelError(f"{where}: Conv3D {cfg.get('name')!r} uses {cfg.get('data_format')}.",
                         "Only channels_last TensorFlow.js models are supported.")
    if any(int(s) != 1 for s in cfg.get("strides", [1, 1, 1])) or cfg.get("padding", "same") != "same":
        raise ModelError(f"{where}: Conv3D {cfg.get('name')!r} is strided or not 'same'-padded; not a MeshNet.",
                         "Only stride-1, same-padded convolution stacks (MeshNet) are supported.")
    k = tuple(int(s) for s in kernel.shape[:3])
    dil = tuple(int(d) for d in cfg.get("dilation_rate", [1, 1, 1]))
    if any(s % 2 == 0 for s in k) or kernel.shape[3] != in_ch:
        raise ModelError(f"{where}: Conv3D {cfg.get('name')!r} kernel {kernel.shape} does not fit "
                         f"{in_ch} input channels with odd kernel sizes.", "The model is not a MeshNet.")
    conv = nn.Conv3d(in_ch, int(kernel.shape[4]), k, dilation=dil,
                     padding=tuple(d * (s - 1) // 2 for d, s in zip(dil, k)),
                     bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
        bias = w.get("bias")
        conv.bias.copy_(torch.from_numpy(bias) if bias is not None else torch.zeros(conv.out_channels))
    return conv


def _fold_batchnorm(conv: nn.Conv3d, cfg: dict, w: dict) -> None:
    """conv followed by BN(gamma, beta, mean, var) == conv with scaled weights and shifted bias."""
    eps = float(cfg.get("epsilon", 1e-3))
    n = conv.out_channels
    gamma = torch.from_numpy(w["gamma"]) if "gamma" in w else torch.ones(n)
    beta = torch.from_numpy(w["beta"]) if "beta" in w else torch.zeros(n)
    scale = gamma / torch.sqrt(torch.from_numpy(w["moving_variance"]) + eps)
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, 1, 1, 1, 1))
        conv.bias.copy_((conv.bias - torch.from_numpy(w["moving_mean"])) * scale + beta)


class MeshNet(nn.Sequential):
    """The converted network; ``receptive_radius`` = voxels of context each output voxel sees per side
    (``None`` when a global normalisation makes the output depend on the whole input)."""

    receptive_radius: "int | None"
    in_channels: int
    out_channels: int

    @classmethod
    def from_tfjs(cls, model: TfjsModel, where: str = "model.json") -> "MeshNet":
        modules: list[nn.Module] = []
        in_ch = None
        radius: "int | None" = 0
        previous = None
        for layer in model.layers:
            kind, cfg = layer.get("class_name"), layer.get("config", {})
            name = cfg.get("name", layer.get("name", "?"))
            inbound = layer.get("inbound_nodes") or []
            if previous is not None and inbound and inbound[0] and inbound[0][0][0] != previous:
                raise ModelError(f"{where}: layer {name!r} does not take the previous layer's output; "
                                 "the network is not a plain stack.", "Only sequential MeshNet models are supported.")
            previous = name
            if kind == "InputLayer":
                in_ch = int((cfg.get("batch_input_shape") or cfg.get("batch_shape"))[-1])
            elif kind in _IGNORED:
                continue
            elif kind == "Conv3D":
                if in_ch is None:
                    raise ModelError(f"{where}: no InputLayer before {name!r}.", "The topology is malformed.")
                conv = _conv(cfg, model.layer_weights(name), in_ch, where)
                modules.append(conv)
                in_ch = conv.out_channels
                if radius is not None:
                    radius += max(d * (s - 1) // 2 for d, s in zip(conv.dilation, conv.kernel_size))
                if name.endswith("_gn"):
                    modules.append(nn.InstanceNorm3d(in_ch, eps=1e-5, affine=False))
                    radius = None
                act = _activation(cfg.get("activation"), where)
                if act is not None:
                    modules.append(act)
            elif kind == "BatchNormalization":
                if not modules or not isinstance(modules[-1], nn.Conv3d):
                    raise ModelError(f"{where}: BatchNormalization {name!r} does not follow a linear Conv3D.",
                                     "Only conv -> batch-norm pairs are supported.")
                _fold_batchnorm(modules[-1], cfg, model.layer_weights(name))
            elif kind == "Activation":
                act = _activation(cfg.get("activation"), where)
                if act is not None:
                    modules.append(act)
            elif kind in ("ELU", "ReLU"):
                modules.append(nn.ELU(float(cfg.get("alpha", 1.0))) if kind == "ELU" else nn.ReLU())
            else:
                raise ModelError(f"{where}: layer type {kind!r} ({name!r}) is not part of a MeshNet.",
                                 "Only Conv3D, BatchNormalization and activation layers are supported.")
        if not any(isinstance(m, nn.Conv3d) for m in modules):
            raise ModelError(f"{where}: the topology has no Conv3D layer.", "This is not a MeshNet model.")
        net = cls(*modules)
        net.receptive_radius = radius
        net.in_channels = next(m for m in modules if isinstance(m, nn.Conv3d)).in_channels
        net.out_channels = in_ch
        return net.eval()
