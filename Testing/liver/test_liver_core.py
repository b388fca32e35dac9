"""``liver_core.unlike_core``: bowel grown onto a cut liver is dropped; the liver and its lesions are kept."""
from __future__ import annotations

import numpy as np

from deepseg.models import liver_core
from deepseg.models.liver import liver_mask_3mm


def _unlike_core(probability: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``unlike_core`` with the core's intensity window of the same maps, as ``liver_mask_3mm`` gives it."""
    return liver_core.unlike_core(probability, image, liver_core.core_intensity(probability, image))


def _scene(rng: np.random.Generator):
    """A liver ball the network is sure of (P 0.98, intensity 0.2) holding a darker lesion it is unsure of, a
    one-voxel partial-volume rim, and a bowel slab beside it (unsure, darker): probability, image, masks."""
    zz, yy, xx = np.mgrid[:40, :40, :60]
    r = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 22) ** 2)
    liver, rim = r <= 12, (r > 12) & (r <= 13)
    lesion = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 27) ** 2) <= 4
    bowel = (np.abs(zz - 20) <= 6) & (np.abs(yy - 20) <= 6) & (xx >= 34) & (xx < 56)
    probability = np.zeros(r.shape, np.float32)
    image = rng.normal(-0.3, 0.02, r.shape).astype(np.float32)  # fat
    for mask, p, value in ((bowel, 0.7, 0.0), (rim, 0.6, 0.05), (liver, 0.98, 0.2), (lesion, 0.7, 0.02)):
        probability[mask] = p
        image[mask] = rng.normal(value, 0.01, mask.sum())
    return probability, image, liver, lesion, rim, bowel


def test_bowel_beside_the_liver_is_dropped_the_liver_and_its_lesion_are_kept():
    probability, image, liver, lesion, rim, bowel = _scene(np.random.default_rng(0))
    drop = _unlike_core(probability, image)
    assert drop[bowel].mean() > 0.95
    assert not drop[liver | lesion].any()  # (the unsure rim joined to the bowel goes with it: a known cost)
    mask = liver_mask_3mm(probability, image)
    assert mask[lesion].all() and mask[liver].mean() > 0.95 and mask[bowel].mean() < 0.05
    # the original post-processing (no image) keeps the bowel joined to the liver
    assert liver_mask_3mm(probability)[bowel].mean() > 0.9


def test_bowel_beside_the_liver_is_dropped_under_white_noise():
    """White noise whose SD is 40 % of the liver-bowel contrast (the example CT's 25 HU against ~40 HU) widens
    the core's window past the bowel, so per voxel the bowel looks like liver; read through ``denoised`` (the
    median of each voxel and its face neighbours) it does not, and the lesion inside the liver is still kept."""
    rng = np.random.default_rng(3)
    probability, image, liver, lesion, rim, bowel = _scene(rng)
    noisy = image + rng.normal(0, 0.08, image.shape).astype(np.float32)
    assert _unlike_core(probability, noisy)[bowel].mean() < 0.5  # the per-voxel evidence alone fails
    mask = liver_mask_3mm(probability, noisy)
    assert mask[bowel].mean() < 0.05 and mask[lesion].all() and mask[liver].mean() > 0.95


def test_nothing_is_dropped_without_a_confident_core():
    probability, image, *_ = _scene(np.random.default_rng(1))
    assert not _unlike_core(np.minimum(probability, 0.8), image).any()


def _ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


def _paint(shape, parts, rng: np.random.Generator):
    """Probability and image: fat (P 0, intensity -0.3) but for ``parts`` (mask, P, intensity), painted in order."""
    probability = np.zeros(shape, np.float32)
    image = rng.normal(-0.3, 0.02, shape).astype(np.float32)
    for mask, p, value in parts:
        probability[mask] = p
        image[mask] = rng.normal(value, 0.01, mask.sum())
    return probability, image


def test_each_condition_keeps_what_it_guards():
    """Each of the three conditions alone keeps a thick unsure region: liver-bright (an unsure lobe: the intensity
    rule), inside the hull of the rest of the liver but open to fat (a notch between two lobes: the hull guard),
    outside the hull but with its rim in the predicted liver (a lesion at the surface, under an unsure capsule:
    the rim guard); the same dark region outside the hull and open to fat is dropped."""
    rng, shape = np.random.default_rng(2), (40, 40, 64)
    liver = _ball(shape, (20, 20, 14), 10) | _ball(shape, (20, 20, 48), 10)
    bridge = (np.abs(np.indices(shape)[0] - 20) <= 3) & (np.abs(np.indices(shape)[1] - 20) <= 3)
    liver |= bridge & (np.indices(shape)[2] >= 14) & (np.indices(shape)[2] <= 48)
    lobe = np.zeros(shape, bool)
    lobe[8:14, 30:37, 6:22] = True  # beside the first ball, outside the hull, open to fat
    notch = np.zeros(shape, bool)
    notch[24:30, 17:24, 25:37] = True  # above the bridge, between the balls: inside the hull
    outside = np.zeros(shape, bool)
    outside[26:32, 30:37, 40:56] = True  # beside the second ball, outside the hull, open to fat
    probability, image = _paint(shape, [(liver, 0.98, 0.2), (lobe, 0.7, 0.2), (notch, 0.7, 0.0),
                                        (outside, 0.7, 0.0)], rng)
    drop = _unlike_core(probability, image)
    assert not drop[liver | lobe | notch].any()
    assert drop[outside].mean() > 0.95

    ball = _ball(shape, (20, 20, 24), 12)
    lesion = _ball(shape, (20, 20, 36), 4)  # on the surface: mostly outside the hull
    capsule = _ball(shape, (20, 20, 36), 6) & ~ball & ~lesion
    for covered in (True, False):
        parts = [(ball, 0.98, 0.2)] + [(capsule, 0.6, 0.2)] * covered + [(lesion, 0.7, 0.0)]
        drop = _unlike_core(*_paint(shape, parts, rng))
        assert not drop[ball & ~lesion].any()
        assert drop[lesion].mean() == (0.0 if covered else 1.0)


def test_lobes_cut_apart_by_the_top_of_the_scan_are_kept():
    """A liver cut by the top of the grid (axis 0 grows superior) in two pieces, as lobes joined above the scan:
    the smaller lobe, liver-bright and running out of the top, is kept with the largest piece; a piece the network
    is as sure of but darker (bowel) or ending below the top is not; nor is any piece when the largest does not
    reach the top (a liver whose top is in the scan is one piece)."""
    rng, shape = np.random.default_rng(3), (40, 40, 70)
    z = np.indices(shape)[0]
    liver = _ball(shape, (40, 20, 18), 16) & (z < 40)  # cut by the top slice
    lobe = _ball(shape, (40, 20, 50), 7) & (z < 40)  # apart from it in the scan
    bowel = _ball(shape, (40, 6, 50), 5) & (z < 40) & ~lobe
    low = _ball(shape, (12, 32, 52), 5)  # liver-bright, far below the top
    probability, image = _paint(shape, [(liver, 0.98, 0.2), (lobe, 0.95, 0.21), (bowel, 0.95, 0.0),
                                        (low, 0.95, 0.2)], rng)
    mask = liver_mask_3mm(probability, image, top_slices=5)
    assert mask[liver].mean() > 0.95 and mask[lobe].mean() > 0.9
    assert not mask[bowel].any() and not mask[low].any()
    assert not liver_mask_3mm(probability)[lobe].any()  # the original keeps the largest piece only
    above = ((0, 6), (0, 0), (0, 0))  # six slices of fat above: the liver's top is in the scan
    mask = liver_mask_3mm(np.pad(probability, above), np.pad(image, above, constant_values=-0.3), top_slices=5)
    assert not mask[:40][lobe].any() and mask[:40][liver].mean() > 0.95


def _slanted_top(shape, drop: int) -> np.ndarray:
    """The share of each voxel that is padding above a slanted top of the scan (axis 0 grows superior): a grid
    tilted about y, whose field of view's upper edge falls by ``drop`` slices from x = 0 to its last column."""
    z, _, x = np.indices(shape)
    return (z > shape[0] - 1 - np.round(x * drop / (shape[2] - 1))).astype(np.float32)


def test_lobes_cut_apart_by_a_slanted_top_of_the_scan_are_kept():
    """A tilted grid's field of view ends in a slanted edge, padded above (axis 0 grows superior): the liver's
    two lobes are cut by that edge, the smaller one where it lies 9 slices below the grid's top slice.  It is kept
    as it reaches the top of the scan in its own columns; a liver-bright piece ending below the edge is not."""
    rng, shape = np.random.default_rng(4), (40, 40, 70)
    padding = _slanted_top(shape, 12)
    scanned = padding < 0.5
    liver = _ball(shape, (38, 20, 18), 16) & scanned
    lobe = _ball(shape, (32, 20, 52), 7) & scanned  # its top: the edge, 9 slices below the grid's top
    low = _ball(shape, (12, 30, 56), 5)
    probability, image = _paint(shape, [(liver, 0.98, 0.2), (lobe, 0.95, 0.21), (low, 0.95, 0.2)], rng)
    probability[~scanned], image[~scanned] = 0.0, -0.5  # padding: air to the network
    mask = liver_mask_3mm(probability, image, top_slices=5, padding=padding)
    assert mask[liver].mean() > 0.95 and mask[lobe].mean() > 0.8 and not mask[low].any()  # (the opening trims
    # the lobe's thin wedge under the slanted edge)
    assert not liver_mask_3mm(probability, image, top_slices=5)[lobe].any()  # the grid's top: the lobe is lost


def test_voxels_blended_with_padding_are_not_dropped():
    """Unsure darker voxels beside the liver are bowel to ``unlike_core``, unless padding darkened them (the
    edge of a resampled field of view): those are kept."""
    probability, image, liver, lesion, rim, bowel = _scene(np.random.default_rng(0))
    window = liver_core.core_intensity(probability, image)
    assert liver_core.unlike_core(probability, image, window)[bowel].mean() > 0.95
    assert not liver_core.unlike_core(probability, image, window, blended=bowel).any()
