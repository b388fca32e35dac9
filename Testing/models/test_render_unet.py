"""Render 3D U-Net: output shapes, point rendering, false-positive screening and a short training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F

from deepseg.models.card_model import CardModel, build_network
from deepseg.models.networks.fp_screen import FEATURE_NAMES
from deepseg.models.networks.render_unet import RenderUNet
from deepseg.training.shapes import make_cases, shapes_card
from deepseg.training.train import predict_case, train_fp_screen, train_network, training_arrays
from deepseg.volume import Volume


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("features, coarse_level", [((4, 8, 16, 16), 1), ((4, 8, 8, 16, 16), 2)])
@pytest.mark.parametrize("size", [(17, 20, 23), (9, 31, 12)])
def test_output_shapes_for_odd_sizes(features, coarse_level, size):
    net = RenderUNet(2, 3, features=features, coarse_level=coarse_level, subdivision_points=100, train_points=64)
    x = torch.randn(2, 2, *size)
    out = net.train()(x)
    assert out["points"].shape == (2, 3, 64) and out["coords"].shape == (2, 64, 3)
    assert len(out["deep"]) == len(features) - 1 - coarse_level  # one head per nested node of the coarse level
    loss = net.loss(out, torch.randint(0, 3, (2, 1, *size)))
    loss.backward()
    assert torch.isfinite(loss) and net.point_head.out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 3, *size)


def test_point_head_rerenders_exactly_the_most_uncertain_boundary_voxels():
    torch.manual_seed(0)
    net = RenderUNet(1, 3, features=(4, 8, 16, 16)).eval()
    coarse = F.avg_pool3d(torch.randn(1, 3, 12, 12, 12) * 6, 3, 1, 1)  # smooth, several regions
    fine = [torch.randn(1, 4, 24, 23, 25)]
    size, n = (24, 23, 25), 300
    with torch.no_grad():
        refined, chosen = net.point_head.subdivide(coarse, fine, size, n)
    up = F.interpolate(coarse, size=size, mode="trilinear", align_corners=False)[0].numpy()
    # independent reference: margin between the two best logits, boundary by scipy filters
    top = np.sort(up, axis=0)
    margin = top[-1] - top[-2]
    lab = up.argmax(0)
    boundary = ndimage.maximum_filter(lab, 3, mode="nearest") != ndimage.minimum_filter(lab, 3, mode="nearest")
    candidates = np.flatnonzero(boundary)
    assert len(candidates) > n
    expected = set(candidates[np.argsort(margin.ravel()[candidates])[:n]].tolist())
    assert set(chosen[0].tolist()) == expected
    changed = np.flatnonzero(np.any(refined[0].numpy() != up, axis=0))
    assert set(changed.tolist()) <= expected and len(changed) > 0.9 * n


def _two_component_case():
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[2:12, 2:12, 2:12] = 1          # large
    labels[15:17, 15:17, 15:17] = 1       # small
    probs = np.zeros((3, 20, 20, 20), np.float32)
    probs[0] = 1
    probs[:, labels == 1] = np.array([0.1, 0.8, 0.1])[:, None]
    image = Volume(np.where(labels == 1, 200.0, 0.0).astype(np.float32) + 1)
    return labels, probs, image


def test_fp_screen_removes_low_scored_and_keeps_high_scored_components():
    card = shapes_card("render-unet", (16, 16, 16), {"features": [4, 8, 16, 16]})
    model = CardModel(card, {"0": build_network(card).eval()})
    labels, probs, image = _two_component_case()
    assert np.array_equal(model.refine(labels, probs, image), labels)  # untrained screen: no-op
    # train the classifier so that larger components score as true structures
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 4, 200)
    feats = np.stack([size] + [rng.normal(size=200) for _ in FEATURE_NAMES[1:]], axis=1).astype(np.float32)
    screen = model.networks["0"].fp_screen
    history = screen.fit(feats, np.ones(200, np.int64), size > 2.0)
    assert history[-1] < history[0] / 2
    comps = model.components(labels, probs, image)
    scores = model.component_scores(comps)
    assert len(comps) == 2
    small = comps.ids[16, 16, 16] - 1
    big = comps.ids[5, 5, 5] - 1
    assert scores[small] < screen.threshold < scores[big]
    refined = model.refine(labels, probs, image)
    assert np.all(refined[15:17, 15:17, 15:17] == 0) and np.array_equal(refined[:13, :13, :13], labels[:13, :13, :13])


def test_short_training_lowers_loss_and_beats_chance():
    """A few seconds of training on generated shapes: the loss falls and Dice beats chance."""
    card = shapes_card("render-unet", (24, 24, 24), {"features": [8, 16, 16, 32], "subdivision_points": 1024,
                                                     "train_points": 512})
    torch.manual_seed(0)
    net = build_network(card)
    model = CardModel(card, {"0": net})
    cases = make_cases(4, seed=5, size=(24, 24, 24))
    images, targets = training_arrays(model, cases)
    losses = train_network(net, images, targets, patch_size=(24, 24, 24), iterations=40, batch_size=2, seed=0)
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    channels, gt = make_cases(1, seed=99, size=(24, 24, 24))[0]
    _, labels = predict_case(model, channels)
    fg, pred = gt > 0, labels > 0
    dice = 2 * (fg & pred).sum() / (fg.sum() + pred.sum())
    chance = fg.mean()  # expected Dice of a random map with the true foreground fraction
    assert dice > chance + 0.2
    # the FP screen trains on the components of these predictions
    stats = train_fp_screen(model, cases, epochs=50)
    assert stats["components"] > 0 and bool(net.fp_screen.trained)
