"""Input-grid regions -> network space, through a stage's explicit ``network_coordinates``.

Maps go the other way with ``Stage.to_input_grid``; nothing here needs to know how a format
resamples, crops, flips or transposes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..models.base import Prepared, Stage


def region_to_network(stage: Stage, prepared: Prepared, region: np.ndarray,
                      coordinates: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """Boolean network-space mask of the voxels an input-grid ``region`` comes from."""
    coords, inside = coordinates or stage.network_coordinates(prepared)
    sel = region.astype(bool) & inside
    mask = np.zeros(prepared.image.shape[1:], dtype=bool)
    mask[tuple(c[sel] for c in coords)] = True
    return mask
