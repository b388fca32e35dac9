"""``liver_core.unlike_core``: bowel grown onto a cut liver is dropped; the liver and its lesions are kept."""
from __future__ import annotations

import numpy as np

from deepseg.models import liver_core
from deepseg.models.liver import liver_mask_3mm


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
    drop = liver_core.unlike_core(probability, image)
    assert drop[bowel].mean() > 0.95
    assert not drop[liver | lesion].any()  # (the unsure rim joined to the bowel goes with it: a known cost)
    mask = liver_mask_3mm(probability, image)
    assert mask[lesion].all() and mask[liver].mean() > 0.95 and mask[bowel].mean() < 0.05
    # the original post-processing (no image) keeps the bowel joined to the liver
    assert liver_mask_3mm(probability)[bowel].mean() > 0.9


def test_nothing_is_dropped_without_a_confident_core():
    probability, image, *_ = _scene(np.random.default_rng(1))
    assert not liver_core.unlike_core(np.minimum(probability, 0.8), image).any()
