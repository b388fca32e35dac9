"""Robustness of the shipped real models: Dice of each model's result on a transformed input against
its result on the untransformed input.

Transforms (each returns the new image and a function that brings a label map on the new grid back
onto the original grid, plus the original voxels both grids cover):

* ``flip``: storage order reversed along i, j and k, with a compensating direction and origin -- a pure
  relabelling of the same physical image, so a geometry-exact pipeline gives the same voxels;
* ``permute``: storage axes permuted (i, j, k) -> (j, k, i) (a 90-degree "oblique" whose resampling
  is exact), also a pure relabelling;
* ``oblique``: the image resampled (linear) onto a grid rotated 20 degrees about the slice axis and
  10 degrees about the row axis, large enough to hold the whole original field of view; labels come
  back by nearest neighbour;
* ``slices-1.5mm`` / ``slices-5mm``: the k axis resampled to 1.5 / 5 mm slices (same extent);
* ``crop``: 10 % of the field of view cut from every side, compared inside the crop;
* ``offset``: intensities + 5 % of the 1st-99th percentile range.

    python benchmarks/robustness.py                    # every model
    python benchmarks/robustness.py --only model5      # models whose name contains "model5"
    python benchmarks/robustness.py --no-write ...     # print only
    python benchmarks/robustness.py --only model18cls --transforms "" --oblique-angles 90/0,0.5/0.25  # by angle
    python benchmarks/robustness.py --only nnunet --transforms flip --tta   # with mirroring TTA

Results are printed and appended to ``benchmarks/RESULTS.md`` under ``## Robustness``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "Testing" / "fixtures")]
SHARED = Path(os.environ.get("DEEPSEG_SHARED", REPO.parent / "shared"))

Back = Callable[[np.ndarray], np.ndarray]  # label array on the transformed grid -> original grid


@dataclass
class Transformed:
    image: "object"                  # deepseg Volume
    back: Back
    region: Optional[np.ndarray] = None  # original voxels the transformed grid covers (None: all)
    exact: bool = False              # a pure relabelling: the result must be voxel-identical
    there: Optional[Back] = None     # label array on the original grid -> the transformed grid (nearest);
    #                                  None: the grids' voxels correspond one to one (no interpolation)


# --- transforms -------------------------------------------------------------------------------------------
def flip_storage(vol, axes_ijk: Sequence[int] = (0, 1, 2)) -> Transformed:
    """Reverse the storage order along ``axes_ijk``; direction and origin compensate (same physical image)."""
    array_axes = tuple(2 - a for a in axes_ijk)
    direction = vol.direction.copy()
    last = np.zeros(3)
    for a in axes_ijk:
        direction[:, a] *= -1
        last[a] = vol.size_ijk[a] - 1
    origin = (vol.ijk_to_lps() @ np.append(last, 1.0))[:3]
    image = type(vol)(np.ascontiguousarray(np.flip(vol.array, array_axes)), vol.spacing, tuple(origin), direction,
                      vol.name, dict(vol.meta))
    return Transformed(image, lambda lab: np.flip(lab, array_axes), exact=True)


def permute_storage(vol, order_ijk: Sequence[int] = (1, 2, 0)) -> Transformed:
    """New storage axis m = old axis ``order_ijk[m]`` (direction columns and spacing follow): same physical image."""
    order = list(order_ijk)
    transpose = [2 - order[2 - d] for d in range(3)]  # array dims (k', j', i') <- old array dims
    image = type(vol)(np.ascontiguousarray(vol.array.transpose(transpose)), tuple(vol.spacing[o] for o in order),
                      vol.origin, vol.direction[:, order], vol.name, dict(vol.meta))
    inverse = list(np.argsort(transpose))
    return Transformed(image, lambda lab: lab.transpose(inverse), exact=True)


def _rotation(degrees_about_k: float, degrees_about_j: float, direction: np.ndarray) -> np.ndarray:
    a, b = np.deg2rad(degrees_about_k), np.deg2rad(degrees_about_j)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return direction @ rz @ ry @ direction.T  # rotation about the image's own k and j axes (LPS)


def _onto(vol, grid, *, fill: float):
    from deepseg.io import resample_onto

    return resample_onto(vol, grid, default=fill).array


def _back_nearest(grid, original) -> Back:
    from deepseg.io import resample_onto

    return lambda lab: resample_onto(grid.with_array(np.ascontiguousarray(lab, np.uint16)), original,
                                     nearest=True).array


def _there_nearest(original, grid) -> Back:
    from deepseg.io import resample_onto

    return lambda lab: resample_onto(original.with_array(np.ascontiguousarray(lab, np.uint16)), grid,
                                     nearest=True).array


def _covered(grid, original) -> np.ndarray:
    from deepseg.io import resample_onto

    return resample_onto(grid.with_array(np.ones(grid.shape, np.uint8)), original, nearest=True).array > 0


def oblique(vol, about_k: float = 20.0, about_j: float = 10.0) -> Transformed:
    """The same physical image resampled onto a grid rotated about its centre (same spacing), grown to
    hold the whole original field of view (the corners are filled with the image minimum)."""
    from deepseg.volume import Volume

    rot = _rotation(about_k, about_j, vol.direction)
    direction = rot @ vol.direction
    corners = np.array([[i, j, k, 1.0] for i in (0, vol.size_ijk[0] - 1) for j in (0, vol.size_ijk[1] - 1)
                        for k in (0, vol.size_ijk[2] - 1)])
    points = (vol.ijk_to_lps() @ corners.T)[:3]               # LPS corners of the original
    local = np.linalg.inv(direction @ np.diag(vol.spacing)) @ points  # in the rotated grid's index units
    lo, hi = local.min(axis=1), local.max(axis=1)
    size_ijk = np.ceil(hi - lo - 1e-3).astype(int) + 1  # no extra voxel from rounding noise (90 degrees: same size)
    origin = direction @ np.diag(vol.spacing) @ lo
    grid = Volume(np.zeros(tuple(size_ijk[::-1]), np.float32), vol.spacing, tuple(origin), direction, vol.name,
                  dict(vol.meta))
    image = grid.with_array(_onto(vol, grid, fill=float(vol.array.min())))
    return Transformed(image, _back_nearest(grid, vol), _covered(grid, vol), there=_there_nearest(vol, grid))


def slice_spacing(vol, mm: float) -> Transformed:
    """k axis resampled to ``mm`` slices over the same extent (linear)."""
    from deepseg.inference.preprocess import resampled_grid

    n = max(2, int(round(vol.shape[0] * vol.spacing[2] / mm)))
    grid = resampled_grid(vol, (n, vol.shape[1], vol.shape[2]))
    grid = grid.with_array(np.zeros(grid.shape, np.float32))
    image = grid.with_array(_onto(vol, grid, fill=float(vol.array.min())))
    return Transformed(image, _back_nearest(grid, vol), _covered(grid, vol), there=_there_nearest(vol, grid))


def crop(vol, fraction: float = 0.1) -> Transformed:
    """``fraction`` of the field of view removed from every side of every axis."""
    cut = [int(round(n * fraction)) for n in vol.shape]
    box = tuple(slice(c, n - c) for c, n in zip(cut, vol.shape))
    origin = (vol.ijk_to_lps() @ np.append(np.asarray(cut[::-1], float), 1.0))[:3]
    image = type(vol)(np.ascontiguousarray(vol.array[box]), vol.spacing, tuple(origin), vol.direction.copy(),
                      vol.name, dict(vol.meta))
    region = np.zeros(vol.shape, bool)
    region[box] = True

    def back(lab):
        out = np.zeros(vol.shape, lab.dtype)
        out[box] = lab
        return out
    return Transformed(image, back, region)


def offset(vol, fraction: float = 0.05) -> Transformed:
    """Intensities shifted by ``fraction`` of the 1st-99th percentile range."""
    lo, hi = np.percentile(vol.array, (1, 99))
    shifted = vol.array.astype(np.float32) + np.float32(fraction * (hi - lo))
    return Transformed(vol.with_array(shifted), lambda lab: lab)


TRANSFORMS: dict[str, Callable] = {
    "flip": flip_storage,
    "permute": permute_storage,
    "oblique": oblique,
    "slices-1.5mm": lambda v: slice_spacing(v, 1.5),
    "slices-5mm": lambda v: slice_spacing(v, 5.0),
    "crop": crop,
    "offset": offset,
}


# --- comparison ---------------------------------------------------------------------------------------------
def agreement(test: np.ndarray, reference: np.ndarray, region: Optional[np.ndarray] = None) -> dict:
    """Per-label Dice of ``test`` against ``reference`` (labels present in the reference, inside ``region``)."""
    from deepseg.measure.compare import dice

    if region is not None:
        test, reference = np.where(region, test, 0), np.where(region, reference, 0)
    values = [int(v) for v in np.unique(reference) if v != 0]
    scores = {v: dice(test == v, reference == v) for v in values}
    return {"mean": float(np.mean(list(scores.values()))) if scores else float("nan"),
            "min": min(scores.values()) if scores else float("nan"), "labels": len(scores),
            "differing": int(np.count_nonzero(test != reference)), "per_label": scores}


def transform_channels(name: str, channels: Sequence) -> Transformed:
    """Apply transform ``name`` to every channel of a case alike (they share one grid)."""
    parts = [TRANSFORMS[name](c) for c in channels]
    return Transformed([p.image for p in parts], parts[0].back, parts[0].region, parts[0].exact, parts[0].there)


def robustness(segment_labels: Callable[[list], np.ndarray], channels: Sequence,
               transforms: Sequence[str] = tuple(TRANSFORMS),
               report: Optional[Callable[[str, dict], None]] = None) -> dict:
    """``segment_labels(channels) -> label array on their grid``; returns transform -> ``agreement``, plus for
    resampled grids (``there``) what interpolation alone costs: ``round_trip``, the untransformed result sent
    to the transformed grid and back by nearest neighbour (the labels' round trip); ``image_round_trip``, the
    result on the transformed image resampled back onto the original grid (linear: the image's round trip,
    same field of view and grid as the original, so only the interpolated intensities differ); and
    ``on_grid``, the transformed result against the untransformed one resampled onto the transformed grid."""
    reference = segment_labels(list(channels))
    out = {}
    for name in transforms:
        t = transform_channels(name, channels)
        t0 = time.perf_counter()
        raw = segment_labels(t.image)
        out[name] = {**agreement(t.back(raw), reference, t.region), "exact": t.exact,
                     "seconds": time.perf_counter() - t0}
        if t.there is not None:
            there = t.there(reference)
            out[name]["round_trip"] = agreement(t.back(there), reference, t.region)
            out[name]["on_grid"] = agreement(raw, there)
            returned = [c.with_array(_onto(ti, c, fill=float(c.array.min()))) for ti, c in zip(t.image, channels)]
            out[name]["image_round_trip"] = agreement(segment_labels(returned), reference, t.region)
        if report:
            report(name, out[name])
    return out


# --- models and cases ---------------------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    model: Callable[[], object]
    case: Callable[[], object]
    note: str = ""


def _ct():
    from deepseg.io import read_volume

    return read_volume(SHARED / "data" / "totalseg" / "example_ct_sm.nii.gz")


NORM_CROP_START = (80, 28, 64)  # [k, j, i]: a block at the top right of the brain, with background above and beside


def norm_crop(size: int = 96, shared: Path = SHARED, start: Sequence[int] = NORM_CROP_START):
    """A ``size``^3 block of niivue's norm.mgz that includes the brain's edge (MeshNets scale intensities
    by the image's range and need background in view; a block from inside the brain is out of distribution)."""
    from deepseg.io import read_volume

    vol = read_volume(Path(shared) / "data" / "niivue" / "norm.mgz")
    box = tuple(slice(s, s + size) for s in start)
    origin = (vol.ijk_to_lps() @ np.append(np.asarray(start[::-1], float), 1.0))[:3]
    return type(vol)(np.ascontiguousarray(vol.array[box]), vol.spacing, tuple(origin), vol.direction.copy(),
                     "norm_crop")


def _liver():
    from accuracy import pyliverlesionseg_folder

    from deepseg.models.loaders import load_model

    return load_model(pyliverlesionseg_folder(False))


def _brainchop(name: str):
    def load():
        from deepseg.models.loaders import load_model

        return load_model(SHARED / "models" / "brainchop" / name)
    return load


def _nnunet():
    from make_nnunet_model import PLANS_NAME, TRAINER, ensure_nnunet_fixture

    from deepseg.models.nnunet import load_nnunet_folder

    return load_nnunet_folder(ensure_nnunet_fixture(REPO / "Testing" / "_fixtures") / f"{TRAINER}__{PLANS_NAME}__3d_fullres")


def _nnunet_case():
    from make_nnunet_model import make_case

    from deepseg.io import volume_from_sitk

    ct, t1, _ = make_case(1234, size_ijk=(56, 28, 56))
    return [volume_from_sitk(ct, "ct"), volume_from_sitk(t1, "t1")]


RUNS = [
    Run("pyliverlesionseg-liver / totalseg-ct", _liver, _ct, "TotalSegmentator example CT 122x101x30, 3 mm"),
    *[Run(f"brainchop-{m} / norm-crop", _brainchop(m), norm_crop, "niivue norm.mgz, 96^3 block [80:176, 28:124, 64:160] (k, j, i) at the top right of the brain, 1 mm")
      for m in ("model5_gw_ae", "model18cls", "mindgrab", "model30chan50cls")],
    Run("nnunet-fixture / synthetic", _nnunet, _nnunet_case,
        "genuine nnU-Net v2 test fixture (2 channels, CT + T1) on a generated 56x28x56 case"),
]


def model_segmenter(model, tta: bool = False) -> Callable[[list], np.ndarray]:
    """Label array of ``model`` for a list of channels (on the first channel's grid)."""
    from deepseg.inference.pipeline import segment

    return lambda channels: segment(model, channels, device="cpu", tta=tta).labels.array


def add_oblique_angles(specs: str) -> list[str]:
    """Register an ``oblique-K/J`` transform per ``K/J`` in ``specs`` (comma-separated; degrees about k / j)."""
    names = []
    for spec in (s.strip() for s in specs.split(",") if s.strip()):
        about_k, about_j = (float(x) for x in spec.split("/"))
        TRANSFORMS[f"oblique-{spec}"] = lambda v, a=about_k, b=about_j: oblique(v, a, b)
        names.append(f"oblique-{spec}")
    return names


def run_model(run: Run, transforms: Sequence[str], tta: bool = False) -> list[str]:
    model, case = run.model(), run.case()
    rows = []

    def report(name, r):
        exact = " (relabelling)" if r["exact"] else ""
        trip = (f"{r['round_trip']['mean']:.4f} ({r['round_trip']['differing']}) | {r['image_round_trip']['mean']:.4f} "
                f"({r['image_round_trip']['differing']}) | {r['on_grid']['mean']:.4f}"
                if "round_trip" in r else "= (no resampling) | = | =")
        rows.append(f"| {run.name} | {name}{exact} | {r['mean']:.4f} | {r['min']:.4f} | {r['labels']} | "
                    f"{r['differing']} | {trip} | {r['seconds']:.0f} |")
        print(rows[-1], flush=True)

    robustness(model_segmenter(model, tta), case if isinstance(case, list) else [case], transforms, report)
    return rows


HEADER = ["| run | transform | mean Dice vs untransformed | min Dice (structure) | structures | differing voxels | "
          "labels' round trip: untransformed result there and back, mean Dice (differing voxels) | "
          "image's round trip: transformed image back on the original grid, segmented, mean Dice (differing voxels) | "
          "mean Dice on the transformed grid | time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]


def main(argv=None) -> int:
    from accuracy import append_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="runs whose name contains this text")
    ap.add_argument("--transforms", default=",".join(TRANSFORMS), help="comma-separated: " + ", ".join(TRANSFORMS))
    ap.add_argument("--oblique-angles", default="",
                    help="more oblique transforms, e.g. '90/0,0.5/0.25' (degrees about k / about j)")
    ap.add_argument("--tta", action="store_true", help="segment with mirroring test-time augmentation")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch RESULTS.md")
    args = ap.parse_args(argv)
    transforms = [t for t in args.transforms.split(",") if t] + add_oblique_angles(args.oblique_angles)
    rows, notes = list(HEADER), []
    for run in (r for r in RUNS if args.only in r.name):
        try:
            rows += run_model(run, transforms, args.tta)
        except Exception as exc:  # a model or case that is not available here is reported, not hidden
            rows.append(f"| {run.name} | (not run: {type(exc).__name__}: {' '.join(str(exc).split())[:150]}) |||||||||")
            print(rows[-1], flush=True)
        notes.append(f"{run.name}: {run.note}")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/robustness.py", *(argv or sys.argv[1:])])
    block = "\n".join([f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", f"Command: `{command}`", "",
                       *rows, "", *[f"- {n}" for n in notes], ""])
    print(block)
    if not args.no_write:
        append_results(block, section="## Robustness")
    return 0


if __name__ == "__main__":
    sys.exit(main())
