"""The anatomical checks of the CT liver model on synthetic geometry: a liver lies under the lungs or is cut
by the top of the field of view (``liver_site``), and constant padding is not tissue (``padding_to_air``).
Every case is also stored flipped and permuted: "superior" must come from the direction matrix."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.models import liver_prep as lp
from deepseg.models.liver_site import liver_top_is_covered
from deepseg.volume import Volume

SPACING = (4.0, 4.0, 4.0)  # x, y, z (mm)
STORAGES = {  # direction matrices (columns: LPS directions of i, j, k)
    "lps": np.eye(3),
    "flipped": np.diag([-1.0, -1.0, -1.0]),  # k runs superior -> inferior
    "permuted": np.array([[0.0, 0, 1], [1, 0, 0], [0, -1, 0]]),  # i -> P, j -> I, k -> L
}


def _torso(nz: int = 80, lungs_from: "int | None" = None) -> np.ndarray:
    """A noisy soft-tissue torso (40 HU) in air, ``[x, y, z]`` LPS at 4 mm, with two lungs from slice
    ``lungs_from`` up to the top of the field of view."""
    rng = np.random.default_rng(0)
    x, y = np.mgrid[:100, :80]
    vol = np.full((100, 80, nz), -1000.0, np.float32)
    vol[((x - 50) / 45.0) ** 2 + ((y - 40) / 35.0) ** 2 < 1] = 40.0
    if lungs_from is not None:
        vol[15:45, 20:60, lungs_from:] = -850.0  # right lung (x grows towards the patient's left)
        vol[55:85, 20:60, lungs_from:] = -850.0
    return vol + rng.normal(0, 10, vol.shape).astype(np.float32)


def _liver(nz: int, top: int) -> np.ndarray:
    """A liver-sized ellipsoid (~1.4 L) on the patient's right whose highest slice is ``top``."""
    x, y, z = np.mgrid[:100, :80, :nz]
    return ((x - 35) / 22.0) ** 2 + ((y - 38) / 20.0) ** 2 + ((z - (top - 9)) / 9.6) ** 2 < 1


def _stored(array_xyz: np.ndarray, storage: str) -> tuple[Volume, "callable"]:
    """A Volume holding ``array_xyz`` in ``storage`` order, and the map of ``[x, y, z]`` masks onto its grid."""
    direction = STORAGES[storage]
    ornt = lp.lps_orientation(direction, (1.0, 1.0, 1.0))
    spacing_ijk = tuple(SPACING[int(axis)] for axis, _ in ornt)
    volume = Volume(lp.from_lps_xyz(array_xyz, ornt), spacing_ijk, (0.0, 0.0, 0.0), direction)
    return volume, lambda mask: lp.from_lps_xyz(mask, ornt)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("scene, covered", [
    ("under the lungs", True),           # the dome 8 mm below the lung bases
    ("cut by the top", True),            # no lungs in view: the scan starts below them and cuts the liver
    ("near the top", True),              # no lungs, top 8 mm below the edge (the network's boundary error)
    ("cut by the top, air above", True),  # the same scan placed in a larger grid: 60 mm of air above it
    ("cut by a slanted top", True),      # a tilted grid: the field of view's top falls 120 mm across it, padded above
    ("tissue below a slanted top", False),  # the same grid, the "liver" 48 mm below that edge at the nearest
    ("tissue above, no lungs", False),   # a pelvis-only scan: bladder / muscle 80 mm below the top
    ("far below the lungs", True),       # lungs above, 120 mm higher: allowed (pleural fluid can lift them)
    ("above the lungs", False),          # lungs in view, all of them below the "liver" (a head or a neck)
])
def test_a_liver_has_lungs_or_the_top_of_the_scan_above_it(storage, scene, covered):
    nz = 80
    lungs_from, top = {"under the lungs": (50, 47), "cut by the top": (None, 79), "near the top": (None, 77),
                       "tissue above, no lungs": (None, 59), "far below the lungs": (50, 19),
                       "cut by the top, air above": (None, 64), "above the lungs": (None, 59),
                       "cut by a slanted top": (None, 79), "tissue below a slanted top": (None, 45)}[scene]
    vol = _torso(nz, lungs_from)
    if scene == "above the lungs":
        vol[15:45, 20:60, :30] = vol[55:85, 20:60, :30] = -850.0  # two whole lungs (3 L each) in slices 0-29
    liver = _liver(nz, top)
    vol[liver] = 60.0
    if scene.endswith("air above"):
        vol[:, :, top + 1:] = -1024.0
    if scene.endswith("slanted top"):  # cut by it, the liver's highest slice lies 48 mm below the body's
        x, z = np.indices(vol.shape)[[0, 2]]
        outside = z > nz - 1 - 0.3 * (vol.shape[0] - 1 - x)  # lowest on the right, where the liver is
        vol[outside], liver[outside] = -1024.0, False
    image, onto = _stored(vol, storage)
    assert liver_top_is_covered(onto(liver), image) is covered


def test_an_empty_liver_needs_no_check():
    image, onto = _stored(_torso(), "flipped")
    assert liver_top_is_covered(np.zeros(image.shape, bool), image)


def test_constant_padding_at_a_tissue_value_is_read_as_air():
    """A head-sized noisy body in 0 HU padding (as TotalSegmentator's head CT atlas): the padding becomes
    air, so the torso gate sees a head; the body's voxels and ordinary air padding are not touched."""
    rng = np.random.default_rng(1)
    x, y = np.mgrid[:130, :130]
    head = ((x - 65) / 38.0) ** 2 + ((y - 65) / 45.0) ** 2 < 1  # 152 x 180 mm at 2 mm
    vol = np.zeros((130, 130, 40), np.float32)
    vol[head] = 35.0 + rng.normal(0, 8, (head.sum(), 40))
    out = lp.padding_to_air(vol)
    assert np.array_equal(out[head], vol[head])
    assert (out[~head] == lp.AIR_HU).all()
    assert lp.shows_torso(vol.shape, lp.crop_ct(vol, (2.0, 2.0, 2.0)), (2.0, 2.0, 2.0))  # read as body: fooled
    assert not lp.shows_torso(out.shape, lp.crop_ct(out, (2.0, 2.0, 2.0)), (2.0, 2.0, 2.0))
    air_padded = np.where(head[..., None], vol, -1024.0).astype(np.float32)
    assert np.array_equal(lp.padding_to_air(air_padded), air_padded)  # padding at or below air stays


def test_the_top_of_a_slanted_scan_is_kept_per_column_as_below_scan_top_reads_it():
    """``CTSite.scan_top`` is indexed ``[y, x]`` (as ``below_scan_top`` reads it): on a 100 x 80 torso whose field
    of view ends on a slope along x, each column's top is its highest voxel below the padding."""
    vol = _torso(80)
    x, z = np.indices(vol.shape)[[0, 2]]
    vol[z > 79 - 0.3 * (99 - x)] = -1024.0
    site = lp.ct_landmarks(vol, SPACING).site()
    assert site.lung_top is None and site.scan_top.shape == (80, 100)
    expected = np.floor(79 - 0.3 * (99 - np.arange(90))).astype(int)  # the top slice of column x, for every y
    # (at x >= 90 the padding is under 3 voxels thick: too thin for padding's 3 x 3 x 3 flat test, so the grid's top is taken)
    np.testing.assert_array_equal(site.scan_top[:, :90], np.broadcast_to(expected, (80, 90)))
