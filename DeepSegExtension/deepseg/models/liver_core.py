"""Bowel grown onto the predicted liver: thick regions the network is unsure of and whose intensity the liver's
confident core does not share.

When the top of a CT cuts the liver, the liver network still finds the liver (probability ~1), but it also
takes in colon and small bowel touching it, with probabilities of 0.6-0.8 (benchmarks/RESULTS.md: on the
TotalSegmentator example CT without its top 60 mm, 300 mL of bowel at a median 8 HU against 45 HU for the
liver).  The liver's own voxels the network is sure of (the core) give its intensity on this scan, so no
fixed value is assumed (contrast phase, scanner and the MR liver model differ).  A voxel is dropped only
when all three hold: the network is unsure of it, its intensity (``denoised``: the median of it and its face
neighbours, so that white noise does not hide bowel) lies outside the core's (median +- a few robust SDs), and
it belongs to a region of such voxels thick enough to survive erosion (the partial-volume rim of a liver, one or
two voxels of liver and fat, is kept) that lies mostly outside the convex hull of the rest of the liver (a
lesion, darker than the liver and often uncertain, lies inside the liver).

The same scan can show a cut liver in pieces: its lobes join above the cut (the example CT without its top 60 mm
holds its left lobe's tip as a separate 19 mL piece), and the network's unsure bridge between them may be
dropped as above (the same CT without its top 50 mm).  Taking the largest component alone loses those lobes;
``lobes_cut_by_top`` gives back every other piece that runs out of the top of the scan, as the liver does, and
has the core's intensity.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .liver_prep import below_scan_top, largest_component

CORE_PROBABILITY = 0.9  # voxels the network is at least this sure of are the liver's core, never dropped
SPREAD_SDS = 3.0  # intensities within the core's median +- this many robust SDs (1.4826 MAD) are the liver's
THICK_EROSIONS = 2  # a dropped region holds voxels surviving this many 18-connected erosions (>= 15 mm thick)
# a region lying mostly inside the convex hull of the rest of the liver is kept: lesions lie in the liver (a large
# LiTS tumour: 57-60 % inside), bowel grown below a cut liver lies outside it (0-3 %); bowel tucked under the liver
# inside its hull (56 %, the example CT without its top 39 mm) is therefore kept too (RESULTS.md)
INSIDE_HULL = 0.5
ENCLOSED = 0.5  # nor is a region whose rim lies mostly in the predicted liver (probability > 0.5): a lesion
MIN_CORE_VOXELS = 50  # fewer core voxels give no trustworthy intensity: nothing is dropped
_S18 = ndimage.generate_binary_structure(3, 2)
_S6 = ndimage.generate_binary_structure(3, 1)


def denoised(image: np.ndarray) -> np.ndarray:
    """The median of each voxel and its 6 face neighbours: the intensity evidence ``core_intensity``,
    ``unlike_core`` and ``lobes_cut_by_top`` read.  Under white noise (SD 25 HU) the core's spread grows past the
    bowel-liver contrast and too few bowel voxels pass the per-voxel test; the median cuts the noise while an
    edge between two tissues stays where it is (a mean blurs a lesion's edge into the liver, RESULTS.md)."""
    return ndimage.median_filter(image, footprint=_S6)


def core_intensity(probability: np.ndarray, image: np.ndarray) -> "tuple[float, float] | None":
    """Median intensity of the liver's confident core (the largest component of P > ``CORE_PROBABILITY``,
    eroded twice) and the spread around it taken as the liver's (``SPREAD_SDS`` robust SDs); None when the core
    holds fewer than ``MIN_CORE_VOXELS`` voxels."""
    core = largest_component(ndimage.binary_erosion(probability > CORE_PROBABILITY, _S18, iterations=2))
    if core.sum() < MIN_CORE_VOXELS:
        return None
    values = image[core]
    median = float(np.median(values))
    return median, SPREAD_SDS * 1.4826 * float(np.median(np.abs(values - median)))


def unlike_core(probability: np.ndarray, image: np.ndarray, window: "tuple[float, float] | None",
                blended: "np.ndarray | None" = None) -> np.ndarray:
    """Mask of the voxels to drop from the liver (see the module docstring), for a liver ``probability`` map,
    the network's input ``image`` (same grid, any intensity scale) and the core's intensity ``window``
    (``core_intensity`` of them; nothing is dropped without one).  Voxels ``blended`` with padding (a resampled
    field of view's edge: the liver there is darkened by it) are never dropped."""
    if window is None:
        return np.zeros(probability.shape, bool)
    median, spread = window
    unsure = (probability > 0.5) & (probability < CORE_PROBABILITY) & (np.abs(image - median) > spread)
    if blended is not None:
        unsure &= ~blended
    thick = ndimage.binary_propagation(ndimage.binary_erosion(unsure, _S18, iterations=THICK_EROSIONS), _S18,
                                       mask=unsure)
    if not thick.any():
        return thick
    liver = largest_component(ndimage.binary_erosion((probability > 0.5) & ~thick, _S18))  # as liver_mask_3mm, eroded
    regions, n = ndimage.label(thick, _S18)
    inside = _in_hull(np.argwhere(liver), np.argwhere(thick))
    share = ndimage.mean(inside, regions[thick], np.arange(1, n + 1))  # per region: its share inside the hull
    drop = np.zeros(probability.shape, bool)
    for i in np.flatnonzero(np.asarray(share) < INSIDE_HULL) + 1:
        region = regions == i
        rim = ndimage.binary_dilation(region, _S18) & ~region
        if (probability[rim] > 0.5).mean() < ENCLOSED:
            drop |= region
    return drop


def lobes_cut_by_top(parts: np.ndarray, liver: np.ndarray, image: np.ndarray, window: "tuple[float, float] | None",
                     top_slices: float, scan_top: "np.ndarray | None" = None) -> np.ndarray:
    """The components of ``parts`` (face-connected, as ``largest_component``) other than ``liver`` that belong to
    a liver cut by the top of the scan (axis 0 grows superior; ``scan_top`` per column, ``liver_prep.scan_top``,
    or the grid's top slice): only when ``liver`` reaches within ``top_slices`` of it, those that reach it too
    and whose median intensity in ``image`` lies within the core's ``window`` (``core_intensity``; nothing is
    kept without one).  Bowel the network joins to a cut liver has another intensity; a piece ending below the
    top cannot join the liver above the scan."""
    keep = np.zeros(parts.shape, bool)
    if window is None or not liver.any() or below_scan_top(liver, scan_top).min() > top_slices:
        return keep
    labels, n = ndimage.label(parts & ~liver)
    if n == 0:
        return keep
    index = np.arange(1, n + 1)
    pieces = labels > 0
    nearest = np.asarray(ndimage.minimum(below_scan_top(pieces, scan_top), labels[pieces], index))
    median = np.asarray(ndimage.median(image, labels, index))
    ids = index[(nearest <= top_slices) & (np.abs(median - window[0]) <= window[1])]
    return np.isin(labels, ids)


def _in_hull(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Whether each query point lies in the convex hull of ``points`` (all False when they span no volume)."""
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    try:
        hull = Delaunay(points[ConvexHull(points).vertices])
    except (QhullError, ValueError):
        return np.zeros(len(queries), bool)
    return hull.find_simplex(queries) >= 0
