"""``deepseg explain``: which image regions drove a structure, and where the model is unsure."""
from __future__ import annotations

import argparse

from ..options import EXPLAIN_METHODS, EXPLAIN_OPTIONS, REMOVALS, SegmentOptions
from .common import add_progress_option, emit, progress_callback


def register(sub) -> None:
    p = sub.add_parser("explain", help="attribution heat map and uncertainty for one structure",
                       description="Write a [0, 1] heat map (on the input grid) of the image regions that drove "
                                   "one predicted structure. Outputs appear only if the whole run succeeds.")
    p.add_argument("--model", required=True, help="catalog id (fetched) or model folder")
    p.add_argument("--input", action="append", metavar="PATH",
                   help="image file or DICOM folder; repeat once per model channel, in the model's order")
    p.add_argument("--segment", help="structure to explain: label name, TG-263 name or label value")
    p.add_argument("--output", help="heat map to write (.nii.gz, .nrrd, .mha)")
    p.add_argument("--method", choices=EXPLAIN_METHODS,
                   help="gradcam, gradcam++, hirescam, layer-sum (Grad-CAM summed over decoder stages) or occlusion "
                        "(re-runs the model with blocks removed: at most 18 runs); default: the model format's, chosen by "
                        "measured faithfulness (benchmarks/RESULTS.md), else gradcam")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="take the map from this layer (repeat to sum several); see --list-layers")
    p.add_argument("--list-layers", action="store_true", help="list valid --layer names and the defaults, then exit")
    p.add_argument("--region", metavar="PATH",
                   help="explain this region (label map or .seg.nrrd) instead of the predicted segment")
    p.add_argument("--faithfulness", action="store_true",
                   help="also score the map: deletion/insertion Dice and Prediction/Image Preserved (re-runs the model 7x)")
    p.add_argument("--removal", choices=REMOVALS, default="impute",
                   help="how --faithfulness removes voxels: impute (from their surroundings, default) or constant "
                        "(the channel minimum)")
    SegmentOptions.add_arguments(p, EXPLAIN_OPTIONS)
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def _list_layers(args) -> int:
    from ..explain import list_layers
    from ..explain.layers import default_layers
    from ..models.loaders import load_model

    model = load_model(args.model)
    layers = list_layers(model)
    defaults = {m: default_layers(model.fold_networks()[0], layers, m) for m in ("gradcam", "layer-sum")}
    rows = [{"name": lay.name, "type": lay.type, "channels": lay.channels, "shape": list(lay.shape)} for lay in layers]
    text = "\n".join([f"{r['name']:<48} {r['type']:<18} {r['channels']:>5}  {'x'.join(map(str, r['shape']))}"
                      for r in rows] + [f"default ({m}): {', '.join(v)}" for m, v in defaults.items()])
    emit({"layers": rows, "defaults": defaults}, args.json, text)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_layers:
        return _list_layers(args)
    missing = [f"--{n}" for n in ("input", "segment", "output") if not getattr(args, n)]
    if missing:
        raise SystemExit(f"deepseg explain: give {', '.join(missing)} (or --list-layers)")
    from ..io import AtomicOutputs, write_volume
    from ..progress import Progress

    options = SegmentOptions.from_args(args)
    unc_path = None if isinstance(options.uncertainty, bool) else options.uncertainty
    # outputs claimed before any work, as `deepseg segment` does: existing or unwritable ones are refused now
    with AtomicOutputs(overwrite=options.overwrite).reserve(args.output, unc_path) as out:
        result, summary = _explain(args, options, Progress(progress_callback(args.progress), args.cancel))
        unc = result.uncertainty
        summary["outputs"]["heatmap"] = str(out.add(args.output, lambda p: write_volume(result.heatmap, p)))
        if unc is not None and unc_path is not None:
            vol = unc.maps[unc.primary]
            summary["outputs"]["uncertainty"] = str(out.add(unc_path, lambda p: write_volume(vol, p)))
        args.cancel.raise_if_cancelled()
    source = f" from layer(s) {', '.join(result.info['layers'])}" if result.info["layers"] else ""
    lines = [f"{result.info['method']} map of '{result.info['segment']}'{source}"]
    if result.info["all_zero"]:
        lines.append("warning: no positive attribution; the map is all zero")
    if unc is not None:
        lines += [f"uncertainty ({unc.primary}), most uncertain first:"] + [
            f"  {s.name:<32} inside {s.mean_inside:.3f}  boundary {s.mean_boundary:.3f}" for s in unc.structures]
    if args.faithfulness:
        f = summary["faithfulness"]
        lines.append(f"faithfulness: deletion Dice lost {f['deletion_mean']:.3f}, insertion Dice {f['insertion_mean']:.3f}, "
                     f"PP {f['prediction_preserved']:.3f} at IP {f['image_preserved']:.3f}")
    lines += [f"wrote {v}" for v in summary["outputs"].values()]
    emit(summary, args.json, "\n".join(lines))
    return 0


def _explain(args: argparse.Namespace, options: SegmentOptions, progress):
    """Load the model and explain the segment (and score the map with --faithfulness): the result and
    its JSON summary."""
    from ..explain import explain
    from ..inference.uncertainty import uncertainty_summary
    from ..models.loaders import load_model

    model = load_model(args.model, folds=options.folds)
    options = options.replace(folds=None)  # the loader selected them
    result = explain(model, args.input, args.segment, method=args.method, layer=args.layer, region=args.region,
                     options=options, progress=progress)
    summary = {"outputs": {}, **result.info}
    if result.uncertainty is not None:
        summary["uncertainty"] = uncertainty_summary(result.uncertainty)
    if args.faithfulness:
        from ..explain.faithfulness import evaluate_map, model_segmenter
        from ..inference.channels import load_channels

        channels, _ = load_channels(list(args.input), model.card)
        progress.stage("faithfulness")
        score = evaluate_map(model_segmenter(model, options.device, args.cancel), channels, result.labels.array,
                             result.info["value"], result.heatmap.array, removal=args.removal, step=progress.step)
        summary["faithfulness"] = score.to_json()
    return result, summary
