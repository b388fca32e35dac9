"""Label-map clean-up options: keep the largest component, drop small components, fill holes.

Each works per label on the whole label map in one pass over that label's bounding box, with
scipy.ndimage (26-connectivity in 3D, as contouring tools count islands), imported only when a
clean-up is asked for (its import takes about a second on a loaded machine; most runs ask for none).
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


def _label_boxes(labels: np.ndarray, values: Iterable[int]):
    from scipy import ndimage

    objects = ndimage.find_objects(labels.astype(np.int64, copy=False))
    for v in values:
        if 0 < v <= len(objects) and objects[v - 1] is not None:
            yield v, objects[v - 1]


def postprocess_labels(labels: np.ndarray, spacing: tuple[float, float, float], *, keep_largest: bool = False,
                       min_component_ml: float = 0.0, fill_holes: bool = False,
                       only: Optional[Iterable[int]] = None) -> np.ndarray:
    """Return a cleaned copy of ``labels`` (``[k, j, i]`` array, ``spacing`` in i, j, k order).

    ``min_component_ml`` removes every connected component smaller than that volume; removed
    voxels become background.  ``only`` restricts the clean-up to some label values.
    """
    out = labels.copy()
    if not (keep_largest or min_component_ml > 0 or fill_holes):
        return out
    from scipy import ndimage

    voxel_ml = float(np.prod(spacing)) / 1000.0
    min_voxels = int(np.ceil(min_component_ml / voxel_ml)) if min_component_ml > 0 else 0
    values = [int(v) for v in np.unique(out) if v != 0]
    if only is not None:
        keep = set(int(v) for v in only)
        values = [v for v in values if v in keep]
    for value, box in _label_boxes(out, values):
        region = out[box]
        mask = region == value
        if keep_largest or min_voxels:
            comp, n = ndimage.label(mask, structure=_STRUCTURE)
            if n > 0:
                sizes = np.bincount(comp.ravel())[1:]
                keep_ids = np.ones(n, dtype=bool)
                if keep_largest:
                    keep_ids[:] = False
                    keep_ids[int(np.argmax(sizes))] = True
                if min_voxels:
                    keep_ids &= sizes >= min_voxels
                drop = ~np.concatenate([[True], keep_ids])[comp] & mask
                region[drop] = 0
                mask &= ~drop
        if fill_holes:
            filled = ndimage.binary_fill_holes(mask)
            region[filled & (region == 0)] = value
    return out
