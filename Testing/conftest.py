"""Shared test fixtures: where ../shared lives, and small generated volumes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPSEG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder (real data and weights); tests needing it skip with a reason when absent."""
    if not (SHARED / "README.md").exists():
        pytest.skip(f"../shared not found at {SHARED} (set DEEPSEG_SHARED); real data/weights unavailable")
    return SHARED


@pytest.fixture
def oblique_volume():
    """A CT-like volume with anisotropic spacing and an oblique direction matrix."""
    from deepseg.volume import Volume

    rng = np.random.default_rng(0)
    arr = rng.normal(0, 20, (12, 20, 24)).astype(np.float32)
    arr[3:9, 5:15, 6:18] += 300
    a = np.deg2rad(20)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return Volume(arr, spacing=(0.8, 0.9, 3.0), origin=(-12.5, 30.25, 7.0), direction=direction, name="ct")
