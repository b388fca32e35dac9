"""Shared test fixtures: where ../shared lives, and small generated volumes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPSEG_SHARED", REPO.parent / "shared"))
# Tests run their many throw-away networks in PyTorch (converting each to OpenVINO would cost seconds);
# Testing/core/test_backends.py runs every backend, and "auto" itself, explicitly.
os.environ.setdefault("DEEPSEG_BACKEND", "torch")


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


class ThresholdModel:
    """A real (tiny) network with known weights: one 1x1x1 convolution whose logits are
    ``[0, x - threshold]``, so the expected label map is ``image > threshold`` and every pipeline
    step (geometry, channels, writing) can be checked against an independent computation."""

    @staticmethod
    def build(threshold: float = 100.0, channels: int = 1, patch=(8, 16, 16)):
        import torch

        from deepseg.models.base import Prepared, SegmentationModel, WindowSpec
        from deepseg.models.card import Code, InputSpec, LabelInfo, ModelCard

        class _Model(SegmentationModel):
            def __init__(self):
                self.card = ModelCard(
                    id="threshold-test", title="Threshold test network", format="test",
                    inputs=[InputSpec(f"ch{i}", "CT") for i in range(channels)],
                    labels=[LabelInfo(1, "Bright", (220, 40, 40), type=Code("10200004", "SCT", "Liver"))])
                net = torch.nn.Conv3d(channels, 2, 1)
                with torch.no_grad():
                    net.weight.zero_()
                    net.weight[1, 0] = 1.0
                    net.bias[:] = torch.tensor([0.0, -threshold])
                self.networks = {"0": net.eval()}
                self.window = WindowSpec(tuple(patch), overlap=0.5)

            def prepare(self, channels_, previous=()):
                return Prepared(np.stack([c.array.astype(np.float32) for c in channels_]), channels_[0])

            def to_input_grid(self, maps, prepared, fill=0.0):
                return np.asarray(maps, np.float32)  # network space is the input grid

            def restore(self, logits, prepared):
                return torch.softmax(torch.as_tensor(logits), 0).numpy()

        return _Model()


@pytest.fixture
def threshold_model():
    return ThresholdModel.build()


@pytest.fixture
def threshold_model_factory():
    """``ThresholdModel.build`` for tests that need other thresholds, channels or patch sizes."""
    return ThresholdModel.build
