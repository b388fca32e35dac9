"""Geometry is handled exactly: an input whose storage order is flipped or permuted (with a compensating
direction and origin: the same physical image, relabelled) gives voxel-for-voxel the same result on a
real model (brainchop model5_gw_ae on a crop of norm.mgz) -- the fast exact cases of
``benchmarks/robustness.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from robustness import (TRANSFORMS, Transformed, agreement, flip_storage, norm_crop,  # noqa: E402
                        permute_storage)


def _physical_value(vol, point_lps):
    """Voxel value of ``vol`` at an LPS point that lies exactly on one of its voxel centres."""
    ijk = np.linalg.solve(vol.ijk_to_lps()[:3, :3], np.asarray(point_lps) - np.asarray(vol.origin))
    i, j, k = np.rint(ijk).astype(int)
    assert np.allclose(ijk, [i, j, k], atol=1e-6)
    return vol.array[k, j, i]


def _flip_then_permute(vol) -> Transformed:
    f = flip_storage(vol)
    p = permute_storage(f.image)
    return Transformed(p.image, lambda lab: f.back(p.back(lab)), exact=True)


@pytest.mark.parametrize("name", ["flip", "permute", "flip+permute", "crop"])
def test_relabelling_transforms_keep_every_voxel_at_its_physical_point(oblique_volume, name):
    vol = oblique_volume
    t = _flip_then_permute(vol) if name == "flip+permute" else TRANSFORMS[name](vol)
    region = np.ones(vol.shape, bool) if t.region is None else t.region
    kji = np.argwhere(region)[np.random.default_rng(0).choice(int(region.sum()), 30)]
    for k, j, i in kji:
        point = (vol.ijk_to_lps() @ np.array([i, j, k, 1.0]))[:3]
        assert _physical_value(t.image, point) == vol.array[k, j, i]
    # and a label map computed on the transformed grid comes back onto the original one
    labels = t.back(np.asarray(t.image.array > 100, np.uint16))
    assert np.array_equal(labels[region], (vol.array > 100)[region])


def test_agreement_scores_structures_inside_the_region():
    ref = np.zeros((4, 4, 4), np.uint16)
    ref[:2] = 1
    ref[2:] = 2
    test = ref.copy()
    test[3] = 0
    whole, inside = agreement(test, ref), agreement(test, ref, region=np.arange(4)[:, None, None] < 3)
    assert whole["per_label"][1] == 1.0 and whole["per_label"][2] == pytest.approx(2 / 3)
    assert inside["mean"] == 1.0 and inside["differing"] == 0 and whole["differing"] == 16


@pytest.fixture(scope="module")
def gw_model(shared):
    from deepseg.models.loaders import load_model

    return load_model(shared / "models" / "brainchop" / "model5_gw_ae")


@pytest.fixture(scope="module")
def brain_crop(shared):
    return norm_crop(96, shared)


@pytest.fixture(scope="module")
def gw_labels(gw_model, brain_crop):
    from deepseg.inference.pipeline import segment

    labels = segment(gw_model, [brain_crop], device="cpu").labels.array
    assert set(np.unique(labels)) == {0, 1, 2}  # both grey and white matter in the crop
    return labels


@pytest.mark.shared
@pytest.mark.parametrize("transform", [flip_storage, permute_storage, _flip_then_permute],
                         ids=["flip", "permute", "flip+permute"])
def test_real_model_result_is_identical_on_relabelled_storage(gw_model, brain_crop, gw_labels, transform):
    from deepseg.inference.pipeline import segment

    t = transform(brain_crop)
    out = segment(gw_model, [t.image], device="cpu").labels
    assert out.same_grid(t.image)  # the result is on the (relabelled) input grid
    assert np.array_equal(t.back(out.array), gw_labels)


def test_oblique_by_90_degrees_is_a_relabelling(oblique_volume):
    """The suite's oblique grid, rotated by exactly 90 degrees about k (square in-plane voxels), lies on the
    original lattice: same size, and a label map made on it comes back voxel for voxel (no extra row from
    rounding noise, which would shift the rotated grid by half a voxel)."""
    from robustness import oblique

    vol = type(oblique_volume)(oblique_volume.array, (0.9, 0.9, 3.0), oblique_volume.origin, oblique_volume.direction)
    t = oblique(vol, 90.0, 0.0)
    assert sorted(t.image.shape) == sorted(vol.shape) and t.region.all()
    assert np.array_equal(t.back(np.asarray(t.image.array > 100, np.uint16)), vol.array > 100)
