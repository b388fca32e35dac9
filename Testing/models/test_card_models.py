"""Card-based models (MONAI V-Net/U-Net, Render 3D U-Net): card validation, weight round trips,
pre-processing geometry, normalisation, and the learning check (slow)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepseg.errors import InputError, ModelError
from deepseg.inference.preprocess import normalize, resample_array, resampled_grid
from deepseg.models.card_model import CardModel, build_network, load_card_model, save_card_model
from deepseg.models.card import CARD_FILE
from deepseg.models.loaders import load_model
from deepseg.training.shapes import make_case, shapes_card

TINY = {
    "monai-vnet": None,  # MONAI's V-Net has fixed widths
    "monai-unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "render-unet": {"features": [4, 8, 16, 16], "subdivision_points": 256, "train_points": 128},
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny_card(fmt: str, patch=(16, 16, 16), **pre):
    card = shapes_card(fmt, patch, TINY[fmt])
    card.preprocessing.update(pre)
    return card


def card_dict(fmt="monai-unet") -> dict:
    return json.loads(json.dumps(tiny_card(fmt).to_json()))


# --- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.pop("labels"), "labels"),
    (lambda d: d["labels"][0].update(color=[300, 0, 0]), "labels/0/color/0"),
    (lambda d: d["labels"][1].update(value=0), "labels/1/value"),
    (lambda d: d["preprocessing"].update(normalization={"method": "window", "lower": 0}), "normalization"),
    (lambda d: d["preprocessing"].update(normalization={"method": "gamma"}), "normalization"),
    (lambda d: d["preprocessing"].pop("patch_size"), "patch_size"),
    (lambda d: d["preprocessing"].update(target_spacing=[1, 0, 1]), "target_spacing"),
    (lambda d: d["architecture"].pop("strides"), "strides"),
    (lambda d: d["labels"][0]["type"].pop("value"), "labels/0/type"),
])
def test_invalid_cards_are_refused_naming_the_field(tmp_path, mutate, where):
    data = card_dict()
    mutate(data)
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError) as err:
        load_model(tmp_path)
    assert where.split("/")[0] in str(err.value) and "schema" in str(err.value)


def test_unbuildable_architecture_and_bad_patch_are_model_errors(tmp_path):
    data = card_dict()
    data["architecture"]["no_such_argument"] = 3
    with pytest.raises(ModelError, match="architecture"):
        save_card_model(tmp_path / "a", data, {})
    card = tiny_card("monai-vnet", patch=(16, 24, 16))
    with pytest.raises(ModelError, match="multiple of 16"):
        CardModel(card, {})


def test_corrupt_json_and_mismatched_weights(tmp_path):
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_card_model(tmp_path)
    card = tiny_card("monai-unet")
    other = tiny_card("render-unet")
    save_card_model(tmp_path / "m", card, build_network(other).state_dict())
    with pytest.raises(ModelError, match="does not match the architecture"):
        load_model(tmp_path / "m")


# --- weights round trip -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["monai-vnet", "monai-unet", "render-unet"])
def test_weights_round_trip_gives_identical_logits(tmp_path, fmt):
    card = tiny_card(fmt)
    torch.manual_seed(1)
    net = build_network(card).eval()
    save_card_model(tmp_path, card, net.state_dict())
    model = load_model(tmp_path)
    assert isinstance(model, CardModel)
    assert model.card.labels == card.labels and model.card.preprocessing == card.preprocessing
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), model.networks["0"](x))


def test_folds_are_saved_and_selected(tmp_path):
    card = tiny_card("monai-unet")
    nets = [build_network(card).eval() for _ in range(3)]
    save_card_model(tmp_path, card, [n.state_dict() for n in nets])
    assert sorted(p.name for p in tmp_path.glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]
    model = load_model(tmp_path, folds=[2])
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert list(model.networks) == ["2"] and torch.equal(model.networks["2"](x), nets[2](x))
    assert len(load_model(tmp_path).networks) == 3
    with pytest.raises(ModelError, match="no fold"):
        load_model(tmp_path, folds=[5])


# --- pre-processing -----------------------------------------------------------------------
def test_normalization_methods():
    rng = np.random.default_rng(0)
    x = rng.normal(40, 300, (6, 7, 8)).astype(np.float32)
    x[0] = 0
    np.testing.assert_allclose(normalize(x, {"method": "window", "lower": -100, "upper": 300}),
                               (np.clip(x, -100, 300) + 100) / 400, rtol=1e-6)
    np.testing.assert_allclose(normalize(x, {"method": "ct", "lower": -50, "upper": 500, "mean": 20, "std": 80}),
                               (np.clip(x, -50, 500) - 20) / 80, rtol=1e-5)
    z = normalize(x, {"method": "zscore"})
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    zn = normalize(x, {"method": "zscore", "nonzero": True})
    assert np.all(zn[0] == 0) and abs(zn[x != 0].mean()) < 1e-5
    p = normalize(x, {"method": "percentile", "lower": 2, "upper": 98})
    lo, hi = np.percentile(x, [2, 98])
    np.testing.assert_allclose(p, np.clip((x - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    for given in (x, (x - x.min()).astype(np.uint16)):  # float32 (scaled in a copy, not in place) and integer
        before = given.copy()
        m = normalize(given, {"method": "minmax"})
        np.testing.assert_array_equal(given, before)
        f = given.astype(np.float32)
        np.testing.assert_array_equal(m, (f - f.min()) / np.float32(f.max() - f.min()))
        assert m.dtype == np.float32 and m.min() == 0 and m.max() == pytest.approx(1)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(x, {"method": "gamma"})


@pytest.mark.parametrize("order", [0, 1, 3])
def test_resample_round_trip_identity_shape_and_dtype(order):
    a = (np.arange(5 * 6 * 7).reshape(5, 6, 7) % 4).astype(np.uint8)
    up = resample_array(a, (2.0, 1.0, 1.0), (1.0, 0.5, 0.7), order=order)
    assert up.shape == (10, 12, 10)
    back = resample_array(up, new_shape=a.shape, order=order)
    assert back.shape == a.shape
    if order == 0:
        assert back.dtype == a.dtype and np.array_equal(back, a)  # nearest x2 and back is exact


def test_prepare_restore_geometry_on_oblique_anisotropic_volume(oblique_volume):
    """The network grid covers exactly the input's extent; resampling matches SimpleITK on that
    grid; restore returns probabilities on the input grid that put the object where it was."""
    from deepseg.io import resample_onto

    card = tiny_card("render-unet", normalization={"method": "none"}, target_spacing=[1.5, 1.5, 1.5])
    model = CardModel(card, {"0": build_network(card).eval()})
    prepared = model.prepare([oblique_volume])
    grid = prepared.context["network_grid"]
    expected_shape = tuple(int(round(n * s / 1.5)) for n, s in zip(oblique_volume.shape, oblique_volume.spacing[::-1]))
    assert prepared.image.shape == (1, *expected_shape) and grid.shape == expected_shape
    # same physical box: the outer voxel corners coincide
    for corner in ([-0.5] * 3, [n - 0.5 for n in oblique_volume.size_ijk]):
        scaled = [(c + 0.5) * g / n - 0.5 for c, g, n in zip(corner, grid.size_ijk, oblique_volume.size_ijk)]
        np.testing.assert_allclose(oblique_volume.ijk_to_lps() @ [*corner, 1], grid.ijk_to_lps() @ [*scaled, 1],
                                   atol=1e-6)
    # intensities equal SimpleITK's linear resampling onto that grid (away from the border)
    ref = resample_onto(oblique_volume, grid.with_array(np.zeros(grid.shape, np.float32)))
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(prepared.image[0][inner], ref.array[inner], atol=1e-2)
    # restore: logits that mark the bright object come back on the input grid, in the right place
    logits = np.stack([np.full(expected_shape, 150.0), prepared.image[0]]).astype(np.float32)
    logits = np.concatenate([logits, np.full((1, *expected_shape), -1e3, np.float32)])
    probs = model.restore(torch.from_numpy(logits), prepared)
    assert probs.shape == (3, *oblique_volume.shape)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    truth = np.zeros(oblique_volume.shape, bool)
    truth[3:9, 5:15, 6:18] = True
    found = probs.argmax(0) == 1
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.85


def test_prepare_at_native_spacing_is_exactly_invertible(oblique_volume):
    card = tiny_card("render-unet", normalization={"method": "none"}, target_spacing=None)
    model = CardModel(card, {"0": build_network(card).eval()})
    prepared = model.prepare([oblique_volume])
    np.testing.assert_array_equal(prepared.image[0], oblique_volume.array)
    assert prepared.context["network_grid"].same_grid(oblique_volume)
    logits = np.random.default_rng(0).normal(size=(3, *oblique_volume.shape)).astype(np.float32)
    np.testing.assert_allclose(model.restore(logits, prepared), torch.softmax(torch.from_numpy(logits), 0).numpy(),
                               rtol=1e-6)


def test_resampled_grid_keeps_direction_and_extent(oblique_volume):
    grid = resampled_grid(oblique_volume, (5, 9, 11))
    assert np.allclose(grid.direction, oblique_volume.direction)
    extent = np.asarray(oblique_volume.spacing) * oblique_volume.size_ijk
    np.testing.assert_allclose(np.asarray(grid.spacing) * grid.size_ijk, extent)


def test_channel_count_and_grid_are_checked(oblique_volume):
    card = tiny_card("monai-unet")
    model = CardModel(card, {"0": build_network(card).eval()})
    with pytest.raises(InputError, match="1 input channel"):
        model.prepare([oblique_volume, oblique_volume])


@pytest.mark.parametrize("fmt", ["monai-vnet", "monai-unet"])
def test_monai_models_segment_odd_sized_volumes(fmt):
    from deepseg.inference.pipeline import segment

    card = tiny_card(fmt)
    model = CardModel(card, {"0": build_network(card).eval()})
    vol, _ = make_case(np.random.default_rng(3), (13, 21, 18))
    result = segment(model, [vol], device="cpu", return_probabilities=True)
    assert result.labels.shape == vol.shape and result.labels.same_grid(vol)
    assert result.probabilities.shape == (3, *vol.shape)
    assert set(np.unique(result.labels.array)) <= {0, 1, 2}


# --- learning check (slow; benchmarks/train_shapes.py runs the same function) ---------------
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["monai-vnet", "render-unet"])
def test_learning_check_reaches_dice_09(tmp_path, fmt):
    from deepseg.training.shapes import SHAPE_ITERATIONS, learning_check

    report = learning_check(fmt, tmp_path / fmt, iterations=SHAPE_ITERATIONS[fmt])
    assert report["mean_dice"] > 0.9, report
    assert report["mean_dice"] == pytest.approx(report["in_memory_mean_dice"], abs=1e-6)
