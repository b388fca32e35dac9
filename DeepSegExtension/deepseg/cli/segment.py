"""``deepseg segment``: run a model on one case and write a Slicer segmentation."""
from __future__ import annotations

import argparse

from ..options import SegmentOptions
from .common import add_progress_option, emit, progress_callback


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment a volume with a model",
                       description="Segment one case. Outputs are written only if the whole run succeeds.")
    p.add_argument("--model", required=True, help="catalog id (fetched) or model folder")
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="image file or DICOM folder; repeat once per model channel, in the model's order")
    p.add_argument("--output", help="segmentation to write (.seg.nrrd for Slicer, or .nii.gz)")
    p.add_argument("--labelmap", help="also write a label-map image (.nii.gz, .nrrd)")
    SegmentOptions.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.pipeline import segment

    if not (args.output or args.labelmap):
        raise SystemExit("deepseg segment: give --output and/or --labelmap")
    options = SegmentOptions.from_args(args)
    result = segment(args.model, args.input, output=args.output, labelmap=args.labelmap, options=options,
                     progress_callback=progress_callback(args.progress), cancel=args.cancel)
    segments = result.volumes(options.use_tg263)
    summary = {"outputs": {k: str(v) for k, v in result.outputs.items()}, "segments": segments,
               "timings_s": result.provenance.get("timings_s", {}), "notes": result.provenance.get("notes", [])}
    if "uncertainty" in result.provenance:
        summary["uncertainty"] = result.provenance["uncertainty"]
    text = "\n".join([f"{s['value']:>4}  {s['name']:<32} {s['volume_ml']:>10.2f} mL" for s in segments]
                     + [f"wrote {v}" for v in summary["outputs"].values()] + summary["notes"])
    emit(summary, args.json, text)
    return 0
