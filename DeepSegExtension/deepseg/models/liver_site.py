"""Where a liver can be: its top touches the lungs, or the top of the field of view cuts it.

The liver lies directly under the right hemidiaphragm, and the lungs lie on the diaphragm.  So in a CT,
above the top of a liver there is either lung (the lung bases come down to the dome, and their recesses
reach below it) or the superior edge of the field of view: a scan that shows no lungs starts below the
lung bases, which lie below the dome, so it cuts a liver at its top.  A predicted "liver" whose top lies
well inside the field of view, with no lungs reaching down to it, has bowel, bladder or a skull above it:
it is not a liver.  The liver network, trained on abdomens, marks the bladder and gluteal muscles of a
pelvis-only CT as liver with a probability of ~0.93, so no confidence threshold can tell them apart; this
anatomy can.  "Superior" comes from the direction matrix (``liver_prep.lps_volume``), distances are in mm,
and the top of the field of view is the highest slice that holds the body: slabs of padding or air above
it (a scan placed in a larger grid) are not part of the scan.
"""
from __future__ import annotations

import numpy as np

from ..volume import Volume
from . import liver_prep as lp

# A liver cut by the top of the scan is predicted up to within this of the top edge: about twice the
# boundary error (HD95 5-8 mm) measured on the large-field-of-view CTs.
FOV_TOP_MM = 15.0
# The lowest lung air lies at most this far above the top of the liver: the diaphragm (~5 mm) plus the
# boundary errors of the liver and of the lung mask (eroded by 2 voxels); the lung recesses usually reach
# below the dome, so the gap is negative on real livers.
LUNG_GAP_MM = 30.0


def liver_top_is_covered(liver: np.ndarray, image: Volume) -> bool:
    """Whether a predicted liver mask (``image``'s grid, ``[k, j, i]``) has lungs or the superior edge of the
    field of view just above its top (see the module docstring); True for an empty mask."""
    vol, spacing, ornt = lp.lps_volume(image)
    mask = lp.to_lps_xyz(np.asarray(liver) > 0, ornt)
    levels = np.flatnonzero(mask.any((0, 1)))  # z grows towards superior
    if levels.size == 0:
        return True
    top = int(levels[-1])
    vol = lp.padding_to_air(vol)
    body = lp.body_box(vol)
    if (body[2].stop - top) * spacing[2] <= FOV_TOP_MM:  # the box is eroded by one voxel: stop = its top slice
        return True
    lungs = lp.lung_air(vol, spacing, body)
    if lungs is None:
        return False
    lung_bottom = int(np.flatnonzero(lungs.any((0, 1)))[0])
    return bool((lung_bottom - top) * spacing[2] <= LUNG_GAP_MM)
