"""Explaining the shipped liver -> lesion cascade on a CT whose field of view is much larger than the liver
(TotalSegmentator's abdominal CT, padded with air in z).  The liver is explained through the liver stage's
network and a lesion region through the lesion stage's; each stage maps its own network grid back
(before the explicit contract, explaining this model stopped with ``KeyError: 'lesion'``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from deepseg.cli import main
from deepseg.io import read_volume, write_volume
from deepseg.volume import Volume

PAD = 15  # slices of air above and below
pytestmark = pytest.mark.slow  # one cascade segmentation and two gradient passes: about 5 min on 2 cores


@pytest.fixture(scope="module")
def large_fov_ct(shared, tmp_path_factory):
    """example_ct_sm (122 x 101 x 30 at 3 mm, abdomen) with ``PAD`` slices of air above and below, as a file."""
    ct = read_volume(shared / "data" / "totalseg" / "example_ct_sm.nii.gz")
    padded = np.pad(ct.array.astype(np.int16), ((PAD, PAD), (0, 0), (0, 0)), constant_values=-1024)
    origin = tuple(np.asarray(ct.origin) - PAD * ct.spacing[2] * np.asarray(ct.direction)[:, 2])
    path = tmp_path_factory.mktemp("large_fov") / "ct.nii.gz"
    write_volume(Volume(padded, ct.spacing, origin, ct.direction, name="ct"), path)
    return path


@pytest.fixture(scope="module")
def liver_explained(liver_lesion_folder, large_fov_ct):
    from deepseg.explain import explain

    # Grad-CAM pinned: the liver's default is occlusion, which needs no network-grid mapping (the subject here)
    return explain(str(liver_lesion_folder), [large_fov_ct], "liver", method="gradcam", device="cpu")


def test_cascade_explains_the_liver_on_a_large_field_of_view(liver_explained, large_fov_ct):
    res = liver_explained
    ct, heat = read_volume(large_fov_ct), res.heatmap.array
    assert res.info["stage"] == "liver" and not res.info["all_zero"] and res.info["region_voxels"] > 1000
    assert res.heatmap.same_grid(ct) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    assert 0 < (heat > 0).mean() < 0.9  # placed on the body crop, not spread over the whole field of view


def test_cli_explains_a_lesion_region_through_the_lesion_stage(liver_lesion_folder, liver_explained, large_fov_ct,
                                                               tmp_path, capsys):
    ct = read_volume(large_fov_ct)
    liver = liver_explained.labels.array == 1
    core = np.argwhere(ndimage.binary_erosion(liver, iterations=2))
    centre = core[len(core) // 2]
    region = np.zeros(ct.shape, np.uint8)
    region[tuple(slice(c - 2, c + 3) for c in centre)] = 1
    write_volume(ct.with_array(region), tmp_path / "region.nii.gz")
    code = main(["explain", "--model", str(liver_lesion_folder), "--input", str(large_fov_ct), "--segment", "Liver lesion",
                 "--region", str(tmp_path / "region.nii.gz"), "--output", str(tmp_path / "heat.nii.gz"),
                 "--method", "gradcam",
                 "--device", "cpu", "--progress", "none", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["stage"] == "lesion"
    heat = read_volume(tmp_path / "heat.nii.gz")
    assert heat.same_grid(ct) and heat.array.max() == pytest.approx(1.0)
    # the lesion network sees the box around the dilated liver, not the whole field of view
    assert (heat.array > 0).mean() < 0.9
