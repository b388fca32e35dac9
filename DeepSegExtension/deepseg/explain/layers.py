"""Which layers of a segmentation network an attribution map is taken from.

One probe forward pass on a patch (shapes only, on the "meta" device) records, for every sub-module, the shape of its output and the
order in which it finished.  From that record:

* ``list_layers`` gives every valid ``--layer`` name (modules with a 5-D feature-map output that
  is not the network's output itself);
* ``decoder_stages`` gives the outputs of the stages after the bottleneck (one per resolution on
  the way up), the layers the segmentation-attribution literature sums over (``layer-sum``);
* ``default_layer`` is the last decoder stage: the finest features that still carry semantics.

Architectures whose structure is known get explicit rules (nnU-Net ``decoder.stages.*``, MONAI
V-Net ``up_tr*``, MeshNet's activations before each convolution); anything else falls back to
the generic rule (last module finishing at each resolution after the coarsest one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import InputError


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a ``(B, C, z, y, x)`` feature map; ``order`` = completion order."""

    name: str
    type: str
    channels: int
    shape: tuple[int, int, int]
    order: int


def is_2d(net: nn.Module) -> bool:
    """A 2D network (e.g. nnU-Net's ``2d`` configuration), run on ``(1, y, x)`` windows of the volume."""
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    return bool(convs) and all(isinstance(m, nn.Conv2d) for m in convs)


def network_output(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The segmentation logits ``(B, K, z, y, x)`` of ``net`` for a 3D patch ``x``: deep-supervision nets
    return a list (highest resolution first); 2D nets see the single slice of a ``(1, y, x)`` window."""
    out = net(x[:, :, 0]) if is_2d(net) else net(x)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out[:, :, None] if out.dim() == 4 else out


def as_volume_map(t: torch.Tensor) -> torch.Tensor:
    """A 2D network's ``(B, C, y, x)`` feature map as ``(B, C, 1, y, x)``; 3D maps unchanged."""
    return t[:, :, None] if t.dim() == 4 else t


def probe_layers(net: nn.Module, patch: Sequence[int], in_channels: int,
                 device: "torch.device | str" = "cpu") -> tuple[list[LayerInfo], torch.Size]:
    """Run one patch through ``net`` and record every module with a 5-D tensor output.

    The pass runs on PyTorch's "meta" device (shapes only, no arithmetic) when the network allows
    it, else for real on ``device``.  Returns the candidate layers (the output layer and modules
    producing exactly the output's shape, i.e. the segmentation head, are excluded) and the
    network output shape.
    """
    import copy

    try:
        return _probe(copy.deepcopy(net).to("meta"), patch, in_channels, "meta")
    except Exception:  # an operation without a meta implementation: do the real pass
        return _probe(net, patch, in_channels, device)


def _probe(net: nn.Module, patch: Sequence[int], in_channels: int, device) -> tuple[list[LayerInfo], torch.Size]:
    records: dict[str, tuple[str, torch.Tensor, int]] = {}
    counter = [0]
    handles = []

    def hook(name):
        def _hook(module, _inp, out):
            if isinstance(out, torch.Tensor) and out.dim() in (4, 5):
                records[name] = (type(module).__name__, as_volume_map(out), counter[0])
                counter[0] += 1
        return _hook

    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            out = network_output(net, torch.zeros((1, in_channels, *patch), device=device))
    finally:
        for h in handles:
            h.remove()
    layers = []
    for name, (kind, tensor, order) in records.items():
        if tuple(tensor.shape) == tuple(out.shape):  # the output itself and the segmentation head
            continue
        layers.append(LayerInfo(name, kind, int(tensor.shape[1]), tuple(int(s) for s in tensor.shape[2:]), order))
    layers.sort(key=lambda lay: lay.order)
    return layers, out.shape


def _volume(shape: Sequence[int]) -> int:
    return int(torch.tensor(shape).prod())


def _generic_stages(layers: list[LayerInfo]) -> list[str]:
    """Last module finishing at each resolution after the coarsest point (the bottleneck)."""
    if not layers:
        return []
    smallest = min(_volume(lay.shape) for lay in layers)
    last_bottleneck = max(i for i, lay in enumerate(layers) if _volume(lay.shape) == smallest)
    decoder = layers[last_bottleneck + 1:]
    if not decoder:  # no down-sampling at all: every block is "after the bottleneck"
        decoder = layers
    stages = []
    for i, lay in enumerate(decoder):
        if i + 1 == len(decoder) or decoder[i + 1].shape != lay.shape:
            stages.append(lay.name)
    return stages


def _named_rule(net: nn.Module, layers: list[LayerInfo]) -> Optional[list[str]]:
    """Decoder stages of architectures we know by structure (None if ``net`` is not one of them)."""
    names = {lay.name for lay in layers}
    kind = type(net).__name__
    if hasattr(net, "decoder") and hasattr(getattr(net, "decoder"), "stages"):  # nnU-Net (dynamic_network_architectures)
        stages = [f"decoder.stages.{i}" for i in range(len(net.decoder.stages))]
        if all(s in names for s in stages):
            return stages
    if kind == "VNet":  # MONAI V-Net
        stages = [s for s in ("up_tr256", "up_tr128", "up_tr64", "up_tr32") if s in names]
        if stages:
            return stages
    if kind == "MeshNet":  # plain dilated-conv stack: the feature map entering each convolution after the first
        children = list(net.named_children())
        stages = [children[i - 1][0] for i in range(1, len(children))
                  if isinstance(children[i][1], nn.Conv3d) and any(isinstance(m, nn.Conv3d) for _, m in children[:i])]
        stages = [s for s in stages if s in names]
        if stages:
            return stages
    return None


def decoder_stages(net: nn.Module, layers: list[LayerInfo]) -> list[str]:
    """Names of the post-bottleneck stage outputs, coarse to fine."""
    return _named_rule(net, layers) or _generic_stages(layers)


def default_layers(net: nn.Module, layers: list[LayerInfo], method: str) -> list[str]:
    """``layer-sum``: every decoder stage; the CAM methods: the last (finest) decoder stage."""
    stages = decoder_stages(net, layers)
    if not stages:
        raise InputError("No feature-map layer was found in this network to explain.",
                         "The network has no 5-D intermediate outputs; attribution maps need a 3D CNN.")
    return stages if method == "layer-sum" else stages[-1:]


def resolve_layers(net: nn.Module, layers: list[LayerInfo], names: Sequence[str]) -> list[str]:
    """Check user-given layer names; the error lists the valid ones."""
    valid = {lay.name for lay in layers}
    bad = [n for n in names if n not in valid]
    if bad:
        listing = ", ".join(lay.name for lay in layers)
        raise InputError(f"Layer(s) {', '.join(map(repr, bad))} are not feature-map layers of this network.",
                         f"Valid names (deepseg explain --list-layers): {listing}.")
    return list(names)
