"""Accuracy of the shipped pretrained models on real cases: per-structure Dice, HD95 and run time.

Every benchmark is a ``Run`` (a model and a case, plus which label values of the prediction and of the
reference make up each compared structure); ``RUNS`` lists them all, and other model families add
their own runs to it.  Results are printed and appended to ``benchmarks/RESULTS.md`` under
``## Accuracy`` together with the command that produced them.

    python benchmarks/accuracy.py                 # every run
    python benchmarks/accuracy.py --only liver    # runs whose name contains "liver"
    python benchmarks/accuracy.py --only ct-full,head-ct  # runs whose name contains either
    python benchmarks/accuracy.py --only 'totalseg-ct$'   # runs whose name ends with "totalseg-ct"

Models come from PyPI (fetched and converted into ``benchmarks/_work``); cases from ``../shared``
and from PyPI packages.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("DEEPSEG_SHARED", REPO.parent / "shared"))  # as Testing/conftest.py
WORK = HERE / "_work"
RESULTS = HERE / "RESULTS.md"

# LiTS case 117 as shipped in liver-ct-segmentation-package 1.6.0 (data/img_117.mrc): 128^3, cropped to
# the liver and resampled, voxel size not stored.  Read as [k, j, i] its axes run anterior->posterior,
# right->left and inferior->superior (seen on the images: spine, kidney, bowel); the spacing is assumed.
LITS117_SPACING_MM = 1.5
LITS117_DIRECTION = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])  # columns: i -> S, j -> L, k -> P (LPS)


@dataclass
class Case:
    name: str
    load: Callable[[], tuple]  # -> (image Volume, reference label Volume on the image grid)
    note: str = ""


@dataclass
class Run:
    name: str
    load_model: Callable[[], object]  # -> SegmentationModel
    case: Case
    structures: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # name -> (predicted values, reference values)
    in_reference_liver: bool = False  # the cascade's lesion network alone, inside the reference liver (label 2)


# --- cases ------------------------------------------------------------------------------------------------
def _totalseg(image: str, labels: str) -> Callable[[], tuple]:
    def load():
        from deepseg.io import read_volume
        from deepseg.measure.grid import resample_labels

        img = read_volume(SHARED / "data" / "totalseg" / image)
        ref = read_volume(SHARED / "data" / "totalseg" / labels)
        return img, ref if ref.same_grid(img) else resample_labels(ref, img)
    return load


def lits117_volumes(wheel_dir: Path = WORK / "wheels") -> tuple:
    """LiTS 117 image (HU) and labels (1 liver, 2 tumour) as Volumes with the assumed geometry."""
    import mrcfile

    from deepseg.models.pypi_source import fetch_wheel_member
    from deepseg.volume import Volume

    arrays = []
    for kind in ("img", "lab"):
        member = f"liver_ct_segmentation_package/data/{kind}_117.mrc"
        path = fetch_wheel_member("liver-ct-segmentation-package", "1.6.0", member, Path(wheel_dir) / f"{kind}_117.mrc",
                                  wheel_dir=wheel_dir)
        with mrcfile.open(path, permissive=True) as f:
            arrays.append(np.array(f.data))
    geometry = dict(spacing=(LITS117_SPACING_MM,) * 3, direction=LITS117_DIRECTION)
    return (Volume(arrays[0].astype(np.float32), name="lits117", **geometry),
            Volume(arrays[1].astype(np.uint16), name="lits117_labels", **geometry))


# TotalSegmentator's own test scans, shipped only in its source distribution on PyPI (tests/reference_files;
# Apache-2.0); their label maps are TotalSegmentator output (a silver standard, not manual contours).
TOTALSEG = ("totalsegmentator", "2.18.0")


def totalseg_file(member: str, wheel_dir: Path = WORK / "wheels", sdist: bool = True) -> Path:
    """One file of the totalsegmentator distribution on PyPI (``member`` below the sdist's top folder, or
    inside the wheel with ``sdist=False``), fetched once into ``wheel_dir``."""
    from deepseg.models.pypi_source import fetch_wheel_member

    return fetch_wheel_member(*TOTALSEG, member, Path(wheel_dir) / "totalseg" / member.replace("/", "__"),
                              wheel_dir=wheel_dir, sdist=sdist)


def totalseg_pypi_volumes(image: str, labels: Optional[str] = None, wheel_dir: Path = WORK / "wheels",
                          sdist: bool = True) -> tuple:
    """A TotalSegmentator test scan from PyPI and its label map ("total" ids), or an empty label map when
    ``labels`` is None (a scan without the structure)."""
    from deepseg.io import read_volume

    image_vol = read_volume(totalseg_file(image, wheel_dir, sdist))
    if labels is None:
        return image_vol, image_vol.with_array(np.zeros(image_vol.shape, np.uint16))
    return image_vol, read_volume(totalseg_file(labels, wheel_dir, sdist))


def semi_automatic_liver(hu: np.ndarray, seed: tuple, radius: int = 5, width_sd: float = 2.0) -> np.ndarray:
    """A liver reference made without any network, for scans that ship no liver label: 3x3x3 median-filtered
    HU inside mean +- ``width_sd`` SD of a seed box placed in the liver by eye, opened with a ball of
    ``radius`` voxels (cuts the thin links to diaphragm, chest wall and stomach), the component holding the
    seed grown back into the window by ``radius`` steps, axial holes (vessels) closed and filled, largest
    component.  A developer-made "bronze" reference: it leaks a little at the heart and the chest wall."""
    from scipy import ndimage

    smooth = ndimage.median_filter(np.asarray(hu, np.float32), 3)
    mean, sd = float(smooth[seed].mean()), float(smooth[seed].std())
    window = np.abs(smooth - mean) < width_sd * sd
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), radius)
    parts, _ = ndimage.label(ndimage.binary_opening(window, ball))
    ids = np.unique(parts[seed])
    liver = np.isin(parts, ids[ids > 0])
    for _ in range(radius):
        liver = ndimage.binary_dilation(liver) & window
    for k in range(liver.shape[0]):
        liver[k] = ndimage.binary_fill_holes(ndimage.binary_closing(liver[k], iterations=3))
    parts, n = ndimage.label(ndimage.binary_opening(liver))
    return parts == (np.argmax(np.bincount(parts.ravel())[1:]) + 1) if n else parts > 0


# seed box [k, j, i] inside the right liver lobe of aorta_report/example_ct.nii.gz (chosen by eye)
AORTA_CT_LIVER_SEED = (slice(20, 30), slice(60, 90), slice(40, 70))


def totalseg_aorta_ct(wheel_dir: Path = WORK / "wheels") -> tuple:
    """TotalSegmentator's aorta-report CT with the semi-automatic liver reference (label 5, "total" id)."""
    image, _ = totalseg_pypi_volumes("tests/reference_files/aorta_report/example_ct.nii.gz", wheel_dir=wheel_dir)
    liver = semi_automatic_liver(image.array, AORTA_CT_LIVER_SEED)
    return image, image.with_array((5 * liver).astype(np.uint16))


def _inverted(load: Callable[[], tuple]) -> Callable[[], tuple]:
    """A case with its image intensities mirrored (max - value): a diagnostic, not a supported input."""
    def inverted():
        image, reference = load()
        values = image.array.astype(np.float32)
        return image.with_array(values.max() - values), reference
    return inverted


def _cut(volumes: tuple, lo_ijk: list[int], hi_ijk: list[int]) -> tuple:
    """The voxels ``lo_ijk`` to ``hi_ijk`` (exclusive) of each volume, geometry kept."""
    from deepseg.volume import Volume

    origin = tuple((volumes[0].ijk_to_lps() @ np.array([*lo_ijk, 1.0]))[:3])
    box = tuple(slice(lo_ijk[a], hi_ijk[a]) for a in (2, 1, 0))  # arrays are [k, j, i]
    return tuple(Volume(v.array[box], v.spacing, origin, v.direction, name=v.name) for v in volumes)


def _slab(load: Callable[[], tuple], k0: int, k1: int) -> Callable[[], tuple]:
    """Slices ``k0:k1`` of a case (image and reference, geometry kept): a smaller field of view of a real scan."""
    def slab():
        image, reference = load()
        return _cut((image, reference), [0, 0, k0], [*image.size_ijk[:2], k1])
    return slab


def _without(load: Callable[[], tuple], mm: float, side: str = "S") -> Callable[[], tuple]:
    """A case without ``mm`` of its field of view at the patient's ``side`` (one of "LPSRAI": "S" the top,
    "I" the bottom, "R"/"L" the patient's right/left), the storage axis and its sense found from the direction
    matrix."""
    lps_axis, toward_plus = ("LPS".index(side), True) if side in "LPS" else ("RAI".index(side), False)

    def cut():
        from deepseg.models.liver_prep import lps_orientation

        image, reference = load()
        ornt = lps_orientation(image.direction, image.spacing)
        axis = int(np.flatnonzero(ornt[:, 0] == lps_axis)[0])  # the storage axis (i, j or k) along that side
        lo, hi = [0, 0, 0], list(image.size_ijk)
        n = int(round(mm / image.spacing[axis]))
        if (ornt[axis, 1] > 0) == toward_plus:
            hi[axis] -= n
        else:
            lo[axis] = n
        return _cut((image, reference), lo, hi)
    return cut


def _without_top(load: Callable[[], tuple], mm: float) -> Callable[[], tuple]:
    """A case without the top ``mm`` of its field of view (the superior end)."""
    return _without(load, mm, "S")


def _resliced(load: Callable[[], tuple], mm: float) -> Callable[[], tuple]:
    """A case whose k axis is resampled to ``mm`` slices over the same extent (robustness.slice_spacing: linear
    for the image, nearest for the reference): the scan reconstructed at another slice spacing."""
    def load_resliced():
        import robustness

        image, reference = load()
        moved = robustness.slice_spacing(image, mm)
        return moved.image, moved.image.with_array(moved.there(reference.array).astype(np.uint16))
    return load_resliced


def _oblique(load: Callable[[], tuple]) -> Callable[[], tuple]:
    """A case resampled onto a grid rotated 20 degrees about k and 10 about j (robustness.oblique: linear for the
    image, corners filled with its minimum; nearest for the reference): an oblique (tilted) reconstruction."""
    def load_oblique():
        import robustness

        image, reference = load()
        moved = robustness.oblique(image)
        return moved.image, moved.image.with_array(moved.there(reference.array).astype(np.uint16))
    return load_oblique


def _resampled_twice(load: Callable[[], tuple]) -> Callable[[], tuple]:
    """A case resampled linearly onto the ``_oblique`` grid and back onto its own (fill: the image minimum): the
    same grid and anatomy, smoothed by two linear interpolations and with its edge blended with the fill, as a
    registered or twice-resampled CT is.  The reference is the original's."""
    def load_twice():
        import robustness
        from deepseg.io import resample_onto

        image, reference = load()
        moved = robustness.oblique(image).image
        back = resample_onto(moved, image, default=float(moved.array.min()))
        return image.with_array(back.array.astype(image.array.dtype, copy=False)), reference
    return load_twice


def _noisy(load: Callable[[], tuple], sd_hu: float, seed: int = 0) -> Callable[[], tuple]:
    """A case with white Gaussian noise of ``sd_hu`` added (fixed seed): a lower-dose scan of the same patient."""
    def load_noisy():
        image, reference = load()
        noise = np.random.default_rng(seed).normal(0.0, sd_hu, image.shape).astype(np.float32)
        return image.with_array(image.array.astype(np.float32) + noise), reference
    return load_noisy


def _air_above(load: Callable[[], tuple], mm: float) -> Callable[[], tuple]:
    """A case placed in a grid reaching ``mm`` higher, filled with air (-1000 HU; reference 0): the same scan."""
    def padded():
        from deepseg.models.liver_prep import lps_orientation
        from deepseg.volume import Volume

        image, reference = load()
        ornt = lps_orientation(image.direction, image.spacing)
        axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # the storage axis (i, j or k) along inferior-superior
        n = int(round(mm / image.spacing[axis]))
        widths = [(0, 0)] * 3
        widths[2 - axis] = (0, n) if ornt[axis, 1] > 0 else (n, 0)  # arrays are [k, j, i]
        shift = np.zeros(3)
        shift[axis] = 0 if ornt[axis, 1] > 0 else -n
        origin = tuple((image.ijk_to_lps() @ np.array([*shift, 1.0]))[:3])
        return tuple(Volume(np.pad(v.array, widths, constant_values=fill), v.spacing, origin, v.direction, name=v.name)
                     for v, fill in ((image, -1000), (reference, 0)))
    return padded


def _restored(load: Callable[[], tuple], transform: str) -> Callable[[], tuple]:
    """A case stored in another order (robustness.flip_storage / permute_storage): the same physical image."""
    def load_transformed():
        import robustness

        return tuple(getattr(robustness, transform)(v).image for v in load())
    return load_transformed


def _no_structure(path: Path) -> Callable[[], tuple]:
    """A ../shared scan that holds no liver, with an empty reference."""
    def load():
        from deepseg.io import read_volume

        image = read_volume(path)
        return image, image.with_array(np.zeros(image.shape, np.uint16))
    return load


CASES = {
    "totalseg-ct": Case("totalseg-ct", _totalseg("example_ct_sm.nii.gz", "example_seg.nii.gz"),
                        "TotalSegmentator example CT, 3 mm; reference = TotalSegmentator output (silver standard)"),
    "totalseg-ct-dicom": Case("totalseg-ct-dicom", _totalseg("example_ct_dicom_uids", "example_seg_dicom.nii.gz"),
                              "20-slice DICOM series, 0.98 x 0.98 x 2 mm; reference = TotalSegmentator output"),
    "totalseg-mr": Case("totalseg-mr", _totalseg("example_mr_sm.nii.gz", "example_seg_mr.nii.gz"),
                        "TotalSegmentator example MR, 3 mm; reference = TotalSegmentator MR output (silver standard)"),
    "totalseg-ct-full": Case(
        "totalseg-ct-full", lambda: totalseg_pypi_volumes("tests/reference_files/example_ct.nii.gz",
                                                          "tests/reference_files/example_seg_fast_force_split.nii.gz"),
        "TotalSegmentator example CT, whole field of view (abdomen to pelvis, 122 x 101 x 112 at 3 mm; the liver "
        "is cut by the top of the scan), from the totalsegmentator 2.18.0 sdist on PyPI; reference = TotalSegmentator "
        "--fast output shipped with it (silver standard)"),
    "totalseg-aorta-ct": Case(
        "totalseg-aorta-ct", totalseg_aorta_ct,
        "TotalSegmentator aorta-report CT angiography (neck to upper abdomen, 233 x 167 x 191 at 1.5 mm; the liver "
        "is cut by the bottom of the scan), from the totalsegmentator 2.18.0 sdist on PyPI; it ships no liver label, "
        "so the reference is semi-automatic (accuracy.semi_automatic_liver: HU window from a seed, opening, "
        "reconstruction; no network) -- a bronze standard that leaks slightly into heart and chest wall"),
    "totalseg-ct-pelvis": Case(
        "totalseg-ct-pelvis", _slab(lambda: CASES["totalseg-ct-full"].load(), 0, 60),
        "the lowest 60 slices (180 mm, pelvis and lower abdomen) of totalseg-ct-full, which hold no liver "
        "(the reference liver starts at slice 69)"),
    "totalseg-ct-below-liver": Case(
        "totalseg-ct-below-liver", _slab(lambda: CASES["totalseg-ct-full"].load(), 0, 67),
        "the lowest 67 slices (201 mm) of totalseg-ct-full, ending 6 mm below the reference liver (slice 69): "
        "the abdomen under the liver, cut by the top of the scan"),
    "totalseg-ct-pelvis-flipped": Case(
        "totalseg-ct-pelvis-flipped", _restored(lambda: CASES["totalseg-ct-pelvis"].load(), "flip_storage"),
        "totalseg-ct-pelvis stored in reverse order along i, j and k (direction and origin compensate)"),
    "totalseg-ct-full-top-cut": Case(
        "totalseg-ct-full-top-cut", _without_top(lambda: CASES["totalseg-ct-full"].load(), 20.0),
        "totalseg-ct-full without the top 21 mm of its field of view (the liver cut lower by the top of the scan)"),
    **{f"totalseg-ct-full-top-cut-{mm}": Case(
        f"totalseg-ct-full-top-cut-{mm}", _without_top(lambda: CASES["totalseg-ct-full"].load(), mm),
        f"totalseg-ct-full without the top {3 * round(mm / 3)} mm of its field of view (the scan starts lower in the "
        "liver)") for mm in (40, 60)},
    "totalseg-ct-full-top-cut-air-above": Case(
        "totalseg-ct-full-top-cut-air-above", _air_above(lambda: CASES["totalseg-ct-full-top-cut"].load(), 60.0),
        "totalseg-ct-full-top-cut in a grid reaching 60 mm higher, filled with air (-1000 HU): the same scan"),
    **{f"totalseg-aorta-ct-top-cut-{mm}": Case(
        f"totalseg-aorta-ct-top-cut-{mm}", _without_top(totalseg_aorta_ct, mm),
        f"totalseg-aorta-ct without the top {1.5 * round(mm / 1.5):g} mm of its field of view (lungs still in view)")
        for mm in (40, 60)},
    "totalseg-aorta-ct-permuted": Case(
        "totalseg-aorta-ct-permuted", _restored(totalseg_aorta_ct, "permute_storage"),
        "totalseg-aorta-ct stored with permuted axes (i, j, k) -> (j, k, i): the same physical image"),
    "totalseg-aorta-ct-top-cut": Case(
        "totalseg-aorta-ct-top-cut", _without_top(totalseg_aorta_ct, 20.0),
        "totalseg-aorta-ct without the top 21 mm of its field of view (lungs still in view)"),
    "totalseg-aorta-ct-no-lungs": Case(
        "totalseg-aorta-ct-no-lungs", _slab(totalseg_aorta_ct, 0, 12),
        "the lowest 12 slices (18 mm) of totalseg-aorta-ct, below its lung bases but for 1.7 mL of the tips of "
        "the posterior recesses (in which the lung detection finds no lungs): the liver cut by the top of the scan"),
    "totalseg-aorta-chest": Case(
        "totalseg-aorta-chest", _slab(lambda: CASES["totalseg-aorta-ct"].load(), 80, 191),
        "slices 80-190 (167 mm, chest and neck) of totalseg-aorta-ct, above the liver (which ends at slice 58)"),
    "totalseg-head-ct": Case(
        "totalseg-head-ct", lambda: totalseg_pypi_volumes("totalsegmentator/resources/ct_brain_atlas_1mm.nii.gz",
                                                          sdist=False),
        "TotalSegmentator's head CT atlas (202 x 202 x 179 at 1 mm, totalsegmentator 2.18.0 wheel): no liver"),
    "brain1-mr": Case("brain1-mr", _no_structure(SHARED / "data" / "pyradiomics" / "brain1_image.nrrd"),
                      "pyradiomics brain1 MR (256 x 256 x 25, 0.78 x 0.78 x 6.5 mm): no liver"),
    "niivue-norm-mr": Case("niivue-norm-mr", _no_structure(SHARED / "data" / "niivue" / "norm.mgz"),
                           "niivue norm.mgz brain MR (256^3 at 1 mm): no liver"),
    "totalseg-mr-inverted": Case(
        "totalseg-mr-inverted", _inverted(_totalseg("example_mr_sm.nii.gz", "example_seg_mr.nii.gz")),
        "the TotalSegmentator example MR with inverted intensities (max - value), so fat is dark and the liver "
        "brighter than muscle: a diagnostic of the contrast the MR network expects, not a supported input"),
    **{f"totalseg-ct-full-top-cut-{mm}": Case(
        f"totalseg-ct-full-top-cut-{mm}", _without_top(lambda: CASES["totalseg-ct-full"].load(), mm),
        f"totalseg-ct-full without the top {3 * round(mm / 3)} mm of its field of view (the scan starts lower in the "
        "liver)") for mm in (30, 50, 75)},
    **{f"totalseg-ct-full-slices-{mm:g}mm": Case(
        f"totalseg-ct-full-slices-{mm:g}mm", _resliced(lambda: CASES["totalseg-ct-full"].load(), mm),
        f"totalseg-ct-full reconstructed at {mm:g} mm slices (k axis resampled linearly over the same extent; "
        "reference nearest)") for mm in (1.5, 5.0)},
    "totalseg-ct-full-flipped": Case(
        "totalseg-ct-full-flipped", _restored(lambda: CASES["totalseg-ct-full"].load(), "flip_storage"),
        "totalseg-ct-full stored in reverse order along i, j and k (direction and origin compensate)"),
    "totalseg-ct-full-permuted": Case(
        "totalseg-ct-full-permuted", _restored(lambda: CASES["totalseg-ct-full"].load(), "permute_storage"),
        "totalseg-ct-full stored with permuted axes (i, j, k) -> (j, k, i): the same physical image"),
    "totalseg-ct-full-oblique": Case(
        "totalseg-ct-full-oblique", _oblique(lambda: CASES["totalseg-ct-full"].load()),
        "totalseg-ct-full resampled onto a grid rotated 20 degrees about k and 10 about j (an oblique reconstruction)"),
    "totalseg-ct-full-top-cut-40-oblique": Case(
        "totalseg-ct-full-top-cut-40-oblique", _oblique(_without_top(lambda: CASES["totalseg-ct-full"].load(), 40.0)),
        "totalseg-ct-full-top-cut-40 resampled onto a grid rotated 20 degrees about k and 10 about j"),
    **{f"{name}-resampled-twice": Case(
        f"{name}-resampled-twice", _resampled_twice(lambda name=name: CASES[name].load()),
        f"{name} resampled linearly onto a grid rotated 20 degrees about k and 10 about j and back onto its own: "
        "smoothed twice, its edge blended with the fill (a diagnostic of smoothing)")
        for name in ("totalseg-ct-full", "totalseg-ct-full-top-cut-40")},
    "totalseg-ct-full-narrow-fov": Case(
        "totalseg-ct-full-narrow-fov", _without(_without(lambda: CASES["totalseg-ct-full"].load(), 30.0, "R"), 30.0, "L"),
        "totalseg-ct-full reconstructed with a 306 mm field of view (30 mm less on the patient's right and left; "
        "the body, already cut at both sides, more so)"),
    "totalseg-ct-full-right-cut": Case(
        "totalseg-ct-full-right-cut", _without(lambda: CASES["totalseg-ct-full"].load(), 60.0, "R"),
        "totalseg-ct-full without 60 mm on the patient's right (an off-centre patient: the field of view cuts the "
        "liver's lateral edge)"),
    "totalseg-ct-full-bottom-cut": Case(
        "totalseg-ct-full-bottom-cut", _without(lambda: CASES["totalseg-ct-full"].load(), 150.0, "I"),
        "totalseg-ct-full without its lowest 150 mm (the pelvis): an upper-abdomen scan, 186 mm, no lungs"),
    "totalseg-ct-full-noisy": Case(
        "totalseg-ct-full-noisy", _noisy(lambda: CASES["totalseg-ct-full"].load(), 25.0),
        "totalseg-ct-full with white Gaussian noise of SD 25 HU added (seed 0): a lower-dose scan"),
    "totalseg-ct-full-top-cut-40-noisy": Case(
        "totalseg-ct-full-top-cut-40-noisy", _noisy(_without_top(lambda: CASES["totalseg-ct-full"].load(), 40.0), 25.0),
        "totalseg-ct-full-top-cut-40 with white Gaussian noise of SD 25 HU added (seed 0)"),
    "totalseg-ct-full-top-cut-40-flipped": Case(
        "totalseg-ct-full-top-cut-40-flipped", _restored(_without_top(lambda: CASES["totalseg-ct-full"].load(), 40.0), "flip_storage"),
        "totalseg-ct-full-top-cut-40 stored in reverse order along i, j and k"),
    "totalseg-ct-full-top-cut-40-slices-5mm": Case(
        "totalseg-ct-full-top-cut-40-slices-5mm", _resliced(_without_top(lambda: CASES["totalseg-ct-full"].load(), 40.0), 5.0),
        "totalseg-ct-full-top-cut-40 reconstructed at 5 mm slices"),
    **{f"totalseg-aorta-ct-bottom-cut-{mm}": Case(
        f"totalseg-aorta-ct-bottom-cut-{mm}", _without(totalseg_aorta_ct, mm, "I"),
        f"totalseg-aorta-ct without its lowest {mm} mm (the scan ends higher in the liver; lungs in view)")
        for mm in (15, 30)},
    **{f"totalseg-aorta-ct-lowest-{mm}": Case(
        f"totalseg-aorta-ct-lowest-{mm}", _without(totalseg_aorta_ct, 286.5 - mm, "S"),
        f"the lowest {mm} mm of totalseg-aorta-ct, whose liver top is 87 mm above its bottom: a scan of the upper "
        "abdomen starting inside the liver (60), at its dome (90) or 33 mm above it in the lung bases (120)")
        for mm in (60, 90, 120)},
    "totalseg-aorta-ct-slices-5mm": Case(
        "totalseg-aorta-ct-slices-5mm", _resliced(totalseg_aorta_ct, 5.0),
        "totalseg-aorta-ct reconstructed at 5 mm slices (k axis resampled linearly; reference nearest)"),
    "totalseg-aorta-ct-flipped": Case(
        "totalseg-aorta-ct-flipped", _restored(totalseg_aorta_ct, "flip_storage"),
        "totalseg-aorta-ct stored in reverse order along i, j and k"),
    "totalseg-aorta-ct-oblique": Case(
        "totalseg-aorta-ct-oblique", _oblique(totalseg_aorta_ct),
        "totalseg-aorta-ct resampled onto a grid rotated 20 degrees about k and 10 about j (lungs in view)"),
    "totalseg-aorta-ct-narrow-fov": Case(
        "totalseg-aorta-ct-narrow-fov", _without(_without(totalseg_aorta_ct, 30.0, "R"), 30.0, "L"),
        "totalseg-aorta-ct with 30 mm less field of view on the patient's right and left"),
    "lits117-top-cut": Case(
        "lits117-top-cut", _without_top(lambda: CASES["lits117"].load(), 20.0),
        "lits117 without the top 19.5 mm (20 mm asked, 13 slices of 1.5 mm; its superior end is the i axis): the liver cut by the top"),
    **{f"lits117-top-cut-{mm}": Case(
        f"lits117-top-cut-{mm}", _without_top(lambda: CASES["lits117"].load(), mm),
        f"lits117 without the top {1.5 * round(mm / 1.5):g} mm: the liver cut by the top") for mm in (40, 60)},
    "lits117-oblique": Case(
        "lits117-oblique", _oblique(lambda: CASES["lits117"].load()),
        "lits117 resampled onto a grid rotated 20 degrees about k and 10 about j (an oblique reconstruction)"),
    "lits117": Case("lits117", lits117_volumes, f"LiTS case 117 (128^3, liver crop), assumed {LITS117_SPACING_MM} mm "
                                         "isotropic; manual reference (1 liver, 2 tumour)"),
}


# --- models -----------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def pyliverlesionseg_folder(lesions: bool, modality: str = "CT") -> Path:
    """The pyliverlesionseg models fetched from PyPI and converted once into benchmarks/_work."""
    from deepseg.models.liver_convert import LESION_H5, LIVER_H5, convert_keras_h5
    from deepseg.models.pypi_source import fetch_wheel_member

    def fetch(member):
        return fetch_wheel_member("pyliverlesionseg", "0.3", member, WORK / Path(member).name,
                                  python_version="3.6", wheel_dir=WORK / "wheels")

    name = f"pyliverlesionseg-liver{'-lesion' if lesions else ''}-{modality.lower()}"
    return convert_keras_h5(fetch(LIVER_H5), WORK / name, lesion_h5=fetch(LESION_H5) if lesions else None,
                            modality=modality)


def _liver_model(lesions: bool, modality: str = "CT") -> Callable[[], object]:
    def load():
        from deepseg.models.loaders import load_model

        return load_model(pyliverlesionseg_folder(lesions, modality))
    return load


LIVER = {"liver": ((1, 2), (5,))}
NO_LIVER = {"liver (none in the scan)": ((1, 2), ())}


# the large-FOV CTs in other fields of view, spacings, storage orders and noise (issue 12: a held-out scan)
LARGE_FOV_VARIANTS = (
    "totalseg-ct-full-top-cut-30", "totalseg-ct-full-top-cut-50", "totalseg-ct-full-top-cut-75",
    "totalseg-ct-full-slices-1.5mm", "totalseg-ct-full-slices-5mm", "totalseg-ct-full-flipped",
    "totalseg-ct-full-permuted", "totalseg-ct-full-oblique", "totalseg-ct-full-top-cut-40-oblique",
    "totalseg-ct-full-narrow-fov", "totalseg-ct-full-right-cut",
    "totalseg-ct-full-bottom-cut", "totalseg-ct-full-noisy", "totalseg-ct-full-top-cut-40-noisy",
    "totalseg-ct-full-top-cut-40-flipped", "totalseg-ct-full-top-cut-40-slices-5mm",
    "totalseg-aorta-ct-bottom-cut-15", "totalseg-aorta-ct-bottom-cut-30", "totalseg-aorta-ct-lowest-60",
    "totalseg-aorta-ct-lowest-90", "totalseg-aorta-ct-lowest-120", "totalseg-aorta-ct-slices-5mm",
    "totalseg-aorta-ct-flipped", "totalseg-aorta-ct-narrow-fov", "totalseg-aorta-ct-oblique")


def _ct_liver(case: str, structures: dict = LIVER) -> Run:
    """The CT liver model on ``case``."""
    return Run(f"pyliverlesionseg-liver / {case}", _liver_model(False), CASES[case], structures)


RUNS: list[Run] = [
    *(_ct_liver(case) for case in ("totalseg-ct", "totalseg-ct-full", "totalseg-aorta-ct")),
    *(_ct_liver(case, NO_LIVER)
      for case in ("totalseg-ct-pelvis", "totalseg-ct-below-liver", "totalseg-ct-pelvis-flipped")),
    *(_ct_liver(case) for case in ("totalseg-ct-full-top-cut", "totalseg-aorta-ct-permuted",
                                   "totalseg-aorta-ct-top-cut", "totalseg-aorta-ct-no-lungs")),
    *(_ct_liver(case, NO_LIVER) for case in ("totalseg-aorta-chest", "totalseg-head-ct")),
    Run("pyliverlesionseg-liver-mr / brain1-mr", _liver_model(False, "MR"), CASES["brain1-mr"], NO_LIVER),
    Run("pyliverlesionseg-liver-mr / niivue-norm-mr", _liver_model(False, "MR"), CASES["niivue-norm-mr"], NO_LIVER),
    _ct_liver("totalseg-ct-dicom"),
    Run("pyliverlesionseg-liver-mr / totalseg-mr", _liver_model(False, "MR"), CASES["totalseg-mr"], LIVER),
    Run("pyliverlesionseg-liver-mr / totalseg-mr-inverted", _liver_model(False, "MR"), CASES["totalseg-mr-inverted"],
        LIVER),
    *(Run(f"pyliverlesionseg-liver-lesion / {case}", _liver_model(True), CASES[case],
          {"liver (incl. lesions)": ((1, 2), (1, 2)), "liver lesion": ((2,), (2,))})
      for case in ("lits117", "lits117-oblique")),
    *(Run(f"pyliverlesionseg-lesion in the reference liver / {case}", _liver_model(True), CASES[case],
          {"liver lesion": ((2,), (2,))}, in_reference_liver=True) for case in ("lits117", "lits117-oblique")),
    *(_ct_liver(case, {"liver (incl. lesions)": ((1,), (1, 2))})
      for case in ("lits117-top-cut", "lits117-top-cut-40", "lits117-top-cut-60")),
    *(_ct_liver(case) for case in ("totalseg-ct-full-top-cut-40", "totalseg-ct-full-top-cut-60",
                                   "totalseg-ct-full-top-cut-air-above", "totalseg-aorta-ct-top-cut-40",
                                   "totalseg-aorta-ct-top-cut-60")),
    *(_ct_liver(case) for case in LARGE_FOV_VARIANTS),
    *(_ct_liver(f"{case}-resampled-twice") for case in ("totalseg-ct-full", "totalseg-ct-full-top-cut-40")),
]


# --- brainchop MeshNets (../shared/models/brainchop) on FreeSurfer's norm.mgz --------------------------------
NIIVUE_NOTE = ("niivue demo norm.mgz (T1, skull-stripped, 256^3 1 mm); reference = FreeSurfer aparc.a2009s+aseg "
               "recoded to each model's labels (deepseg.models.meshnet.freesurfer_reference: left/right merged, "
               "cortical parcels = cortex; mindgrab vs all labelled voxels)")


def brainchop_run(name: str) -> list[Run]:
    """One run of a brainchop model on norm.mgz (none when ../shared is absent)."""
    folder = SHARED / "models" / "brainchop" / name
    if not folder.is_dir():
        return []
    from deepseg.models.meshnet import KNOWN, freesurfer_reference, labels_from_colormap

    labels = labels_from_colormap(folder / KNOWN.get(name, {}).get("colormap", "colormap.json"))

    def load_case():
        from deepseg.io import read_volume

        image = read_volume(SHARED / "data" / "niivue" / "norm.mgz")
        aseg = read_volume(SHARED / "data" / "niivue" / "aparc.a2009s+aseg.mgz")
        return image, aseg.with_array(freesurfer_reference(aseg.array, labels))

    def load_model():
        from deepseg.models.loaders import load_model as load

        return load(folder)

    case = Case(f"niivue-norm/{name}", load_case, NIIVUE_NOTE)
    return [Run(f"brainchop-{name} / niivue-norm", load_model, case,
                {lab.name: ((lab.value,), (lab.value,)) for lab in labels})]


BRAINCHOP_MODELS = ("model18cls", "mindgrab", "model5_gw_ae")
RUNS += [run for name in BRAINCHOP_MODELS for run in brainchop_run(name)]


# --- running and reporting ------------------------------------------------------------------------------
def run_one(run: Run) -> list[dict]:
    from deepseg.inference.pipeline import segment
    from deepseg.measure.compare import compare_masks

    image, reference = run.case.load()
    model = run.load_model()
    t0 = time.perf_counter()
    if run.in_reference_liver:
        labels = np.where(model.segment_lesions(image, np.isin(reference.array, (1, 2))) > 0.5, 2, 0)
    else:
        labels = segment(model, [image]).labels.array
    seconds = time.perf_counter() - t0
    rows = []
    for structure, (pred_values, ref_values) in run.structures.items():
        m = compare_masks(np.isin(labels, pred_values), np.isin(reference.array, ref_values),
                          image.spacing)
        rows.append({"run": run.name, "structure": structure, "dice": m["dice"], "hd95_mm": m.get("hd95_mm"),
                     "volume_mL": m["volume_test_mL"], "reference_mL": m["volume_reference_mL"],
                     "seconds": seconds})
    return rows


def markdown(rows: list[dict], command: str, notes: list[str]) -> str:
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", f"Command: `{command}`", "",
             "| run | structure | Dice | HD95 (mm) | volume (mL) | reference (mL) | time (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        hd = "-" if r["hd95_mm"] is None else f"{r['hd95_mm']:.1f}"
        lines.append(f"| {r['run']} | {r['structure']} | {r['dice']:.3f} | {hd} | {r['volume_mL']:.1f} | "
                     f"{r['reference_mL']:.1f} | {r['seconds']:.0f} |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes] + [""])


def append_results(block: str, path: Path = RESULTS, section: str = "## Accuracy") -> None:
    """Insert ``block`` at the end of ``section`` (created at the end of the file when missing)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    if section not in lines:
        lines += ["", section]
    start = lines.index(section)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines[end:end] = [""] + block.rstrip("\n").split("\n") + ([""] if end < len(lines) else [])
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="run only the runs whose name contains this text "
                                                    "(several texts separated by commas: any of them; a text ending in $ "
                                                    "must end the name)")
    parser.add_argument("--no-write", action="store_true", help="print results without touching RESULTS.md")
    args = parser.parse_args(argv)
    runs = [r for r in RUNS if any(r.name.endswith(text[:-1]) if text.endswith("$") else text in r.name
                                   for text in args.only.split(","))]
    if not SHARED.exists():
        print(f"note: {SHARED} not found; runs on ../shared cases are skipped", file=sys.stderr)
    rows, notes = [], []
    for run in runs:
        print(f"running {run.name} ...", file=sys.stderr, flush=True)
        try:
            new = run_one(run)
        except FileNotFoundError as exc:
            print(f"skipped {run.name}: {exc}", file=sys.stderr)
            continue
        rows += new
        for r in new:
            print(f"{r['run']:50s} {r['structure']:24s} Dice {r['dice']:.3f}  HD95 {r['hd95_mm']}  "
                  f"{r['volume_mL']:.1f} mL  {r['seconds']:.0f} s", flush=True)
        if run.case.note and f"{run.case.name}: {run.case.note}" not in notes:
            notes.append(f"{run.case.name}: {run.case.note}")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/accuracy.py", *(argv or sys.argv[1:])])
    if rows and not args.no_write:
        append_results(markdown(rows, command, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
