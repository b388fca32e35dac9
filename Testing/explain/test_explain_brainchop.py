"""``deepseg explain`` on every published brainchop MeshNet (../shared), on MR crops whose field of view is
larger than the structure explained: mindgrab (brain mask) on a head crop with skull, scalp and air
(pyradiomics brain1); the parcellation networks on a block of norm.mgz at the top of the brain (brain and
background), explaining a small white-matter region placed from FreeSurfer's labels (one halo tile)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepseg.cli import main
from deepseg.io import read_volume, write_volume
from deepseg.volume import Volume

WHITE_MATTER = {"model18cls": "Cerebral-White-Matter", "model30chan50cls": "Cerebral-White-Matter",
                "model5_gw_ae": "White Matter"}
# one 124^3 halo tile (receptive radius 46) back-propagated through 21-30 channels needs ~8 GB: CI runs the
# 5-channel network, the others (and mindgrab's single 128^3 whole-crop pass) are slow runs
SLOW = pytest.mark.slow


def _crop(volume: Volume, start_kji, size_kji) -> Volume:
    box = tuple(slice(s, s + n) for s, n in zip(start_kji, size_kji))
    origin = volume.ijk_to_lps() @ np.array([*start_kji[::-1], 1.0])
    return Volume(np.ascontiguousarray(volume.array[box]), volume.spacing, tuple(origin[:3]), volume.direction,
                  name=volume.name)


def _explain(model_dir, image, segment, tmp_path, capsys, region=None):
    args = ["explain", "--model", str(model_dir), "--input", str(image), "--segment", segment,
            "--output", str(tmp_path / "heat.nii.gz"), "--method", "gradcam", "--device", "cpu", "--progress", "none",
            "--json"]  # Grad-CAM: the network-grid mapping under test (occlusion, MeshNet's default, needs none)
    assert main(args + (["--region", str(region)] if region else [])) == 0
    return json.loads(capsys.readouterr().out), read_volume(tmp_path / "heat.nii.gz")


@SLOW
def test_mindgrab_explains_the_brain_mask_on_a_head_crop(shared, tmp_path, capsys):
    head = read_volume(shared / "data" / "pyradiomics" / "brain1_image.nrrd")  # 0.78 x 0.78 x 6.5 mm, with skull
    crop = _crop(head, (8, 0, 60), (8, 80, 80))  # the top of the head: air, scalp, skull and brain
    write_volume(crop, tmp_path / "head.nii.gz")
    summary, heat = _explain(shared / "models" / "brainchop" / "mindgrab", tmp_path / "head.nii.gz", "brain mask",
                             tmp_path, capsys)
    assert heat.same_grid(crop) and heat.array.max() == pytest.approx(1.0) and not summary["all_zero"]
    assert 0.1 < summary["region_voxels"] / crop.array.size < 0.9  # the brain is part of the field of view


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "model5_gw_ae" else [SLOW]) for n in WHITE_MATTER])
def test_parcellation_networks_explain_a_white_matter_region(shared, name, tmp_path, capsys):
    norm = read_volume(shared / "data" / "niivue" / "norm.mgz")
    aseg = read_volume(shared / "data" / "niivue" / "aparc.a2009s+aseg.mgz")
    brain = np.argwhere(aseg.array > 0)
    start = brain.mean(axis=0).astype(int) - 20
    start[1] = brain[:, 1].min() - 4  # array axis 1 = inferior in the conformed LIA grid: the top of the brain
    t1, labels = _crop(norm, start, (40, 40, 40)), _crop(aseg, start, (40, 40, 40))
    assert 0.2 < (labels.array > 0).mean() < 0.8  # brain and background
    wm = np.isin(labels.array, [2, 41])  # FreeSurfer's cerebral white matter
    points = np.argwhere(wm)
    centre = points[np.argmin(np.abs(points - 20).max(axis=1))]  # the white-matter voxel nearest the block centre
    region = np.zeros(t1.shape, np.uint8)
    region[tuple(slice(c - 1, c + 2) for c in centre)] = 1
    write_volume(t1, tmp_path / "t1.nii.gz")
    write_volume(t1.with_array(region), tmp_path / "region.nii.gz")
    summary, heat = _explain(shared / "models" / "brainchop" / name, tmp_path / "t1.nii.gz", WHITE_MATTER[name],
                             tmp_path, capsys, region=tmp_path / "region.nii.gz")
    assert heat.same_grid(t1) and heat.array.min() >= 0 and summary["network_region_voxels"] == 27
    # a 27-voxel white-matter region may get no positive Grad-CAM attribution (model5_gw_ae: none here);
    # the run says so instead of inventing a map
    assert summary["all_zero"] == (heat.array.max() == 0)
    if not summary["all_zero"]:
        assert heat.array.max() == pytest.approx(1.0)
