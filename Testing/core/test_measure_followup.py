"""Follow-up change: volume change, lesion matching, new/disappeared lesions, response category,
and lesion matching across different grids (with and without rigid registration)."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.measure.followup import ResponseThresholds, followup_change, response_category
from deepseg.models.card import LabelInfo
from deepseg.volume import Volume


def _ball(shape, centre, r):
    k, j, i = np.indices(shape)
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= r * r


@pytest.mark.parametrize("base,fu,new,expected", [
    (10.0, 0.0, 0, "CR"), (10.0, 3.4, 0, "PR"), (10.0, 3.6, 0, "SD"), (10.0, 17.2, 0, "SD"),
    (10.0, 17.4, 0, "PD"), (10.0, 5.0, 1, "PD"), (0.0, 0.0, 0, "NE")])
def test_response_thresholds(base, fu, new, expected):
    assert response_category(base, fu, new) == expected


def test_response_thresholds_are_configurable():
    assert response_category(10, 6, 0, ResponseThresholds(partial_response_percent=-30)) == "PR"


def test_lesions_matched_new_disappeared_and_volume_change():
    shape = (30, 40, 40)
    base = np.zeros(shape, np.uint8)
    fu = np.zeros(shape, np.uint8)
    base[_ball(shape, (10, 10, 10), 4)] = 1   # shrinks
    fu[_ball(shape, (10, 10, 11), 3)] = 1
    base[_ball(shape, (20, 30, 30), 3)] = 1   # disappears
    fu[_ball(shape, (22, 10, 30), 2)] = 1     # new
    base[5:10, 30:35, 5:10] = 2               # liver-like organ, unchanged
    fu[5:10, 30:35, 5:10] = 2
    spacing = (0.8, 0.8, 2.0)
    labels = [LabelInfo(1, "lesion"), LabelInfo(2, "liver")]
    out = followup_change(Volume(base, spacing), Volume(fu, spacing), labels, labels)
    rows = {r["segment"]: r for r in out["structures"]}
    voxel_mL = np.prod(spacing) / 1000
    assert rows["lesion"]["baseline_volume_mL"] == pytest.approx((base == 1).sum() * voxel_mL)
    assert rows["lesion"]["volume_change_mL"] == pytest.approx(((fu == 1).sum() - (base == 1).sum()) * voxel_mL)
    assert (rows["lesion"]["baseline_lesions"], rows["lesion"]["followup_lesions"]) == (2, 2)
    assert (rows["lesion"]["new_lesions"], rows["lesion"]["disappeared_lesions"]) == (1, 1)
    assert rows["lesion"]["response"] == "PD"  # a new lesion
    assert rows["liver"]["volume_change_percent"] == 0 and rows["liver"]["response"] == "SD"
    statuses = sorted(r["status"] for r in out["lesions"] if r["segment"] == "lesion")
    assert statuses == ["disappeared", "matched", "new"]
    matched = next(r for r in out["lesions"] if r["status"] == "matched")
    assert matched["volume_change_percent"] < -40
    assert out["response"]["category"] == "PD" and out["response"]["thresholds"]["PD_at_or_above_percent"] == 73.0
    only_liver = followup_change(Volume(base, spacing), Volume(fu, spacing), labels, labels, targets=["liver"])
    assert only_liver["response"]["category"] == "SD"


def test_merge_and_split():
    shape = (10, 30, 30)
    base = np.zeros(shape, np.uint8)
    fu = np.zeros(shape, np.uint8)
    base[3:6, 5:10, 5:10] = 1
    base[3:6, 5:10, 12:17] = 1
    fu[3:6, 5:10, 5:17] = 1  # the two merge
    out = followup_change(Volume(base), Volume(fu))
    assert [r["status"] for r in out["lesions"]] == ["merged", "merged"]
    out = followup_change(Volume(fu), Volume(base))
    assert [r["status"] for r in out["lesions"]] == ["split"]


def test_other_grid_with_rigid_registration(oblique_volume):
    """The follow-up scan is the baseline moved by 16 mm and resampled on a coarser grid: without
    registration the small lesion looks disappeared + new; with it, the lesion is matched."""
    import SimpleITK as sitk

    from deepseg.io import volume_from_sitk, volume_to_sitk

    shape = (40, 48, 48)
    rng = np.random.default_rng(0)
    image = rng.normal(0, 5, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    body = _ball(shape, (20, 24, 24), 16)
    image[body] += 100
    image[_ball(shape, (20, 14, 30), 5)] += 60  # a structure with contrast for registration
    lesion = _ball(shape, (20, 30, 16), 3)
    image[lesion] += 150
    labels[lesion] = 1
    base_img = Volume(image, spacing=(2.0, 2.0, 2.0))
    base = base_img.with_array(labels)
    shift = sitk.TranslationTransform(3, (16.0, 0.0, 0.0))  # moved 16 mm (> lesion diameter)
    ref = sitk.Image([40, 40, 34], sitk.sitkFloat32)
    ref.SetSpacing((2.4, 2.4, 2.4))

    def moved(v: Volume, interp):
        return volume_from_sitk(sitk.Resample(volume_to_sitk(v), ref, shift.GetInverse(), interp, 0.0))

    fu_img = moved(base_img, sitk.sitkLinear)
    fu = moved(base.with_array(labels.astype(np.float32)), sitk.sitkNearestNeighbor)
    fu = fu.with_array(fu.array.astype(np.uint8))
    plain = followup_change(base, fu)
    assert sorted(r["status"] for r in plain["lesions"]) == ["disappeared", "new"]
    reg = followup_change(base, fu, baseline_image=base_img, followup_image=fu_img, register=True)
    assert [r["status"] for r in reg["lesions"]] == ["matched"] and reg["response"]["registered"]
    assert reg["lesions"][0]["followup_lesion"] == [1] and reg["structures"][0]["new_lesions"] == 0


def test_real_ct_followup_after_rigid_motion(shared):
    """The TotalSegmentator CT as its own follow-up after a 4 degree rotation and a 12 mm shift,
    resampled on a 3.5 mm grid: with registration every structure keeps its lesion count, nothing
    is new or disappeared, and volumes change by less than the resampling error."""
    import SimpleITK as sitk

    from deepseg.io import read_volume, volume_from_sitk, volume_to_sitk
    from deepseg.measure import read_segmentation

    ts = shared / "data" / "totalseg"
    image = read_volume(ts / "example_ct_sm.nii.gz")
    labels, info = read_segmentation(ts / "example_seg.nii.gz", ts / "labels_total.json", only_present=True)
    motion = sitk.Euler3DTransform()
    motion.SetCenter(volume_to_sitk(image).TransformContinuousIndexToPhysicalPoint([60, 50, 15]))
    motion.SetRotation(0.0, 0.0, np.deg2rad(4))
    motion.SetTranslation((12.0, -6.0, 0.0))
    grid = sitk.Image([104, 87, 26], sitk.sitkFloat32)
    grid.SetSpacing((3.5, 3.5, 3.5))
    grid.SetOrigin(image.origin)
    grid.SetDirection(tuple(image.direction.ravel()))

    def moved(v: Volume, interp, default):
        return volume_from_sitk(sitk.Resample(volume_to_sitk(v), grid, motion, interp, default))

    fu_image = moved(image.with_array(image.array.astype(np.float32)), sitk.sitkLinear, -1024.0)
    fu_labels = moved(labels, sitk.sitkNearestNeighbor, 0)
    big = [lab for lab in info if (labels.array == lab.value).sum() > 2000]
    out = followup_change(labels, fu_labels, big, big, image, fu_image, register=True)
    assert out["response"]["registered"] and out["response"]["category"] == "SD"
    for row in out["structures"]:
        assert row["new_lesions"] == 0 and row["disappeared_lesions"] == 0, row["segment"]
        assert abs(row["volume_change_percent"]) < 10, row["segment"]
    # the registration itself: big organs overlap again once the follow-up is mapped back
    from deepseg.measure.compare import compare_segmentations
    from deepseg.measure.grid import resample_labels, rigid_register

    back = resample_labels(fu_labels, labels, rigid_register(image, fu_image))
    unregistered = resample_labels(fu_labels, labels)
    dice = {r["segment"]: r["dice"] for r in compare_segmentations(back, labels, big, big)[0]}
    before = {r["segment"]: r["dice"] for r in compare_segmentations(unregistered, labels, big, big)[0]}
    assert min(dice.values()) > 0.85 and np.mean(list(dice.values())) > np.mean(list(before.values())) + 0.2
