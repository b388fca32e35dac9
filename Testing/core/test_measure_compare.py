"""Comparison metrics against MONAI's implementations, pairing rules and empty-segment cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepseg.measure.compare import compare_masks, compare_segmentations, dice, match_segments
from deepseg.models.card import Code, LabelInfo
from deepseg.volume import Volume

monai_metrics = pytest.importorskip("monai.metrics")


def _onehot(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))


def _monai(test: np.ndarray, ref: np.ndarray, spacing_kji, tol: float) -> dict:
    p, g = _onehot(test), _onehot(ref)
    return {
        "dice": float(monai_metrics.compute_dice(p, g, include_background=False)),
        "jaccard": float(monai_metrics.compute_iou(p, g, include_background=False)),
        "hausdorff_mm": float(monai_metrics.compute_hausdorff_distance(p, g, spacing=spacing_kji)),
        "hd95_mm": float(monai_metrics.compute_hausdorff_distance(p, g, percentile=95, spacing=spacing_kji)),
        "assd_mm": float(monai_metrics.compute_average_surface_distance(p, g, symmetric=True, spacing=spacing_kji)),
        "surface_dice": float(monai_metrics.compute_surface_dice(p, g, [tol], spacing=spacing_kji)),
    }


def _blob(shape, centre, radii, rng) -> np.ndarray:
    k, j, i = np.indices(shape).astype(float)
    r = sum(((x - c) / rr) ** 2 for x, c, rr in zip((k, j, i), centre, radii))
    return r <= 1 + rng.normal(0, 0.08, shape)  # rough edges, like a real contour


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_monai(seed):
    rng = np.random.default_rng(seed)
    shape = (18, 30, 34)
    ref = _blob(shape, (9, 15, 17), (6, 10, 11), rng)
    test = _blob(shape, (9 + rng.integers(-2, 3), 15 + rng.integers(-2, 3), 17), (5, 11, 10), rng)
    spacing_ijk = (0.8, 0.9, 2.5)
    ours = compare_masks(test, ref, spacing_ijk, tolerance_mm=1.5)
    theirs = _monai(test, ref, spacing_ijk[::-1], 1.5)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
    assert dice(test, ref) == pytest.approx(theirs["dice"], rel=1e-4, abs=1e-4)  # the overlap-only shortcut
    tp = (test & ref).sum()
    assert ours["sensitivity"] == pytest.approx(tp / ref.sum())
    assert ours["precision"] == pytest.approx(tp / test.sum())
    voxel_mL = np.prod(spacing_ijk) / 1000
    assert ours["volume_difference_mL"] == pytest.approx((test.sum() - ref.sum()) * voxel_mL)
    assert ours["volume_difference_percent"] == pytest.approx(100 * (test.sum() - ref.sum()) / ref.sum())


def test_overlap_only_dice_follows_the_empty_conventions():
    empty, full = np.zeros((4, 4, 4), bool), np.ones((4, 4, 4), bool)
    assert dice(empty, empty) == compare_masks(empty, empty, (1, 1, 1))["dice"] == 1.0
    assert dice(empty, full) == compare_masks(empty, full, (1, 1, 1))["dice"] == 0.0


def test_identical_masks_are_perfect():
    m = np.zeros((8, 9, 10), bool)
    m[2:6, 3:7, 2:8] = True
    out = compare_masks(m, m, (1.0, 1.0, 1.0))
    assert out["dice"] == out["jaccard"] == out["surface_dice"] == 1.0
    assert out["hausdorff_mm"] == out["hd95_mm"] == out["assd_mm"] == 0.0


@pytest.mark.parametrize("t_empty,r_empty", [(True, True), (True, False), (False, True)])
def test_empty_cases_are_defined_and_explained(t_empty, r_empty):
    m = np.zeros((6, 6, 6), bool)
    m[2:4, 2:4, 2:4] = True
    z = np.zeros_like(m)
    out = compare_masks(z if t_empty else m, z if r_empty else m, (1.0, 1.0, 1.0))
    assert all(not (isinstance(v, float) and np.isnan(v)) for v in out.values())
    assert out["note"]
    if t_empty and r_empty:
        assert out["dice"] == 1.0 and out["hausdorff_mm"] == 0.0
    else:
        assert out["dice"] == 0.0 and "hausdorff_mm" not in out and "undefined" in out["note"]


def test_segments_pair_by_code_then_name():
    liver = Code("10200004", "SCT", "Liver")
    test = [LabelInfo(1, "Leber", type=liver), LabelInfo(2, "spleen"), LabelInfo(3, "extra")]
    ref = [LabelInfo(7, "Spleen"), LabelInfo(9, "liver", type=liver), LabelInfo(4, "only ref")]
    pairs = {(t.name if t else None, r.name if r else None, how) for t, r, how in match_segments(test, ref)}
    assert pairs == {("Leber", "liver", "code"), ("spleen", "Spleen", "name"), ("extra", None, ""),
                     (None, "only ref", "")}


def test_compare_segmentations_label_maps(oblique_volume):
    a = np.zeros(oblique_volume.shape, np.uint8)
    b = np.zeros_like(a)
    a[2:8, 4:12, 5:15] = 1
    b[2:8, 5:13, 5:15] = 3  # same structure, other label value, shifted one row
    a[9:11, 14:18, 18:22] = 2  # only in test
    test = oblique_volume.with_array(a)
    ref = oblique_volume.with_array(b)
    rows, spec = compare_segmentations(test, ref, [LabelInfo(1, "tumour"), LabelInfo(2, "node")],
                                       [LabelInfo(3, "Tumour")])
    by = {r["segment"]: r for r in rows}
    assert by["tumour"]["reference_segment"] == "Tumour"
    assert by["tumour"]["dice"] == pytest.approx(2 * 6 * 7 * 10 / (2 * 6 * 8 * 10))
    assert by["tumour"]["hausdorff_mm"] == pytest.approx(oblique_volume.spacing[1])
    assert by["node"]["dice"] == 0.0 and "no reference segment" in by["node"]["note"]
    assert {m.key for m in spec} >= set(by["tumour"])


def test_other_grid_is_refused(oblique_volume):
    from deepseg.errors import InputError

    with pytest.raises(InputError, match="same voxel grid"):
        compare_segmentations(oblique_volume.with_array(np.zeros(oblique_volume.shape, np.uint8)),
                              Volume(np.zeros((3, 3, 3), np.uint8)))
