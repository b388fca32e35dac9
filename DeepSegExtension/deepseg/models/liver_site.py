"""Where a liver can be: lungs above its top, or the top of the field of view cutting it.

The liver lies directly under the right hemidiaphragm, and the lungs lie on the diaphragm.  So in a CT,
above the top of a liver there is either lung or the superior edge of the field of view: a scan that shows
no lungs starts below the lung bases, which come down below the liver's dome, so it cuts a liver at its
top.  A predicted "liver" whose top lies well inside the field of view, with tissue above it and no lungs
anywhere above, is not a liver: the liver network, trained on abdomens, marks the bladder and gluteal
muscles of a pelvis-only CT as liver with a probability of ~0.93, so no confidence threshold can tell
them apart; this anatomy can.  Any lung above is enough (pleural fluid can lift the lung bases off the
diaphragm).  "Superior" comes from the direction matrix (``liver_prep.lps_volume``), distances are in mm,
and the top of the field of view is the highest slice that holds the body: slabs of padding or air above
it (a scan placed in a larger grid) are not part of the scan; nor is the padding above the slanted top of a tilted
(resampled) field of view, whose top is taken column by column (``liver_prep.scan_top``).
"""
from __future__ import annotations

import numpy as np

from ..volume import Volume
from . import liver_prep as lp

# A liver cut by the top of the scan is predicted up to within this of the top edge: about twice the
# boundary error (HD95 5-8 mm) measured on the large-field-of-view CTs.
FOV_TOP_MM = 15.0


def liver_top_is_covered(liver: np.ndarray, image: Volume, site: "lp.CTSite | None" = None) -> bool:
    """Whether a predicted liver mask (``image``'s grid, ``[k, j, i]``) has the superior edge of the field of
    view just above its top, or lungs anywhere above it (see the module docstring); True for an empty mask.
    ``site`` is what the body crop found on ``image`` (with its padding read as air); found here if not given."""
    ornt = lp.lps_orientation(image.direction, image.spacing)
    spacing = lp.xyz_spacing(image.spacing, ornt)
    mask = lp.to_lps_xyz(np.asarray(liver) > 0, ornt)
    levels = np.flatnonzero(mask.any((0, 1)))  # z grows towards superior
    if levels.size == 0:
        return True
    top = int(levels[-1])
    site = site or lp.ct_landmarks(lp.padding_to_air(lp.lps_volume(image)[0]), spacing).site()
    if lp.below_scan_top(mask.transpose(2, 1, 0), site.scan_top).min() * spacing[2] <= FOV_TOP_MM:
        return True  # the body cannot end higher than the scan (the grid's top, or a tilted grid's slanted edge)
    if (site.body_top - top) * spacing[2] <= FOV_TOP_MM:  # the box is eroded by one voxel: stop = its top slice
        return True
    return site.lung_top is not None and site.lung_top > top
