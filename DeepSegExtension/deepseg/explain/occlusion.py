"""Occlusion: which blocks of the image does the model need to draw this structure?

A perturbation method that works in input space through the model's own run (``run_stages``:
every stage's ``prepare`` -> ``predict_logits`` -> ``restore``, then ``combine``), so it needs no mapping between network space and the input
grid and serves every model format alike.  The region around the structure (its bounding box grown
by a quarter of its size on every side) is cut into blocks of one physical size; every block, and the rest
of the image as one more group, is removed in turn (``removal.py``: imputed from its border by
default, or set to the background intensity) and the model re-run.  A block's attribution is the
soft Dice lost, ``Dice(p, S) - Dice(p_removed, S)`` (``p`` the class probability on the input grid,
``S`` the structure), per removed voxel, so the map ranks voxels by how much removing them costs;
within a block the centre ranks first (a tie-breaker), so a top-k% that takes part of a block takes
its core.

The ablation loop is Captum's ``FeatureAblation`` (each block one feature).

Cost bound: at most ``max_blocks`` blocks, so at most ``max_blocks + 2`` inference passes (the
unperturbed pass, one per block, one for the rest of the image), each the cost of one plain
inference; memory is that of one inference plus a few copies of the input.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import ModelError
from ..models.base import SegmentationModel
from ..progress import Progress
from ..volume import Volume
from .removal import background_values, impute_linear

MAX_BLOCKS = 16


def occlusion_blocks(region: np.ndarray, spacing: Sequence[float], max_blocks: int = MAX_BLOCKS) -> np.ndarray:
    """Block id per voxel (``[k, j, i]``): 1..n for cubes of one physical size tiling the region's
    bounding box grown by a quarter of its size on each side (clipped to the image), 0 for the rest.
    The cube edge is the smallest that gives at most ``max_blocks`` blocks."""
    shape = np.asarray(region.shape)
    spacing_kji = np.asarray(spacing, float)[::-1]
    hits = np.argwhere(region)
    lo, hi = hits.min(axis=0), hits.max(axis=0) + 1
    grow = (hi - lo) // 4
    lo, hi = np.maximum(lo - grow, 0), np.minimum(hi + grow, shape)
    extent_mm = (hi - lo) * spacing_kji

    def counts(edge_mm: float) -> np.ndarray:
        voxels = np.maximum(1, np.round(edge_mm / spacing_kji)).astype(int)
        return np.ceil((hi - lo) / voxels).astype(int)

    small, large = float(spacing_kji.min()), float(extent_mm.max())
    for _ in range(40):  # bisection on the cube edge
        mid = (small + large) / 2
        small, large = (mid, large) if counts(mid).prod() > max_blocks else (small, mid)
    n = counts(large)
    ids = np.zeros(region.shape, np.int64)
    edges = [np.linspace(lo[a], hi[a], n[a] + 1).round().astype(int) for a in range(3)]
    block = 1
    for a in range(n[0]):
        for b in range(n[1]):
            for c in range(n[2]):
                ids[edges[0][a]:edges[0][a + 1], edges[1][b]:edges[1][b + 1], edges[2][c]:edges[2][c + 1]] = block
                block += 1
    return ids


def _removed_values(array: np.ndarray, ids: np.ndarray, removal: str, background: float) -> np.ndarray:
    """What each voxel becomes when its own block is removed (blocks imputed one at a time)."""
    if removal == "constant":
        return np.full(array.shape, background, np.float32)
    out = np.empty(array.shape, np.float32)
    for block in np.unique(ids):
        mask = ids == block
        box = tuple(slice(max(0, int(s.min()) - 1), int(s.max()) + 2) for s in np.nonzero(mask))
        out[box][mask[box]] = impute_linear(array[box], mask[box])[mask[box]]  # the fill needs only the border
    return out


def _soft_dice(p: np.ndarray, structure: np.ndarray) -> float:
    return float(2.0 * p[structure].sum() / (p.sum() + structure.sum() + 1e-6))


def occlusion_map(model: SegmentationModel, channels: Sequence[Volume], structure: np.ndarray, class_index: int,
                  *, removal: str = "impute", max_blocks: int = MAX_BLOCKS, device="cpu", tta: bool = False,
                  overlap: Optional[float] = None, progress: Optional[Progress] = None) -> np.ndarray:
    """Occlusion attribution (``[k, j, i]`` on the input grid, >= 0, unnormalised) of ``structure``
    (boolean, input grid) for channel ``class_index`` of the model's combined probabilities."""
    import torch

    from ..inference.stages import run_stages

    try:
        from captum.attr import FeatureAblation
    except ImportError as exc:
        raise ModelError("Occlusion maps need the 'captum' package, which is not installed.",
                         "Install it: pip install captum==0.9.0") from exc
    progress = progress or Progress()
    ids = occlusion_blocks(structure, channels[0].spacing, max_blocks)
    cores = _block_cores(ids)  # before the shift below, which would make block 1 look like the rest group
    if ids.min() > 0:  # the blocks cover the whole image: no "rest" group
        ids -= 1
    n_groups = int(ids.max()) + 1
    background = background_values(channels)
    inputs = torch.from_numpy(np.stack([np.asarray(c.array, np.float32) for c in channels]))[None]
    baselines = torch.from_numpy(np.stack([_removed_values(np.asarray(c.array, np.float32), ids, removal, b)
                                           for c, b in zip(channels, background)]))[None]
    done = 0

    def score(x: torch.Tensor) -> torch.Tensor:
        nonlocal done
        vols = [c.with_array(x[0, i].numpy()) for i, c in enumerate(channels)]
        run = run_stages(model, vols, device=device, tta=tta, overlap=overlap)
        p = np.asarray(run.probabilities[class_index], np.float32)
        done += 1
        progress.step(done, n_groups + 1)
        return torch.tensor([_soft_dice(p, structure)])

    mask = torch.from_numpy(ids)[None, None].expand(1, len(channels), *ids.shape)
    drop = FeatureAblation(score).attribute(inputs, baselines=baselines, feature_mask=mask)[0, 0].numpy()
    sizes = np.bincount(ids.ravel(), minlength=n_groups).astype(np.float64)
    density = np.clip(drop / sizes[ids], 0, None)
    return (density * (1.0 + 1e-3 * cores)).astype(np.float32)


def _block_cores(ids: np.ndarray) -> np.ndarray:
    """1 at each block's centre falling to 0 at its faces (the rest group: 0).  A tie-breaker far below any
    real difference: when only part of a block makes the top k%, it is the block's core, one solid piece,
    not scattered voxels (which imputation would simply fill back in)."""
    core = np.zeros(ids.shape, np.float32)
    for block in np.unique(ids[ids > 0]):
        box = tuple(slice(int(s.min()), int(s.max()) + 1) for s in np.nonzero(ids == block))
        ramps = [1.0 - np.abs(np.linspace(-1.0, 1.0, b.stop - b.start)) for b in box]
        core[box] = np.minimum.reduce(np.meshgrid(*ramps, indexing="ij"))
    return core
