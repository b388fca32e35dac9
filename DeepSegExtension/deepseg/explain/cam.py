"""Class-activation maps for a 3D segmentation target, computed along inference's sliding window.

Target: the logit of class ``c`` summed over a region ``R`` of the *stitched* output.  Inference
stitches patch logits as ``sum_p w_p(v) l_p(v) / N(v)`` (``w_p`` the Gaussian window weights,
``N`` their sum), so the target splits exactly into per-patch targets
``T_p = sum_{v in R} (w_p(v) / N(v)) l_p,c(v)``.  Each patch that overlaps ``R`` is run forward
with hooks on the chosen layers, ``T_p`` is differentiated with respect to those layers'
activations only (no weight gradients), and the per-patch maps are stitched with the same window
weights; patches outside ``R`` contribute nothing.  Memory is that of one patch plus two
network-space accumulators, whatever the volume size.

The per-layer maths (Grad-CAM channel weights, Grad-CAM++ weights, HiResCAM element-wise
products) come from ``pytorch-grad-cam``; its own driver normalises every call to [0, 1], which
would make patch maps incomparable, so only its weight functions are used here.

``layer-sum`` (weighted sum over decoder stages, the adaptation proposed for segmentation
networks, SPIE Medical Imaging 2022, doi 10.1117/12.2612288): each stage's Grad-CAM map is
expressed as attribution per output voxel (upsampled and divided by the up-sampling factor), so
stages with few coarse voxels and stages with many fine ones weigh the same per unit of score,
then the stages are added.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..inference.device import resolve_device, use_all_cores
from ..inference.sliding_window import blend_weights, plan_windows
from ..models.base import WindowSpec
from ..options import CAM_METHODS
from ..progress import Progress
from .layers import as_volume_map, network_output


def layer_map(method: str, activations: torch.Tensor, gradients: torch.Tensor) -> np.ndarray:
    """``(B, C, z, y, x)`` activations and gradients -> unnormalised map ``(B, z, y, x)`` (no ReLU)."""
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
    except ImportError as exc:
        raise ModelError("Attribution maps need the 'grad-cam' package, which is not installed.",
                         "Install it: pip install grad-cam==1.5.7") from exc

    a = activations.detach().float().cpu().numpy()
    g = gradients.detach().float().cpu().numpy()
    if method == "hirescam":
        return HiResCAM.get_cam_image(None, None, None, None, a, g, False)
    weights_of = GradCAMPlusPlus.get_cam_weights if method == "gradcam++" else GradCAM.get_cam_weights
    weights = weights_of(None, None, None, None, a, g)
    return (weights[:, :, None, None, None] * a).sum(axis=1)


def layer_extent(layer: Sequence[int], patch: Sequence[int], out_tile: Sequence[int]) -> list[int]:
    """Input voxels a layer's feature map spans, centred in the patch.

    Same-padded networks: the whole patch.  Valid-convolution networks (output tile smaller than the
    patch): each layer voxel stands for an integer number of input voxels, and a layer spans at least
    the output tile and at most the patch, so the extent is ``layer * ceil(out / layer)`` clipped to that.
    """
    if tuple(patch) == tuple(out_tile):
        return [int(p) for p in patch]
    return [int(min(p, max(o, l * math.ceil(o / l)))) for l, p, o in zip(layer, patch, out_tile)]


def _to_extent(cam: np.ndarray, patch: Sequence[int], out_tile: Sequence[int], density: bool) -> torch.Tensor:
    """A layer map ``(B, z, y, x)`` resampled to the input voxels it spans (``layer_extent``)."""
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[:, None]
    layer = t.shape[2:]
    extent = layer_extent(layer, patch, out_tile)
    if tuple(layer) != tuple(extent):
        t = F.interpolate(t, size=tuple(extent), mode="trilinear", align_corners=False)
    if density:  # attribution per input voxel, so coarse and fine layers weigh alike
        t = t * (float(np.prod(layer)) / float(np.prod(extent)))
    return t[:, 0]


def _score_channel(outputs: int, class_index: int, num_classes: int) -> int:
    """Output channel holding class ``class_index``'s score (softmax heads: all classes; sigmoid heads:
    foreground classes only)."""
    if outputs == num_classes:
        return class_index
    if outputs == num_classes - 1 and class_index > 0:
        return class_index - 1
    raise ModelError(f"The network gives {outputs} output channels for {num_classes} classes.",
                     "This network's output layout cannot be explained; report it with the model id.")


def _memory_format(net: nn.Module) -> torch.memory_format:
    """Channels-last for 3D networks with dilated convolutions (MeshNet), as inference runs them
    (``halo_tiles``): in the default layout PyTorch computes those on the CPU through its slow generic
    path (a model5_gw_ae 124^3 tile, forward and backward: 52 s, against 10.5 s channels-last)."""
    dilated = any(isinstance(m, nn.Conv3d) and max(m.dilation) > 1 for m in net.modules())
    return torch.channels_last_3d if dilated else torch.contiguous_format


def _capture(net: nn.Module, layer_names: Sequence[str]):
    """Forward hooks keeping the (graph-attached) outputs of ``layer_names``; returns (store, handles)."""
    store: dict[str, torch.Tensor] = {}
    modules = dict(net.named_modules())

    def hook(name):
        def _hook(_m, _i, out):
            store[name] = out
        return _hook

    return store, [modules[n].register_forward_hook(hook(n)) for n in layer_names]


def cam_network_space(
    networks: Sequence[nn.Module],
    image: np.ndarray,
    window: WindowSpec,
    class_index: int,
    num_classes: int,
    region: np.ndarray,
    layers: Sequence[str],
    method: str = "gradcam",
    *,
    device: "str | torch.device" = "cpu",
    overlap: Optional[float] = None,
    progress: Optional[Progress] = None,
) -> np.ndarray:
    """Attribution map ``(z, y, x)`` (>= 0, unnormalised) of ``sum_R logit_c`` over network-space ``image``.

    ``region`` is a boolean network-space mask; ``layers`` name modules of every network (folds
    share an architecture); the maps of all folds are averaged, as their logits are.  Networks with
    one output per foreground class (sigmoid heads) are scored on that class's logit.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown method {method!r}")
    device = resolve_device(device)
    if device.type == "cpu":
        use_all_cores()
    progress = progress or Progress()
    overlap = window.overlap if overlap is None else overlap
    plan = plan_windows(image.shape[1:], window, overlap)
    img = torch.nn.functional.pad(torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32), plan.pad)
    weights = blend_weights(tuple(int(t) for t in plan.out_tile), window.blend, torch.device("cpu"))
    norm = torch.zeros(plan.grid)
    for box in plan.boxes:
        norm[plan.output_slices(box)] += weights
    target_grid = torch.zeros(plan.grid)
    target_grid[plan.crop] = torch.from_numpy(region.astype(np.float32))
    target_grid /= norm  # each patch's share of the stitched logit: w_p / N
    # same-padded windows: maps live on the output tile, blended like the logits.  Valid-convolution and
    # halo windows: a tile's layers also span its margin, where they influence neighbouring tiles'
    # targets, so each layer's signed map is added over its whole extent (input-patch coordinates) and
    # rectified only once complete (HiResCAM is then exactly the whole-volume map).
    margin = [(int(p) - int(o)) // 2 for p, o in zip(plan.patch, plan.out_tile)]
    tiled = any(margin)
    acc = torch.zeros((len(layers), *(g + 2 * m for g, m in zip(plan.grid, margin)))) if tiled else torch.zeros(plan.grid)
    active = [b for b in plan.boxes if target_grid[plan.output_slices(b)].any()]
    cam_method = "gradcam" if method == "layer-sum" else method
    total, done = len(active) * len(networks), 0
    for net in networks:
        fmt = _memory_format(net)
        net.to(device, memory_format=fmt)
        store, handles = _capture(net, layers)
        try:
            for box in active:
                out_sl = plan.output_slices(box)
                x = img[(slice(None), *plan.input_slices(box))][None].to(device)
                x = x.clone(memory_format=fmt)
                with torch.enable_grad():
                    x.requires_grad_(True)  # a graph even when the weights are frozen; only layer grads are computed
                    store.clear()
                    logits = network_output(net, x)
                    if tuple(logits.shape[2:]) == tuple(plan.patch) and tiled:  # same-padded net on a halo tile
                        logits = logits[(slice(None), slice(None),
                                         *(slice(m, m + int(o)) for m, o in zip(margin, plan.out_tile)))]
                    channel = _score_channel(logits.shape[1], class_index, num_classes)
                    score = (logits[0, channel].float() * (target_grid[out_sl] * weights).to(device)).sum()
                    acts = [store[n] for n in layers]
                    grads = torch.autograd.grad(score, acts, allow_unused=True)
                for i, (a, g) in enumerate(zip(acts, grads)):
                    if g is None:
                        continue
                    cam = layer_map(cam_method, as_volume_map(a), as_volume_map(g))
                    if tiled:
                        part = _to_extent(cam, plan.patch, plan.out_tile, density=len(layers) > 1)[0]
                        start = [int(b) + (int(p) - e) // 2 for b, p, e in zip(box, plan.patch, part.shape)]
                        acc[(i, *(slice(s0, s0 + e) for s0, e in zip(start, part.shape)))] += part
                    else:
                        part = _to_extent(np.maximum(cam, 0), plan.patch, plan.out_tile, density=len(layers) > 1)[0]
                        acc[out_sl] += part * weights
                done += 1
                progress.step(done, total)
        finally:
            for h in handles:
                h.remove()
            store.clear()
    if tiled:
        acc = acc[(slice(None), *(slice(m, m + g) for m, g in zip(margin, plan.grid)))].clamp_(min=0).sum(0)
        acc /= len(networks)
    else:
        acc /= norm * len(networks)
    return acc[plan.crop].numpy()
