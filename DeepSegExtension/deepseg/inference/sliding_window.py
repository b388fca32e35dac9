"""Gaussian-weighted sliding-window inference with mirroring test-time augmentation.

Patches are placed on an evenly spaced grid that covers the image with at least the requested
overlap; each patch's logits are weighted (a Gaussian centred on the patch, as nnU-Net does, or
uniformly) and accumulated, then divided by the accumulated weights.  Mirroring averages the
logits of every combination of flips along ``mirror_axes``.  Data are moved to the device once;
on CUDA out-of-memory the batch is halved, then the whole run falls back to the CPU.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ..progress import Progress
from .backends import BackendNetwork, current_backend, on_backend, resolve_backend
from .device import autocast, resolve_device, use_all_cores
from .windows import WindowSpec

log = logging.getLogger(__name__)


def window_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least ``overlap`` overlap."""
    if size <= tile:
        return [0]
    target_step = max(1.0, tile * (1.0 - overlap))
    n = int(math.ceil((size - tile) / target_step)) + 1
    step = (size - tile) / (n - 1)
    return [int(round(step * i)) for i in range(n)]


@lru_cache(maxsize=8)
def _gaussian_np(tile: tuple[int, ...], dtype: torch.dtype = torch.float32, sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """nnU-Net's importance map: a Gaussian-filtered centred impulse (sigma = tile / 8) peaking at 10, cast to
    ``dtype``, then its zeros (underflow at the border) raised to its smallest non-zero value so no voxel has
    weight 0 (half precision: nnunetv2's ``compute_gaussian`` exactly).

    Filtering an impulse is separable, so the map is the outer product of the three filtered 1-D impulses:
    the same numbers as filtering the 3-D impulse (``gaussian_filter``), without its ~10^9 multiply-adds
    for a CT-sized patch (seconds per run)."""
    from scipy.ndimage import gaussian_filter1d

    g = np.ones((), dtype=np.float64)
    for t in tile:
        impulse = np.zeros(t, dtype=np.float64)
        impulse[t // 2] = 1.0
        g = np.multiply.outer(g, gaussian_filter1d(impulse, t * sigma_scale, mode="constant", cval=0))
    g = torch.from_numpy(g / (g.max() / 10.0)).to(dtype).numpy()  # torch rounds as nnU-Net's does
    g[g == 0] = g[g > 0].min()
    return g


def blend_weights(tile: Sequence[int], blend: str, device: torch.device,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if blend == "gaussian":
        return torch.from_numpy(_gaussian_np(tuple(tile), dtype)).to(device)
    if blend == "constant":
        return torch.ones(tuple(tile), dtype=dtype, device=device)
    raise ValueError(f"unknown blend mode {blend!r}")


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the spatial mirror axes (as tensor dims of a ``(B, C, z, y, x)`` batch)."""
    dims = [a + 2 for a in axes]
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def predict_sliding_window(
    networks: Sequence[nn.Module],
    image: "np.ndarray | torch.Tensor",
    window: WindowSpec,
    num_classes: int,
    *,
    device: "str | torch.device" = "auto",
    mirror: bool = False,
    overlap: Optional[float] = None,
    progress: Optional[Progress] = None,
    batch_size: int = 1,
    forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
    backend: Optional[str] = None,
    out_dtype: Optional[torch.dtype] = torch.float32,
) -> torch.Tensor:
    """Average logits ``(num_classes, z, y, x)`` (``out_dtype``, CPU) of ``networks`` over ``image``;
    ``out_dtype`` None: the window's accumulation dtype, as summed (nnU-Net's half-precision sums, without a
    float32 copy of a CT's logits that its restore would round back to half precision).

    ``image`` is ``(C, z, y, x)``.  The logits of all networks (folds) are averaged, as nnU-Net
    ensembles folds.  ``forward`` overrides ``net(x)`` (e.g. to pick the full-resolution head); it is
    handed the network on ``backend`` (``inference.backends``; default: the one ``backends.using`` set).
    """
    device = resolve_device(device)
    if device.type == "cpu":
        use_all_cores()
    backend = resolve_backend(backend or current_backend(), device)
    networks = [on_backend(net, backend) for net in networks]
    progress = progress or Progress()
    overlap = window.overlap if overlap is None else overlap
    img = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image,
                          dtype=torch.float32)
    while True:
        try:
            logits = _run(networks, img, window, num_classes, device, mirror, overlap, progress,
                          batch_size, forward or (lambda net, x: net(x)))
            return (logits if out_dtype is None else logits.to(out_dtype)).cpu()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
                log.warning("GPU out of memory; retrying with %d patch(es) per batch.", batch_size)
            elif device.type != "cpu":
                log.warning("GPU out of memory even with one patch per batch; continuing on the CPU.")
                device = torch.device("cpu")
                use_all_cores()
            else:  # pragma: no cover - cannot happen on CPU
                raise


@dataclass
class WindowPlan:
    """Where the patches go: shared by inference and explanation so both see the same windows.

    The image is padded by ``pad`` (torch ``F.pad`` order); patch ``(z, y, x)`` in ``boxes`` reads
    ``padded[:, z:z+patch[0], ...]`` and writes its output tile to ``grid``-space
    ``[z:z+out_tile[0], ...]``; ``crop`` cuts the grid back to the image.
    """

    patch: np.ndarray
    out_tile: np.ndarray
    grid: tuple[int, int, int]
    pad: list[int]
    boxes: list[tuple[int, int, int]]
    crop: tuple[slice, slice, slice]

    def input_slices(self, box: Sequence[int]) -> tuple[slice, ...]:
        return tuple(slice(int(b), int(b + p)) for b, p in zip(box, self.patch))

    def output_slices(self, box: Sequence[int]) -> tuple[slice, ...]:
        return tuple(slice(int(b), int(b + t)) for b, t in zip(box, self.out_tile))


def plan_windows(spatial: Sequence[int], window: WindowSpec, overlap: float) -> WindowPlan:
    """Pad the image so the output domain is at least one output tile (valid-convolution nets also
    need the margin), and place tiles evenly with at least ``overlap``."""
    margin = np.asarray(window.output_margin, dtype=int)
    patch = np.asarray(window.patch_size, dtype=int)
    out_tile = patch - 2 * margin
    spatial = np.asarray(spatial, dtype=int)
    grid = np.maximum(spatial, out_tile)
    lo = (grid - spatial) // 2
    pad = []
    for d in reversed(range(3)):  # torch.nn.functional.pad wants last dim first
        pad += [int(lo[d] + margin[d]), int(grid[d] - spatial[d] - lo[d] + margin[d])]
    starts = [window_starts(int(grid[d]), int(out_tile[d]), overlap) for d in range(3)]
    crop = tuple(slice(int(lo[d]), int(lo[d] + spatial[d])) for d in range(3))
    return WindowPlan(patch, out_tile, tuple(int(g) for g in grid), pad,
                      list(itertools.product(*starts)), crop)  # type: ignore[arg-type]


LAYER_STEPS_BELOW = 16  # fewer forward passes than this: progress moves per convolution layer


class _ProgressSteps:
    """Progress of the sliding window: one step per patch or, when there are only a few forward passes
    of big patches (the liver network runs one 189 x 162 x 162 patch for minutes), one per convolution
    layer, through forward hooks, so the bar moves and Cancel is honoured inside a patch too."""

    def __init__(self, progress: Progress, networks: Sequence[nn.Module], patches: int, passes: int) -> None:
        """``patches`` per network; ``passes``: forward passes per network (batches x mirrorings)."""
        self.progress, self.done, self.hooks = progress, 0, []
        # a network on another backend (not an nn.Module) reports per patch: its layers run outside PyTorch
        convs = [[m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
                 if isinstance(net, nn.Module) else [] for net in networks]
        self.per_layer = passes * len(networks) < LAYER_STEPS_BELOW and all(convs)
        if self.per_layer:
            self.total = passes * sum(len(c) for c in convs)
            self.hooks = [c.register_forward_hook(self._layer_done) for net_convs in convs for c in net_convs]
        else:
            self.total = patches * len(networks)

    def _layer_done(self, *_) -> None:
        self.done += 1
        self.progress.step(self.done, self.total)

    def patches_done(self, count: int) -> None:
        if not self.per_layer:
            self.done += count
            self.progress.step(self.done, self.total)

    def __enter__(self) -> "_ProgressSteps":
        return self

    def __exit__(self, *_) -> None:
        for hook in self.hooks:
            hook.remove()


MIRROR_BATCH = 1 << 21  # input voxels up to which all mirrorings of a batch go through the network in one call


def _mirrored_logits(net, x: torch.Tensor, flips: list, forward: Callable, together: bool) -> torch.Tensor:
    """Mean logits of ``x`` over the mirrorings ``flips``; ``together`` stacks them into one call (one
    network call instead of eight: per-call overhead dominates small patches, most of all on the CPU).
    Summed in ``flips`` order and divided once, as nnU-Net does."""
    if together and len(flips) > 1:
        n = x.shape[0]
        stacked = forward(net, torch.cat([torch.flip(x, dims) if dims else x for dims in flips])).float()
        outs = (stacked[i * n:(i + 1) * n] for i in range(len(flips)))
    else:
        outs = (forward(net, torch.flip(x, dims) if dims else x).float() for dims in flips)
    logits = None
    for dims, out in zip(flips, outs):
        out = torch.flip(out, dims) if dims else out
        logits = out if logits is None else logits + out
    return logits / len(flips) if len(flips) > 1 else logits  # x / 1 == x: no copy of a CT-sized patch


T = TypeVar("T")
R = TypeVar("R")


def in_order(job: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(job, items)`` with up to ``workers`` jobs running at once in threads (one more queued, so no
    worker waits while the caller consumes a result); results come in order. Stopping early (an error,
    Cancel) drops the queued jobs and waits for the running ones."""
    if workers <= 1:
        yield from map(job, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="deepseg-window")
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(job, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


SLAB_VALUES = 1 << 16  # values per slab of ``add_weighted``: the slab's products stay in the CPU's L2 cache


def add_weighted(total: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> None:
    """``total += x * weights``: each product rounded to float32, then summed as PyTorch's ``+=`` sums it; a
    half-precision ``total`` is summed in float32 and rounded to half exactly as PyTorch's mixed-precision
    ``+=`` (nnUNetPredictor's accumulation) does. On the CPU slab by slab through a float32 buffer that stays
    in the cache: one pass over the logits instead of three (weighting, summing into a buffer the size of a
    channel, rounding), and none of PyTorch's mixed-precision in-place add, which casts element by element;
    the main thread's accumulation competes with the network's threads for the CPU."""
    if total.device.type != "cpu":
        total += x * weights
        return
    rows = max(1, SLAB_VALUES // max(1, weights[0].numel()))
    buffer = torch.empty((rows, *weights.shape[1:]), dtype=torch.promote_types(x.dtype, weights.dtype))
    for channel, values in zip(total, x):
        for z in range(0, weights.shape[0], rows):
            part = buffer[:min(rows, weights.shape[0] - z)]
            torch.mul(values[z:z + rows], weights[z:z + rows], out=part)
            part += channel[z:z + rows]  # float32 + half is float32 (and x + y == y + x, bit for bit)
            channel[z:z + rows].copy_(part)


def _run(networks, img, window, num_classes, device, mirror, overlap, progress, batch_size, forward):
    plan = plan_windows(img.shape[1:], window, overlap)
    data = torch.nn.functional.pad(img, plan.pad).to(device)
    boxes, grid = plan.boxes, plan.grid
    dtype = {"float32": torch.float32, "float16": torch.float16}[window.accumulate]
    weights = blend_weights(tuple(int(t) for t in plan.out_tile), window.blend, device, dtype)
    scale = weights.float()  # the logits are weighted in float32 (exact: half -> float); same-dtype multiply
    flips = mirror_combinations(window.mirror_axes) if mirror else [()]
    acc = torch.zeros((num_classes, *grid), dtype=dtype, device=device)
    norm = torch.zeros(grid, dtype=dtype, device=device)
    # float32: every network's weighted logits in one sum (one division averages the folds too); float16
    # (nnU-Net): each network's sums divided on their own, the quotients averaged, all in half precision
    per_network = dtype == torch.float16 and len(networks) > 1
    total = torch.zeros_like(acc) if per_network else None

    # all mirrorings of a batch in one network call when the stacked input is small enough
    together = batch_size * img.shape[0] * int(np.prod(plan.patch)) * len(flips) <= MIRROR_BATCH
    calls = 1 if together else len(flips)
    steps = _ProgressSteps(progress, networks, len(boxes), math.ceil(len(boxes) / batch_size) * calls)
    chunks = [boxes[b0:b0 + batch_size] for b0 in range(0, len(boxes), batch_size)]
    with torch.inference_mode(), autocast(device), steps:
        for net in networks:
            if isinstance(net, nn.Module):
                net.to(device)
            # a converted network runs several patches at once (OpenVINO streams), each in its own thread
            workers = net.streams_for(len(chunks)) if isinstance(net, BackendNetwork) else 1
            run = net.streamed(workers) if isinstance(net, BackendNetwork) else net

            def job(chunk, run=run):
                with torch.inference_mode():  # thread-local: the workers need it too
                    x = torch.stack([data[(slice(None), *plan.input_slices(box))] for box in chunk])
                    return _mirrored_logits(run, x, flips, forward, together)

            with contextlib.closing(in_order(job, chunks, workers)) as results:
                for chunk, logits in zip(chunks, results):
                    for box, lg in zip(chunk, logits):
                        sl = plan.output_slices(box)
                        add_weighted(acc[(slice(None), *sl)], lg, scale)
                        norm[sl] += weights
                    steps.patches_done(len(chunk))
                    del logits, lg  # an OpenVINO output is its request's buffer, lent until no tensor holds it
            if per_network:
                total += acc / norm
                acc.zero_()
                norm.zero_()
    if per_network:
        acc = total / len(networks)
    else:
        acc /= norm  # norm summed the weights of every network, so this also averages the folds
    return acc[(slice(None), *plan.crop)]
