"""Occlusion maps and imputed removal, on a real network with known weights (``threshold_model``:
structure = image > 100), so every expected value is computed independently of the code under test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepseg.explain import METHODS, default_method, explain
from deepseg.explain.faithfulness import distance_map, evaluate_map, model_segmenter, random_map
from deepseg.explain.occlusion import MAX_BLOCKS, occlusion_blocks
from deepseg.explain.removal import impute_linear, remove_voxels
from deepseg.models.formats import LOADERS
from deepseg.volume import Volume


def test_imputation_reproduces_a_linear_field_in_holes():
    """A harmonic fill is exact for linear intensity ramps (and lies between the border values)."""
    k, j, i = np.meshgrid(np.arange(20), np.arange(24), np.arange(28), indexing="ij")
    field = (2.0 * k - 0.5 * j + 0.3 * i + 7).astype(np.float32)
    removed = np.random.default_rng(0).random(field.shape) < 0.3
    removed[5:15, 6:18, 8:20] = True  # a solid hole as well as scattered voxels
    edge = np.zeros_like(removed)
    edge[1:-1, 1:-1, 1:-1] = True
    removed &= edge  # interior voxels: the volume border keeps its values
    filled = impute_linear(field, removed)
    assert np.abs(filled - field).max() < 0.05
    assert np.array_equal(filled[~removed], field[~removed])


def test_constant_and_imputed_removal():
    vol = Volume(np.arange(64, dtype=np.int16).reshape(4, 4, 4) * 10)
    removed = np.zeros((4, 4, 4), bool)
    removed[1, 1, 1] = True
    const = remove_voxels([vol], removed, "constant")[0].array
    assert const[1, 1, 1] == 0 and const.dtype == np.int16
    imputed = remove_voxels([vol], removed, "impute")[0].array
    assert imputed[1, 1, 1] == pytest.approx(vol.array[1, 1, 1], abs=0.5)  # a linear ramp: the mean of its neighbours


def test_blocks_tile_the_grown_bounding_box_within_budget():
    region = np.zeros((40, 60, 60), bool)
    region[10:20, 20:40, 25:35] = True
    for budget in (8, 32, 100):
        ids = occlusion_blocks(region, (1.0, 1.0, 2.0), budget)
        n = ids.max()
        assert 1 <= n <= budget and set(np.unique(ids)) == set(range(n + 1))
        box = ids > 0
        assert box[region].all()  # the structure and its surroundings are covered...
        assert box[8:22, 15:45, 23:37].all() and not box[0, 0, 0]  # ...grown by a quarter of its size


class _CueNet(torch.nn.Module):
    """Known weights, no training: draws voxels in (100, 500) only if the patch holds a cue voxel above 500."""

    def forward(self, x):
        cue = x.amax(dim=(2, 3, 4), keepdim=True) - 500
        s = torch.minimum(torch.minimum(x - 100, 500 - x), cue.expand_as(x))
        return torch.cat([torch.zeros_like(s), s], dim=1)


@pytest.fixture
def cue_model(threshold_model_factory):
    model = threshold_model_factory(patch=(32, 48, 48))  # one window = the whole image: the cue is always seen
    model.networks = {"0": _CueNet().eval()}
    return model


@pytest.fixture
def cue_box():
    rng = np.random.default_rng(1)
    arr = rng.normal(0, 10, (32, 48, 48)).astype(np.float32)
    arr[8:24, 12:36, 14:34] += 300  # the structure: 10 % of the volume, so its core is 5 %
    arr[18:21, 37:40, 27:30] += 1000  # the cue, outside the structure, inside one occlusion block
    return Volume(arr, spacing=(1.0, 1.0, 1.0), name="box")


def test_occlusion_finds_what_the_model_needs_and_beats_both_baselines(cue_model, cue_box):
    """The structure needs the cue: removing the cue (27 voxels) removes the whole structure.  Removing
    the structure's core by imputation leaves it bright (the fill comes from its bright border), so the
    "look at the structure" baseline deletes nothing; scattered random voxels are filled from their
    neighbours.  Occlusion finds the cue's block."""
    calls = []
    original = cue_model.predict_logits
    cue_model.predict_logits = lambda *a, **k: calls.append(1) or original(*a, **k)
    res = explain(cue_model, [cue_box], "Bright", method="occlusion", device="cpu")
    cue_model.predict_logits = original
    heat, structure = res.heatmap.array, res.labels.array == 1
    assert res.info["method"] == "occlusion" and heat.max() == pytest.approx(1.0)
    assert structure.sum() == 16 * 24 * 20
    assert len(calls) <= 1 + MAX_BLOCKS + 2  # the segmentation, then at most max_blocks + 2 passes
    assert heat[18:21, 37:40, 27:30].min() > 0.999  # the block holding the cue is the most important
    seg = model_segmenter(cue_model, "cpu")
    kw = dict(fractions=(0.05,), removal="impute", preserved=False)
    occ = evaluate_map(seg, [cue_box], res.labels.array, 1, heat, **kw)
    rnd = evaluate_map(seg, [cue_box], res.labels.array, 1, random_map(heat.shape), **kw)
    dist = evaluate_map(seg, [cue_box], res.labels.array, 1, distance_map(structure, cue_box.spacing), **kw)
    assert rnd.deletion[0.05] < 0.05 and dist.deletion[0.05] < 0.05
    assert occ.deletion[0.05] == 1.0


# the method each format's measurements in benchmarks/RESULTS.md ("Explainability on the real models with
# imputed removal") found most faithful: the largest top-5 % deletion, beating the random and distance baselines
MEASURED_DEFAULTS = {"brainchop-meshnet": "occlusion", "pyliverlesionseg": "occlusion", "nnunetv2": "gradcam"}


@pytest.mark.parametrize("fmt", sorted(LOADERS))
def test_each_format_explains_with_its_measured_default(fmt):
    from types import SimpleNamespace

    model = SimpleNamespace(card=SimpleNamespace(format=fmt))
    assert default_method(model) == MEASURED_DEFAULTS.get(fmt, "gradcam")
    assert default_method(model) in METHODS


def test_every_block_ranks_its_centre_first_when_the_blocks_cover_the_whole_image(threshold_model_factory):
    """A structure spanning the image: the grown box is the whole image, so there is no rest group and the
    block ids are shifted to start at 0.  Every block, the first included, keeps its centre tie-breaker."""
    from deepseg.explain.occlusion import occlusion_map

    model = threshold_model_factory(patch=(16, 16, 16))
    arr = np.random.default_rng(2).normal(300, 10, (16, 16, 16)).astype(np.float32)
    image = Volume(arr, spacing=(1.0, 1.0, 1.0))
    arr[8, 8, 8] = 0.0  # one background voxel: constant removal (to the image minimum) then erases a block
    structure = arr > 100
    ids = occlusion_blocks(structure, image.spacing, 8)
    assert ids.min() == 1  # the blocks cover the whole image
    heat = occlusion_map(model, [image], structure, 1, removal="constant", max_blocks=8)
    for block in np.unique(ids):
        inside = heat[ids == block]
        assert inside.min() > 0  # removing any block loses its structure voxels
        assert inside.max() > inside.min()  # its centre ranks above its faces
