"""Explanations of a genuine nnU-Net v2 model (3d_fullres with two folds, and the 2d configuration),
whose network space is resampled, cropped and transposed relative to the input grid."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case

from deepseg.explain import explain

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures"


@pytest.mark.parametrize("config,method", [("3d_fullres", "gradcam"), ("2d", "hirescam")])
def test_nnunet_maps_lie_on_the_predicted_structure(config, method):
    from scipy import ndimage

    from deepseg.io import volume_from_sitk
    from deepseg.models.loaders import load_model

    results = ensure_nnunet_fixture(FIXTURES)
    model = load_model(results / f"nnUNetTrainer__nnUNetPlansTiny__{config}")
    ct, t1, _ = make_case(4321)
    channels = [volume_from_sitk(ct, "ct"), volume_from_sitk(t1, "t1")]
    res = explain(model, channels, "spleen", method=method, device="cpu")
    heat = res.heatmap.array
    assert res.heatmap.same_grid(channels[0]) and heat.max() == pytest.approx(1.0)
    assert res.info["layers"][0].startswith("decoder.stages.")
    spleen = res.labels.array == res.info["value"]
    near = ndimage.binary_dilation(spleen, iterations=3)
    assert heat[near].sum() > 0.5 * heat.sum() and near.mean() < 0.5
