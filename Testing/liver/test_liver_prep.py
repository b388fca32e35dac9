"""Geometry of the pyliverlesionseg pre-processing: orientation round trips, centred zoom, crops; and the
PyPI wheel-member fetch."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.errors import StoreError
from deepseg.models import liver_prep as lp
from deepseg.models.pypi_source import fetch_wheel_member, find_wheel, sha256_of
from deepseg.volume import Volume


def test_orientation_round_trip(oblique_volume):
    ornt = lp.lps_orientation(oblique_volume.direction, oblique_volume.spacing)
    xyz = lp.to_lps_xyz(oblique_volume.array, ornt)
    back = lp.from_lps_xyz(np.stack([xyz, 2 * xyz]), ornt)
    np.testing.assert_array_equal(back[0], oblique_volume.array)
    np.testing.assert_array_equal(back[1], 2 * oblique_volume.array)


@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]),
                                       np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])])
def test_lps_array_indices_grow_towards_left_posterior_superior(direction):
    arr = np.zeros((5, 6, 7), np.float32)
    vol = Volume(arr, spacing=(1.0, 2.0, 3.0), direction=direction)
    marks = [(1, 2, 3), (3, 4, 5)]  # (k, j, i)
    for n, (k, j, i) in enumerate(marks, 1):
        arr[k, j, i] = n
    ornt = lp.lps_orientation(vol.direction, vol.spacing)
    xyz = lp.to_lps_xyz(arr, ornt)
    world = [vol.ijk_to_lps() @ np.array([i, j, k, 1.0]) for k, j, i in marks]
    found = [np.argwhere(xyz == n)[0] for n in (1, 2)]
    # every LPS coordinate difference has the sign of the index difference along that axis
    assert np.all(np.sign(found[1] - found[0]) == np.sign(world[1][:3] - world[0][:3]))
    np.testing.assert_allclose(sorted(lp.xyz_spacing(vol.spacing, ornt)), [1, 2, 3])


def test_zoom3d_keeps_the_grid_centre_and_the_mass():
    n = 20
    ramp = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 4, 4))
    up = lp.zoom3d(ramp, (2.5, 1, 1))
    m = up.shape[0]
    assert m == 50
    centres = (np.arange(m) + 0.5) / 2.5 - 0.5 * m / 2.5 + 0.5 * n - 0.5  # old-index coordinate of new voxels
    inside = (centres >= 0) & (centres <= n - 1)
    np.testing.assert_allclose(up[inside, 0, 0], centres[inside], atol=1e-4)
    down = lp.zoom3d(ramp, (0.37, 1, 1))
    assert down.shape[0] == int(np.ceil(n * 0.37))
    np.testing.assert_allclose(down.sum(), 0.37 * ramp.sum(), rtol=1e-5)  # every old voxel is spread, none lost
    back = lp.unzoom_linear(lp.zoom3d(ramp, (0.5, 1, 1)), ramp.shape, (0.5, 1, 1))
    np.testing.assert_allclose(back[2:-2, 0, 0], ramp[2:-2, 0, 0], atol=1e-4)


def test_ct_crop_limits_the_box_to_the_original_maximum():
    vol = np.full((150, 130, 120), -1000, np.float32)  # 4 mm voxels: 600 x 520 x 480 mm of air
    vol[10:140, 15:115, :] = 40.0  # a huge soft-tissue block (520 x 400 mm in-plane)
    box = lp.crop_ct(vol, (4.0, 4.0, 4.0))
    sizes_mm = [(b.stop - b.start) * 4.0 for b in box]
    assert sizes_mm[0] <= 489 and sizes_mm[1] <= 408 and sizes_mm[2] <= 408
    assert sizes_mm[0] > 470 and sizes_mm[1] > 370 and sizes_mm[2] > 400
    assert box[0].start >= 10 and box[0].stop <= 140 and box[1].start >= 15 and box[1].stop <= 115
    assert box[2].stop == 120  # no lungs: the box keeps the top of the volume


def test_fetch_wheel_member_checks_and_reuses(tmp_path, liver_wheels):
    WHEELS = liver_wheels
    wheel = find_wheel("pyliverlesionseg", "0.3", WHEELS)
    assert wheel is not None
    member = "pyliverlesionseg/architectures/__init__.py"
    dest = fetch_wheel_member("pyliverlesionseg", "0.3", member, tmp_path / "a.py", wheel_dir=WHEELS)
    digest = sha256_of(dest)
    assert fetch_wheel_member("pyliverlesionseg", "0.3", member, dest, sha256=digest, wheel_dir=WHEELS) == dest
    with pytest.raises(StoreError, match="SHA-256"):
        fetch_wheel_member("pyliverlesionseg", "0.3", member, tmp_path / "b.py", sha256="0" * 64, wheel_dir=WHEELS)
    assert not (tmp_path / "b.py").exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(StoreError, match="has no file"):
        fetch_wheel_member("pyliverlesionseg", "0.3", "nope.txt", tmp_path / "c", wheel_dir=WHEELS)
