"""``deepseg measure``: per-segment measurements, optional comparison with a reference segmentation
and follow-up change, written as CSV (or JSON) tables whose column names carry their units."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import add_progress_option, emit, progress_callback

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("measure", help="volumes, shape, intensity; compare with a reference; follow-up change",
                       description="Measure every segment of a segmentation (.seg.nrrd, or a label map with --labels). "
                       "With --reference: Dice/Hausdorff/... per segment; with --followup: volume change, lesion "
                       "matching and a volumetric response category.")
    p.add_argument("--segmentation", required=True, help=".seg.nrrd, or a label map (.nii.gz, .nrrd, .mha, .mgz)")
    p.add_argument("--labels", help="labels JSON for a label map (list of label objects, model card, or {value: name})")
    p.add_argument("--image", help="image the segmentation was made on, for intensity statistics (HU on CT)")
    p.add_argument("--modality", choices=["CT", "MR", "other"], help="image modality (default: guessed; CT gives HU)")
    p.add_argument("--all-labels", action="store_true",
                   help="list every label of a --labels file even when it has no voxel (a .seg.nrrd's own segments "
                        "are always listed: an empty one gets a row with volume 0 and a note)")
    p.add_argument("--reference", help="reference segmentation (manual contour, second observer) to compare with")
    p.add_argument("--reference-labels", help="labels JSON for a reference label map")
    p.add_argument("--tolerance-mm", type=float, default=2.0, help="surface Dice tolerance in mm (default 2)")
    p.add_argument("--followup", help="follow-up segmentation of the same patient (this one is the baseline)")
    p.add_argument("--followup-labels", help="labels JSON for a follow-up label map")
    p.add_argument("--followup-image", help="follow-up image (with --image) for --register")
    p.add_argument("--register", action="store_true",
                   help="when the grids differ, rigidly register follow-up to baseline (SimpleITK, on --image and "
                   "--followup-image, else on the label maps' foreground) before matching lesions")
    p.add_argument("--targets", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated structure names summed for the overall response (default: all)")
    p.add_argument("--output", required=True,
                   help="table.csv (comparison/follow-up tables are written beside it as table_<kind>.csv) or .json")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def _outputs(output: Path, kinds: list[str]) -> dict[str, Path]:
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return {kind: output if kind == "measurements" else output.with_name(f"{stem}_{kind}{output.suffix}")
            for kind in kinds}


def _only_present(path: str, labels_file: "str | None", args: argparse.Namespace) -> bool:
    """Drop labels without voxels only when they come from a labels catalogue (e.g. TotalSegmentator's 117
    classes on a small crop): a segmentation's own segments were asked for, so an empty one is a result."""
    from ..io import full_suffix

    own_segments = full_suffix(Path(path)).lower() == ".seg.nrrd" and not labels_file
    return not (args.all_labels or own_segments)


def run(args: argparse.Namespace) -> int:
    from ..io import AtomicOutputs
    from ..measure.table import table_json, write_csv, write_json
    from ..progress import Progress

    output = Path(args.output)
    kinds = ["measurements"] + (["comparison"] if args.reference else []) + (["followup", "lesions"] if args.followup else [])
    paths = _outputs(output, kinds)
    # outputs claimed before any work, as segment/explain do: existing or unwritable ones are refused now
    with AtomicOutputs(overwrite=args.overwrite).reserve(*paths.values()) as out:
        progress = Progress(progress_callback(args.progress), args.cancel)
        result, tables = _measure(args, progress)
        documents = {kind: table_json(r, s) for kind, (r, s) in tables.items()}
        for kind, (r, s) in tables.items():
            if output.suffix.lower() == ".json":
                out.add(paths[kind], lambda tmp, d=documents[kind]: write_json(d, tmp))
            else:
                out.add(paths[kind], lambda tmp, r=r, s=s: write_csv(r, s, tmp))
    result.update(outputs={k: str(v) for k, v in paths.items()}, tables=documents, timings_s=progress.timings)
    lines = [f"{r['label_value']:>5}  {r['segment']:<32} {r['volume_mL']:>10.2f} mL" for r in tables["measurements"][0]]
    if "comparison" in tables:
        lines += [f"{r['segment'] or r['reference_segment']:<32} Dice {r['dice']:.3f}  HD95 {r.get('hd95_mm', '-')}"
                  for r in tables["comparison"][0]]
    if "response" in result:
        lines.append(f"volumetric response: {result['response']['category']}")
    lines += [f"wrote {p}" for p in paths.values()]
    emit(result, args.json, "\n".join(lines))
    return 0


def _measure(args: argparse.Namespace, progress) -> tuple[dict, dict]:
    """Measure the segmentation (and compare with --reference, follow up with --followup): the result
    summary and the tables by kind, each (rows, column spec)."""
    from ..io import read_volume
    from ..measure import read_segmentation
    from ..measure.compare import compare_segmentations
    from ..measure.followup import followup_change
    from ..measure.grid import resample_labels
    from ..measure.table import measure_segmentation

    labels, info = read_segmentation(args.segmentation, args.labels, only_present=_only_present(args.segmentation,
                                                                                               args.labels, args))
    image = read_volume(args.image) if args.image else None
    tables = {"measurements": measure_segmentation(labels, info, image, args.modality, progress)}
    result: dict = {"segmentation": args.segmentation, "coordinates": "LPS (patient, DICOM/ITK)"}
    if args.reference:
        ref, ref_info = read_segmentation(args.reference, args.reference_labels,
                                          only_present=_only_present(args.reference, args.reference_labels, args))
        if not ref.same_grid(labels, tol=1e-3):
            log.warning("The reference is on another grid: resampled onto the segmentation's grid (nearest neighbour).")
            ref = resample_labels(ref, labels)
            result["reference_resampled"] = True
        tables["comparison"] = compare_segmentations(labels, ref, info, ref_info, args.tolerance_mm, progress)
    if args.followup:
        from ..measure.followup import LESIONS, STRUCTURE_CHANGE

        fu, fu_info = read_segmentation(args.followup, args.followup_labels,
                                        only_present=_only_present(args.followup, args.followup_labels, args))
        fu_image = read_volume(args.followup_image) if args.followup_image else None
        change = followup_change(labels, fu, info, fu_info, image, fu_image, args.register, args.targets,
                                 progress=progress)
        tables["followup"] = (change["structures"], STRUCTURE_CHANGE)
        tables["lesions"] = (change["lesions"], LESIONS)
        result["response"] = change["response"]
    return result, tables
