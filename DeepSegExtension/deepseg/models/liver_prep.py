"""Pre-processing of ``pyliverlesionseg``: orientation, body crop, centred zoom (reimplemented).

The original reads images as arrays indexed ``[x, y, z]`` in LPS orientation (x towards the patient's
left, y posterior, z superior), crops the body, resamples with ``pymirc``'s ``zoom3d`` and feeds the
networks RAS-flipped arrays.  Facts reproduced here:

* ``zoom3d`` keeps the field-of-view *centre*: the new grid has ``ceil(n * zoom)`` voxels of size
  ``old / zoom`` centred on the old grid; up-sampling interpolates linearly, down-sampling averages the
  overlapped fraction of every old voxel (a box filter), with zeros beyond the border;
* CT body crop (``crop_ct_image``): bounding box of the largest eroded soft-tissue (> -150 HU) component,
  the liver dome found from the lung air profile, the box ending 70 mm above the dome (the network expects
  this framing: a box cut lower puts its liver too low), at most
  489 x 408 x 408 mm (x, y, z) -- trimmed from below in z, and in x/y around the box centre (the
  original trims around the centre of the abdominal air); the pelvic (hip) search of the original is
  replaced by the 408 mm limit (see ``crop_ct``); unlike the original, bowel gas is told apart from the
  lungs (``_lung_air``), and a scan without lungs keeps the top of its body and at most
  ``TOP_CUT_SPAN_MM`` below it (the original's box ends at the hip);
* unlike the original, constant-valued padding at a soft-tissue value is read as air (``padding_to_air``);
* MR body crop (``crop_mr_image``): the top 430 mm and the largest component above 1 % of the maximum.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
from scipy import ndimage, sparse

if TYPE_CHECKING:
    from ..volume import Volume

Box = tuple[slice, slice, slice]

MAX_SIZE_MM = (489.0, 408.0, 408.0)  # (x, y, z) limits of the original's crop
MIN_LUNG_ML = 10.0  # smallest air volume taken for a lung on each side of the body
MIN_WHOLE_LUNG_ML = 300.0  # an air space this large is a lung even when the field of view holds all of it
AIR_HU = -1000.0
MIN_TORSO_WIDTH_MM = 200.0  # narrower bodies (an adult head is < ~170 mm wide, a torso > ~250 mm) hold no liver
# A scan without lungs starts inside the liver (``liver_site``); its box keeps at most this much below the top of
# the body, as the original's box ends at the hip (its bone-profile search), about 250 mm below the dome
# (T10 to the iliac crest at L4).  A longer box, reaching into the pelvis, frames the cut liver higher in the
# network's centred patch than training did, and the network grows it down into the bowel.
TOP_CUT_SPAN_MM = 250.0


# --- orientation ---------------------------------------------------------------------------------------
def lps_orientation(direction: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """nibabel-style orientation ``[[lps_axis, flip], ...]`` of the i, j, k axes (closest canonical)."""
    from nibabel.orientations import io_orientation

    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction) @ np.diag(spacing)
    return io_orientation(affine)


def to_lps_xyz(array_kji: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Volume array ``[k, j, i]`` -> array ``[x, y, z]`` whose indices increase towards L, P, S."""
    arr = np.asarray(array_kji).transpose(2, 1, 0)  # [i, j, k]
    perm = [int(np.where(ornt[:, 0] == axis)[0][0]) for axis in range(3)]
    arr = arr.transpose(perm)
    flips = [axis for axis in range(3) if ornt[perm[axis], 1] < 0]
    return np.flip(arr, flips) if flips else arr


def from_lps_xyz(array_xyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Inverse of ``to_lps_xyz`` (extra leading axes, e.g. channels, are kept)."""
    lead = array_xyz.ndim - 3
    perm = [int(np.where(ornt[:, 0] == axis)[0][0]) for axis in range(3)]
    flips = [lead + axis for axis in range(3) if ornt[perm[axis], 1] < 0]
    arr = np.flip(array_xyz, flips) if flips else array_xyz
    inverse = np.argsort(perm)
    arr = arr.transpose(list(range(lead)) + [lead + int(a) for a in inverse])  # [i, j, k]
    return arr.transpose(list(range(lead)) + [lead + 2, lead + 1, lead])


def lps_volume(image: "Volume") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(array [x, y, z] float32, spacing (x, y, z), orientation)`` of ``image`` in LPS, from its direction
    matrix (never from its storage order)."""
    ornt = lps_orientation(image.direction, image.spacing)
    return to_lps_xyz(image.array, ornt).astype(np.float32), xyz_spacing(image.spacing, ornt), ornt


def axis_aligned(image: "Volume", finest: Sequence[float]) -> "Volume":
    """``image`` on a grid whose axes run along L, P and S (its closest canonical axes) and that holds its whole
    field of view, sampled by nearest neighbour: an oblique (tilted) grid shows the network the anatomy tilted,
    and it learnt axial scans.  Nearest neighbour keeps every voxel a scanned value: a linear resampling smooths
    the image and blends its edge with the fill, and the network's liver shrinks on a smoothed CT (benchmarks/
    accuracy.py's ``-resampled-twice`` cases).  The grid's spacing is the image's, or ``finest`` (``[x, y, z]`` mm) where that is finer -- the
    grid the image is zoomed to next -- so that the tilted voxels' shapes are drawn finely, not as a staircase of
    their own size.  Outside the field of view is the image's minimum, which ``padding`` finds.  ``image``
    itself when its axes are so close to L, P, S that no voxel centre of its field of view lies half a voxel off
    the aligned lattice (the resampling would only copy it)."""
    from ..io import resample_onto
    from ..volume import Volume

    ornt = lps_orientation(image.direction, image.spacing)
    axes = np.zeros((3, 3))
    axes[ornt[:, 0].astype(int), np.arange(3)] = ornt[:, 1]
    size = np.asarray(image.size_ijk, float) - 1
    corners = np.array(np.meshgrid(*[(0.0, n) for n in size], indexing="ij")).reshape(3, -1)
    spacing = np.asarray(image.spacing)
    index = np.linalg.solve(axes @ np.diag(spacing), image.ijk_to_lps()[:3, :3] @ corners)  # on the aligned lattice
    if np.abs(index - corners).max() < 0.5:
        return image
    lo, hi = index.min(axis=1), index.max(axis=1)
    fine = np.minimum(spacing, np.asarray(finest, float)[ornt[:, 0].astype(int)])
    shape_ijk = np.ceil((hi - lo + 1) * spacing / fine - 1e-6).astype(int)  # the box of the corner voxels
    origin = np.asarray(image.origin) + axes @ (spacing * (lo - 0.5) + fine / 2)
    grid = Volume(np.broadcast_to(np.float32(0), tuple(shape_ijk[::-1])), tuple(fine), tuple(origin), axes,
                  image.name, dict(image.meta))
    return resample_onto(image, grid, nearest=True, default=float(image.array.min()))


def xyz_spacing(spacing_ijk: Sequence[float], ornt: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    for axis_ijk, (lps_axis, _) in enumerate(ornt):
        out[int(lps_axis)] = spacing_ijk[axis_ijk]
    return out


# --- pymirc-style centred zoom -------------------------------------------------------------------------
def _zoom_matrix(n: int, zoom: float) -> sparse.csr_matrix:
    """Sparse ``(m, n)`` matrix of ``zoom3d`` along one axis (m = ceil(n * zoom))."""
    delta = 1.0 / zoom
    m = math.ceil(n / delta)
    rows, cols, vals = [], [], []
    if zoom > 1:  # linear interpolation at the centres of the small voxels, zero outside
        centre = delta * (np.arange(m) - 0.5 * m + 0.5) + 0.5 * n - 0.5
        left = np.floor(centre).astype(int)
        for col, w in ((left, left + 1 - centre), (left + 1, centre - left)):
            ok = (col >= 0) & (col < n)
            rows.append(np.arange(m)[ok]), cols.append(col[ok]), vals.append(w[ok])
    else:  # each small voxel spreads over the one or two big voxels it overlaps
        lo = zoom * (np.arange(n) - 0.5 * n) + 0.5 * m
        hi = zoom * (np.arange(n) + 1 - 0.5 * n) + 0.5 * m
        left = np.floor(lo).astype(int)
        right = np.ceil(hi).astype(int) - 1
        cut = np.ceil(lo)
        same = left == right
        rows += [left[same], left[~same], right[~same]]
        cols += [np.arange(n)[same], np.arange(n)[~same], np.arange(n)[~same]]
        vals += [np.full(same.sum(), zoom), (cut - lo)[~same], (hi - cut)[~same]]
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n))


def zoom3d(array: np.ndarray, zoom: Sequence[float]) -> np.ndarray:
    """Resample a 3D array by ``zoom`` per axis, keeping the grid centre (pymirc ``zoom3d``, cval 0)."""
    out = np.asarray(array, dtype=np.float32)
    for axis, z in enumerate(zoom):
        if z == 1:
            continue
        moved = np.moveaxis(out, axis, 0)
        flat = moved.reshape(moved.shape[0], -1)
        res = (_zoom_matrix(moved.shape[0], float(z)) @ flat).astype(np.float32)
        out = np.moveaxis(res.reshape((res.shape[0],) + moved.shape[1:]), 0, axis)
    return np.ascontiguousarray(out)


def unzoom_linear(array: np.ndarray, old_shape: Sequence[int], zoom: Sequence[float]) -> np.ndarray:
    """Linear interpolation of a ``zoom3d``-ed array back at the voxel centres of the ``old_shape`` grid
    (the exact inverse geometry; values at the outermost half voxel are extended)."""
    zoom = np.asarray(zoom, dtype=float)
    new_shape = np.asarray(array.shape)
    old = np.asarray(old_shape)
    # old voxel u sits at new coordinate (u - (n-1)/2) * zoom + (m-1)/2 (grid centres coincide)
    return ndimage.affine_transform(np.asarray(array, np.float32), zoom, offset=-(old - 1) / 2 * zoom + (new_shape - 1) / 2,
                                    output_shape=tuple(int(v) for v in old), order=1, mode="nearest")


# --- padding -------------------------------------------------------------------------------------------
def padding_to_air(vol: np.ndarray) -> np.ndarray:
    """A CT ``[x, y, z]`` (HU) with its constant-valued padding (``padding``) set to at most air (``AIR_HU``).

    Padding at a soft-tissue value (TotalSegmentator's head atlas is padded with 0 HU) is otherwise read as
    body: the torso gate then sees the whole field of view as a torso, and the network marks the padding around
    the head as liver.  Padding at or below air (-1024 HU outside a scanner's reconstruction circle, say) is
    left as it is.
    """
    pad = padding(vol, above=AIR_HU)
    if not pad.any():
        return vol
    out = vol.copy()
    out[pad] = AIR_HU
    return out


def padding(vol: np.ndarray, above: float = -np.inf) -> np.ndarray:
    """Mask of the constant-valued padding of an image ``[x, y, z]`` (of values above ``above`` only).

    Padding is a region of one single value that holds a corner of the axial field of view (left or right,
    front or back), as processed, registered, resampled or atlas images have around the body or beyond the
    scanned field of view.  Scanned tissue always carries noise, so no 3 x 3 x 3 neighbourhood inside a patient
    holds one value.  The mask holds the flat voxels of such a region and its rim of the same value.
    """
    mask = np.zeros(vol.shape, bool)
    for value in _corner_padding_values(vol, above):
        same = (vol == value).view(np.uint8)
        # flat voxels of this value (3 x 3 x 3 erosion, beyond the grid counting as the value: separable minima)
        labels, _ = ndimage.label(ndimage.minimum_filter(same, 3, mode="constant", cval=1))
        pad = np.isin(labels, np.setdiff1d(labels[[0, 0, -1, -1], [0, -1, 0, -1]], [0]))
        mask |= ndimage.maximum_filter(pad.view(np.uint8), 3).view(bool) & same.view(bool)  # with its rim
    return mask


def _corner_padding_values(vol: np.ndarray, above: float) -> np.ndarray:
    """Values above ``above`` held by flat voxels (one value in their 3 x 3 x 3 neighbourhood) at the corners of
    the axial field of view: the only candidates for ``padding`` (checked first, as it is cheap)."""
    values = []
    ends = (slice(0, 2), slice(None, -3, -1))  # the first two and the last two rows or columns, from the edge
    for x in ends:
        for y in ends:
            block = vol[x, y]
            flat = (ndimage.maximum_filter(block, 3) == ndimage.minimum_filter(block, 3))[0, 0]
            values.append(block[0, 0][flat & (block[0, 0] > above)])
    return np.unique(np.concatenate(values))


# --- body crops ----------------------------------------------------------------------------------------
def _box_erode(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary erosion by a ``size``^3 box (outside counts as background), by separable 1D minima."""
    return ndimage.minimum_filter(mask.astype(np.uint8), size=size, mode="constant", cval=0).astype(bool)


def _box_dilate(mask: np.ndarray, size: int) -> np.ndarray:
    return ndimage.maximum_filter(mask.astype(np.uint8), size=size, mode="constant", cval=0).astype(bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (``ndimage.label``'s face connectivity; the first on ties);
    all False when ``mask`` is."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _largest_component_box(mask: np.ndarray) -> Box:
    largest = largest_component(mask)
    if not largest.any():
        return tuple(slice(0, s) for s in mask.shape)  # type: ignore[return-value]
    return ndimage.find_objects(largest.astype(np.int8))[0]


def _lung_air(air_labels: np.ndarray, sizes: np.ndarray, order: np.ndarray, spacing: Sequence[float],
              body: Box) -> "np.ndarray | None":
    """Mask of the lung air among the internal air components, or None when the field of view holds no lungs.

    A lung is an air space that either runs out of the top of the field of view (the lungs continue above
    any scan that cuts them) or is as large as a whole lung; and the lungs lie on both sides of the body's
    mid-line.  Gas in the stomach and bowel fails one of these (it sits inside the abdomen, usually on one
    side), which is what misled the original's "second and third largest air volumes" rule on scans of the
    abdomen and pelvis: their bowel gas became the lungs, and the crop cut the liver off at the top.
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    top = air_labels.shape[2] - 1  # the top slice is forced to tissue, so air cut by the FOV ends just below it
    boxes = ndimage.find_objects(air_labels)
    lung_ids = [lab for lab in order[1:] if sizes[lab - 1] * voxel_ml >= MIN_LUNG_ML
                and (boxes[lab - 1][2].stop >= top or sizes[lab - 1] * voxel_ml >= MIN_WHOLE_LUNG_ML)]
    if not lung_ids:
        return None
    lungs = np.isin(air_labels, lung_ids)
    mid = (body[0].start + body[0].stop) // 2
    if min(lungs[:mid].sum(), lungs[mid:].sum()) * voxel_ml < MIN_LUNG_ML:
        return None  # air on one side only: not a pair of lungs
    return lungs


def body_box(vol: np.ndarray, tissue_th: float = -150) -> Box:
    """Bounding box of the largest eroded soft-tissue (> ``tissue_th`` HU) component of a CT ``[x, y, z]``."""
    return _largest_component_box(ndimage.binary_erosion(vol > tissue_th))


def lung_air(vol: np.ndarray, spacing: Sequence[float], body: Box, lung_th: float = -600) -> "np.ndarray | None":
    """Mask of the lungs (see ``_lung_air``) in a CT ``[x, y, z]`` LPS array (HU) whose body box is ``body``;
    None when the field of view holds no lungs."""
    inside = np.full(vol.shape, vol.min(), dtype=vol.dtype)
    inside[body] = vol[body]
    air = inside < lung_th
    air[:, :, -1] = False  # the top slice counts as tissue so lungs cut by the field of view stay inside
    air[:, :, :-1] = _box_dilate(_box_erode(air[:, :, :-1], 5), 5)
    padded = np.pad(air, ((3, 3), (3, 3), (0, 0)), constant_values=True)
    labels, n = ndimage.label(padded)
    labels = labels[3:-3, 3:-3, :]
    if n < 2:
        return None
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = np.argsort(sizes)[::-1] + 1  # labels by decreasing size; the first is the outside air
    return _lung_air(labels, sizes, order, spacing, body)


def _liver_dome_slice(lungs: np.ndarray, body: Box) -> int:
    """Lowest slice of the lungs (``lung_air``), from their z-profile and their lower ends."""
    profile = np.convolve(lungs.sum((0, 1)), np.ones(7), "same")
    high = np.where(profile > profile.min() + 0.5 * (profile.max() - profile.min()))[0]
    dome = int(high[0])
    gaps = np.where(np.diff(high) != 1)[0]
    if gaps.size:  # a second high run separated by a deep valley: the lungs are the upper run
        nxt = high[gaps[0] + 1]
        if np.any(profile[high[gaps[0]]:nxt] < profile.min() + 0.2 * (profile.max() - profile.min())):
            dome = int(nxt)
    mid = (body[0].start + body[0].stop) // 2
    lung_bottoms = [int(np.argmax(side.any((0, 1)))) for side in (lungs[:mid], lungs[mid:])]
    return max(dome, max(lung_bottoms))


def _limit(box: slice, spacing: float, max_mm: float) -> slice:
    """Shrink ``box`` symmetrically to at most ``max_mm``."""
    size = box.stop - box.start
    if size * spacing <= max_mm:
        return box
    cut = int(np.ceil((size * spacing - max_mm) / spacing / 2))
    return slice(box.start + cut, box.stop - cut)


class CTLandmarks(NamedTuple):
    """The body box and lung mask of a CT ``[x, y, z]`` LPS array: the body crop frames the liver with them,
    and ``liver_site`` checks the predicted liver against them (found once, by ``ct_landmarks``); and, in a scan
    without lungs (whose top cuts any liver), its constant-valued ``padding`` (``padding``): a tilted or resampled
    field of view is padded above its slanted top, which is then not the grid's top slice (``scan_top``)."""
    body: Box
    lungs: "np.ndarray | None"
    padding: "np.ndarray | None" = None

    def site(self) -> "CTSite":
        lung_top = None if self.lungs is None else int(np.flatnonzero(self.lungs.any((0, 1)))[-1])
        top = None if self.padding is None else scan_top(self.padding.transpose(2, 1, 0))
        return CTSite(self.body[2].stop, lung_top, top)


class CTSite(NamedTuple):
    """What ``liver_site`` needs of the landmarks (kept with a prepared input instead of the lung mask): the top
    slice of the body box, the highest slice holding lung air (None without lungs) and the highest scanned slice
    of each column, indexed ``[y, x]`` as ``below_scan_top`` reads it (``scan_top``; None, the grid's top slice,
    when no padding was looked for); z grows superior."""
    body_top: int
    lung_top: "int | None"
    scan_top: "np.ndarray | None" = None


def scan_top(outside: np.ndarray) -> np.ndarray:
    """The highest slice of each column of a grid (axis 0 grows superior) that lies in the scan, not ``outside``
    it (padding): the top of the field of view, which a tilted grid holds slanted; the grid's top slice where a
    column holds no scan."""
    inside = ~outside
    n = outside.shape[0]
    return np.where(inside.any(0), n - 1 - np.argmax(inside[::-1], axis=0), n - 1)


def mirror_above(image: np.ndarray, top: "np.ndarray | None", slices: int) -> np.ndarray:
    """``image`` (axis 0 grows superior) grown by ``slices`` at its top, each column mirrored about the top of the
    scan in it (``top`` from ``scan_top``; None: the grid's top slice, ``np.pad``'s symmetric mode): above a
    slanted top, the padding is replaced by the mirrored scan too."""
    if top is None:
        return np.pad(image, ((0, slices), (0, 0), (0, 0)), mode="symmetric")
    z = np.arange(image.shape[0] + slices)[:, None, None]
    source = np.clip(np.where(z <= top, z, 2 * top + 1 - z), 0, image.shape[0] - 1)
    return np.take_along_axis(image, np.broadcast_to(source, (z.shape[0], *image.shape[1:])), axis=0)


def below_scan_top(mask: np.ndarray, top: "np.ndarray | None") -> np.ndarray:
    """How far (slices) each voxel of ``mask`` (axis 0 grows superior; in ``np.nonzero`` order) lies below the
    top of the scan in its column: ``top`` from ``scan_top`` (negative above it, in padding), or the grid's top
    slice for every column when None."""
    z, y, x = np.nonzero(mask)
    return (mask.shape[0] - 1 if top is None else top[y, x]) - z


def ct_landmarks(vol: np.ndarray, spacing: Sequence[float], tissue_th: float = -150,
                 lung_th: float = -600) -> CTLandmarks:
    """The body box (soft tissue above ``tissue_th`` HU) and the lungs (air below ``lung_th`` HU) of a CT, and
    without lungs its padding."""
    body = body_box(vol, tissue_th)
    lungs = lung_air(vol, spacing, body, lung_th)
    return CTLandmarks(body, lungs, padding(vol) if lungs is None else None)


def crop_ct(vol: np.ndarray, spacing: Sequence[float], landmarks: "CTLandmarks | None" = None,
            tissue_th: float = -150, dome_margin_mm: float = 70.0) -> Box:
    """Body box of a CT ``[x, y, z]`` LPS array (HU), as ``crop_ct_image`` of pyliverlesionseg.

    Deviation: the original also searches the pelvis and starts the box 20 mm below it; here a box framed by
    the lungs keeps up to 408 mm below its top (the original's own limit), so more of the lower abdomen may
    stay.  Without lungs the scan starts inside the liver: the box runs from the top of the body (slabs of air
    above it are not scanned anatomy) down at most ``TOP_CUT_SPAN_MM``.
    """
    body, lungs, _ = landmarks or ct_landmarks(vol, spacing, tissue_th)
    if lungs is None:
        z_stop = min(vol.shape[2], body[2].stop + 1)  # the body box is eroded by one voxel
        z = slice(max(0, z_stop - int(round(TOP_CUT_SPAN_MM / spacing[2]))), z_stop)
    else:
        z = slice(0, max(1, min(vol.shape[2], _liver_dome_slice(lungs, body) + int(dome_margin_mm / spacing[2]))))
    inner = _largest_component_box(_box_erode(vol[body[0], body[1], z] > tissue_th, 5))
    x = slice(body[0].start + inner[0].start, body[0].start + inner[0].stop)
    y = slice(body[1].start + inner[1].start, body[1].start + inner[1].stop)
    return (_limit(x, spacing[0], MAX_SIZE_MM[0]), _limit(y, spacing[1], MAX_SIZE_MM[1]),
            _limit_top(z, spacing[2], MAX_SIZE_MM[2]))


def _limit_top(box: slice, spacing: float, max_mm: float) -> slice:
    """Keep at most ``max_mm`` at the top (superior end) of a z range."""
    size = box.stop - box.start
    if size * spacing <= max_mm:
        return box
    return slice(box.start + int(np.ceil((size * spacing - max_mm) / spacing)), box.stop)


def shows_torso(shape: Sequence[int], box: Box, spacing: Sequence[float]) -> bool:
    """Whether a body ``box`` (from ``crop_ct``/``crop_mr``) can hold a liver: the body is at least
    ``MIN_TORSO_WIDTH_MM`` wide left to right, or the field of view cuts it at the sides (a crop inside the
    torso).  The networks were trained on abdomens only; on a head they segment the brain as liver."""
    x = box[0]
    cut_by_fov = x.start <= 3 or x.stop >= shape[0] - 3  # the body boxes are eroded by up to 3 voxels
    return cut_by_fov or (x.stop - x.start) * spacing[0] >= MIN_TORSO_WIDTH_MM


def crop_mr(vol: np.ndarray, spacing: Sequence[float], tissue_ratio: float = 0.01,
            height_mm: float = 400.0, margin_mm: float = 30.0) -> Box:
    """Body box of an MR ``[x, y, z]`` LPS array (``crop_mr_image``; its y-profile refinement is not reproduced)."""
    z0 = max(0, vol.shape[2] - int(height_mm / spacing[2]) - int(margin_mm / spacing[2]))
    part = vol[:, :, z0:]
    box = _largest_component_box(_box_erode(part > tissue_ratio * part.max(), 5))
    return (_limit(box[0], spacing[0], MAX_SIZE_MM[0]), _limit(box[1], spacing[1], MAX_SIZE_MM[1]),
            _limit_top(slice(z0, vol.shape[2]), spacing[2], MAX_SIZE_MM[2]))


# --- intensities ---------------------------------------------------------------------------------------
def normalize_ct(vol: np.ndarray) -> np.ndarray:
    """HU window [-200, 200] mapped to [-0.5, 0.5] (``clip(v / 1000, -0.2, 0.2) * 2.5``)."""
    return (np.clip(np.asarray(vol, np.float32) / 1000.0, -0.2, 0.2) * 2.5).astype(np.float32)


def normalize_mr_liver(vol: np.ndarray) -> np.ndarray:
    """Liver stage MR: clip to [min, min + 0.8 range] and map to [-0.5, 0.5]."""
    lo, hi = float(vol.min()), float(vol.min() + 0.8 * (vol.max() - vol.min()))
    return ((np.clip(vol, lo, hi) - lo) / max(hi - lo, 1e-8) - 0.5).astype(np.float32)


def normalize_mr_lesion(vol: np.ndarray, liver: np.ndarray) -> np.ndarray:
    """Lesion stage MR: centre on the liver median, scale so the liver's min/max land within +-0.5."""
    values = vol[liver > 0]
    if values.size == 0:
        return np.zeros_like(vol, dtype=np.float32)
    med, lo, hi = float(np.median(values)), float(values.min()), float(values.max())
    ratio = min(0.5 / max(abs(lo - med), 1e-8), 0.5 / max(abs(hi - med), 1e-8))
    return ((vol - med) * ratio).astype(np.float32)
