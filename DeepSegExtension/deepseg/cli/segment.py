"""``deepseg segment``: run a model on one case and write a Slicer segmentation."""
from __future__ import annotations

import argparse

from .common import add_progress_option, emit, progress_callback


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment a volume with a model",
                       description="Segment one case. Outputs are written only if the whole run succeeds.")
    p.add_argument("--model", required=True, help="catalog id (fetched) or model folder")
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="image file or DICOM folder; repeat once per model channel, in the model's order")
    p.add_argument("--output", help="segmentation to write (.seg.nrrd for Slicer, or .nii.gz)")
    p.add_argument("--labelmap", help="also write a label-map image (.nii.gz, .nrrd)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (slower, smoother)")
    p.add_argument("--folds", type=lambda s: [int(f) for f in s.split(",")], help="folds to ensemble, e.g. 0,1,2")
    p.add_argument("--overlap", type=float, help="sliding-window overlap 0-0.9 (default: the model's)")
    p.add_argument("--keep-largest", action="store_true", help="keep only the largest component per structure")
    p.add_argument("--min-component-ml", type=float, default=0.0, help="remove components smaller than this (mL)")
    p.add_argument("--fill-holes", action="store_true", help="fill enclosed holes in each structure")
    p.add_argument("--structures", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated structure names or label values to keep")
    p.add_argument("--tg263", action="store_true", help="name segments with AAPM TG-263 names where known")
    p.add_argument("--uncertainty", metavar="PATH",
                   help="also write a voxel uncertainty map (fold disagreement with several folds, else mirroring "
                        "variance with --tta, else entropy) and rank structures by it; runs the ensemble member by member")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.pipeline import segment

    if not (args.output or args.labelmap):
        raise SystemExit("deepseg segment: give --output and/or --labelmap")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise SystemExit("deepseg segment: --overlap must be in [0, 1)")
    result = segment(args.model, args.input, output=args.output, labelmap=args.labelmap, device=args.device,
                     tta=args.tta, folds=args.folds, overlap=args.overlap, keep_largest=args.keep_largest,
                     min_component_ml=args.min_component_ml, fill_holes=args.fill_holes,
                     structures=args.structures, use_tg263=args.tg263, overwrite=args.overwrite,
                     uncertainty=args.uncertainty or False,
                     progress_callback=progress_callback(args.progress), cancel=args.cancel)
    import numpy as np

    counts = np.bincount(result.labels.array.ravel(), minlength=max((lab.value for lab in result.label_info), default=0) + 1)
    ml = result.labels.voxel_volume_mm3 / 1000.0
    segments = [{"value": lab.value, "name": lab.display_name(args.tg263), "volume_ml": round(float(counts[lab.value] * ml), 3)}
                for lab in result.label_info]
    summary = {"outputs": {k: str(v) for k, v in result.outputs.items()}, "segments": segments,
               "timings_s": result.provenance.get("timings_s", {}), "notes": result.provenance.get("notes", [])}
    if "uncertainty" in result.provenance:
        summary["uncertainty"] = result.provenance["uncertainty"]
    text = "\n".join([f"{s['value']:>4}  {s['name']:<32} {s['volume_ml']:>10.2f} mL" for s in segments]
                     + [f"wrote {v}" for v in summary["outputs"].values()] + summary["notes"])
    emit(summary, args.json, text)
    return 0
