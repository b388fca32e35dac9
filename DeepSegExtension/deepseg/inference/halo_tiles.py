"""Exact tiled inference for fully convolutional, same-padded networks (MeshNet).

Each output tile is computed from the input tile grown by a ``halo`` on every side (clipped at the
image border, where the network's own zero padding applies just as in a whole-volume pass) and
then cropped back.  When ``halo`` is at least the network's receptive-field radius, every output
voxel sees exactly the context it sees in a whole-volume pass, so the tiled result equals the
whole-volume result (to float rounding) while memory is bounded by the tile size.
Slabs are cut along the longest axis only, which keeps the halo overhead smallest.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..progress import Progress
from .backends import current_backend, on_backend, resolve_backend


def slab_boxes(shape: Sequence[int], halo: int, max_voxels: int) -> list[tuple[int, int, int]]:
    """``(axis, start, stop)`` output slabs along the longest axis whose haloed input holds at most
    ``max_voxels`` voxels (one slab covering everything when it fits)."""
    shape = [int(s) for s in shape]
    axis = int(np.argmax(shape))
    length, rest = shape[axis], int(np.prod(shape)) // max(shape[axis], 1)
    n = 1
    while n < length:
        thick = math.ceil(length / n)
        grown = min(length, thick + (2 * halo if n > 1 else 0))
        if grown * rest <= max_voxels:
            break
        n += 1
    thick = math.ceil(length / n)
    return [(axis, s, min(length, s + thick)) for s in range(0, length, thick)]


def predict_halo_tiles(net: nn.Module, image: "np.ndarray | torch.Tensor", halo: int, *,
                       max_voxels: int = 6_000_000, device: "str | torch.device" = "cpu",
                       progress: Optional[Progress] = None,
                       channels_last: bool = True, backend: Optional[str] = None) -> torch.Tensor:
    """Logits ``(K, z, y, x)`` (float32, CPU) of ``net`` over ``image`` ``(C, z, y, x)``, in slabs.

    ``backend`` (``inference.backends``) runs the network; ``channels_last`` applies to PyTorch."""
    progress = progress or Progress()
    device = torch.device(device)
    img = torch.as_tensor(image, dtype=torch.float32)
    spatial = tuple(img.shape[1:])
    boxes = slab_boxes(spatial, halo, max_voxels)
    out: Optional[torch.Tensor] = None
    backend = resolve_backend(backend or current_backend(), device)
    fmt = torch.channels_last_3d if channels_last and backend == "torch" else torch.contiguous_format
    net = on_backend(net.to(device).to(memory_format=fmt), backend, dynamic=True)  # slab shapes vary per image
    with torch.inference_mode():
        for n, (axis, lo, hi) in enumerate(boxes):
            in_lo, in_hi = max(0, lo - halo), min(spatial[axis], hi + halo)
            x = img.narrow(axis + 1, in_lo, in_hi - in_lo)[None].to(device).contiguous(memory_format=fmt)
            y = net(x)[0].narrow(axis + 1, lo - in_lo, hi - lo).float().cpu()
            del x
            if len(boxes) == 1:  # the one slab's output is the result (copied only when not contiguous)
                out = y.contiguous()
            else:
                if out is None:
                    out = torch.empty((y.shape[0], *spatial), dtype=torch.float32)
                out.narrow(axis + 1, lo, hi - lo).copy_(y)
            del y
            progress.step(n + 1, len(boxes))
    assert out is not None
    return out
