"""``deepseg demo``: segment the liver and liver lesions of a real CT case, end to end.

With nothing but DeepSeg installed, the first run fetches the pyliverlesionseg model (Apache-2.0)
and one LiTS CT case with its reference labels from the Python package index (it says what and how
big first), segments the case, and writes into the output folder:

* ``<case>_ct.nrrd``           the input CT (open it in Slicer together with the segmentation);
* ``<case>.seg.nrrd``           the segmentation, with names, colours and SNOMED CT terminology;
* ``<case>_labels.nii.gz``      the label map;
* ``<case>_measurements.csv``   per-segment voxel count, volume (mL) and shape measures;

and prints each segment's volume and its Dice against the reference.  Later runs use the local
model store and need no network.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..models.card import LabelInfo
from ..models.download import human_size
from ..models.store import ModelStore
from ..progress import Progress
from ..volume import Volume
from .common import add_progress_option, emit, progress_callback

DEMO_MODEL = "pyliverlesionseg-liver-lesion-ct"
DEMO_SAMPLE = "lits-117"


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="segment a real liver CT case (fetches model and case once)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, default=Path("deepseg-demo"), help="output folder (default: ./deepseg-demo)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def read_sample_image(path: Path, sample: dict, name: str) -> Volume:
    """An MRC volume of a catalog sample (array ``[k, j, i]``) with the geometry the catalog states
    (MRC files of the sample store no voxel size)."""
    import mrcfile

    with mrcfile.open(path, permissive=True) as mrc:
        array = np.array(mrc.data)
    return Volume(array, spacing=tuple(sample["spacing"]), origin=tuple(sample.get("origin", (0.0, 0.0, 0.0))),
                  direction=np.reshape(sample.get("direction", np.eye(3).ravel()), (3, 3)), name=name)


def reference_labels(sample: dict, model_labels: list[LabelInfo]) -> list[LabelInfo]:
    """The sample's reference values described with the model's labels of the same name (so the
    comparison pairs them by SNOMED CT code)."""
    by_name = {lab.name.lower(): lab for lab in model_labels}
    return [replace(by_name[name.lower()], value=int(value)) for value, name in sample["reference_labels"].items()]


def _say(args, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def run(args) -> int:
    from ..inference.pipeline import segment
    from ..io import write_volume
    from ..measure import measure_segmentation, write_csv
    from ..measure.compare import compare_segmentations

    store = ModelStore()
    entry = store.catalog.get(DEMO_MODEL)
    sample = store.catalog.sample(DEMO_SAMPLE)
    progress = Progress(progress_callback(args.progress), args.cancel)

    _say(args, f"DeepSeg demo: {entry.title} on {sample['title']}.")
    needed = []
    if not store.installed(entry.id):
        needed += [("model", what, size) for what, size in entry.download_plan()]
    if not store.installed(sample["id"], "samples"):
        wheel = sample["source"].get("wheel", {})
        needed.append(("sample case", f"{sample['source']['requirement']} from the Python package index",
                       wheel.get("size")))
    if needed:
        _say(args, "First run: downloading once into " + str(store.home) + " (set DEEPSEG_HOME to change):")
        for kind, what, size in needed:
            _say(args, f"  {kind}: {what} ({human_size(size)})")
    else:
        _say(args, f"Using the model and sample case already in {store.home} (no network needed).")
    store.fetch(entry.id, progress=progress)
    case = store.fetch_sample(sample["id"], progress=progress)

    image = read_sample_image(case.path / sample["image"], sample, f"{sample['id']}_ct")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = sample["id"]
    write_volume(image, out / f"{stem}_ct.nrrd")
    result = segment(entry.id, [image], output=out / f"{stem}.seg.nrrd", labelmap=out / f"{stem}_labels.nii.gz",
                     device=args.device, overwrite=True, progress_callback=progress.callback, cancel=args.cancel)
    rows, spec = measure_segmentation(result.labels, result.label_info, image=image, modality="CT")
    write_csv(rows, spec, out / f"{stem}_measurements.csv")

    reference = read_sample_image(case.path / sample["reference"], sample, f"{stem}_reference")
    reference = reference.with_array(reference.array.astype(np.uint16))
    comparison, _ = compare_segmentations(result.labels, reference, result.label_info,
                                          reference_labels(sample, result.label_info))
    dice = {row["segment"]: row["dice"] for row in comparison}
    segments = [{"value": row["label_value"], "name": row["segment"], "voxels": int(row["voxel_count"]),
                 "volume_mL": round(float(row["volume_mL"]), 2), "dice": None if dice.get(row["segment"]) is None
                 else round(float(dice[row["segment"]]), 3)} for row in rows]
    files = [out / f"{stem}_ct.nrrd", *result.outputs.values(), out / f"{stem}_measurements.csv"]
    summary = {"model": entry.id, "sample": sample["id"], "spacing_mm": list(image.spacing), "segments": segments,
               "outputs": [str(f) for f in files], "timings_s": result.provenance.get("timings_s", {}),
               "licences": {"model": entry.license["id"], "sample": sample["license"]["id"]}}
    lines = [f"{'':>4}  {'segment':<16} {'voxels':>9} {'volume':>11} {'Dice vs reference':>18}"]
    lines += [f"{s['value']:>4}  {s['name']:<16} {s['voxels']:>9} {s['volume_mL']:>8.2f} mL "
              f"{'' if s['dice'] is None else format(s['dice'], '.3f'):>18}" for s in segments]
    lines.append(f"(voxel size {' x '.join(f'{s:g}' for s in image.spacing)} mm, as the catalog states for this case)")
    lines += [f"wrote {f}" for f in files]
    lines.append(f"Model: {entry.license['id']}, cite: {entry.citation}")
    lines.append(f"Case: {sample['license']['note']} Cite: {sample['citation']}")
    emit(summary, args.json, "\n".join(lines))
    return 0
