"""``deepseg batch``: segment a whole cohort on Dask (local workers, or a running scheduler)."""
from __future__ import annotations

import argparse
import sys

from ..options import SegmentOptions
from ..progress import progress_line
from .common import add_progress_option, bar_text, emit, progress_mode

# every run option of `deepseg segment` but the uncertainty map (a per-case review tool)
BATCH_OPTIONS = tuple(name for name in SegmentOptions.names() if name != "uncertainty")


def register(sub) -> None:
    p = sub.add_parser("batch", help="segment a cohort (folder, glob or manifest) on Dask workers",
                       description="Segment every case into OUT/<case>/ (the outputs of `deepseg segment`), keeping "
                       "OUT/cohort.csv up to date (status, error and fix, seconds, worker, mL per structure) and "
                       "OUT/cohort.json (provenance). Finished cases are skipped when run again; a bad case is "
                       "marked failed and the others go on; Ctrl-C keeps finished cases. "
                       "Exit code 1 when a case failed.")
    p.add_argument("--model", required=True, help="catalog id (fetched) or model folder")
    p.add_argument("--inputs", required=True, metavar="FOLDER|GLOB|MANIFEST.csv",
                   help="folder (each image file or DICOM series folder is a case; nnU-Net <case>_0000 names give "
                        "channels), glob pattern, or manifest CSV with a 'case' column and one column per channel")
    p.add_argument("--output-dir", required=True, metavar="OUT", help="cohort folder (created; re-runs resume)")
    p.add_argument("--workers", type=int, help="local worker processes (default: from cores, memory and GPUs)")
    p.add_argument("--threads-per-worker", type=int, metavar="T", help="PyTorch threads per worker (default: auto)")
    p.add_argument("--memory-per-worker", metavar="SIZE",
                   help="memory one case needs, e.g. 16GB (default: estimated from the images); a worker above it "
                        "is restarted and its case retried")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="use a running Dask scheduler (its workers need deepseg and read access to inputs, model "
                        "and OUT) instead of starting local workers")
    SegmentOptions.add_arguments(p, BATCH_OPTIONS)
    p.add_argument("--labelmap", action="store_true", help="also write OUT/<case>/<case>_labels.nii.gz")
    p.add_argument("--measure", action="store_true", help="also write OUT/<case>/<case>_measurements.csv")
    p.add_argument("--export", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=[],
                   metavar="dicom-seg,rtstruct", help="also write DICOM SEG and/or RT-STRUCT (DICOM series inputs)")
    p.add_argument("--retries", type=int, default=2, help="times a case is run again after its worker died (default 2)")
    p.add_argument("--json", action="store_true", help="print the cohort summary as JSON")
    add_progress_option(p)
    p.set_defaults(func=run)


def progress_display(mode: str):
    """``bar``: one updating line with done/failed/running and the ETA; ``lines``: ``PROGRESS batch n/N``."""
    mode = progress_mode(mode)
    if mode == "none":
        return None
    last = [-1]

    def show(state) -> None:
        if mode == "lines":
            if state.finished != last[0]:
                last[0] = state.finished
                print(progress_line("batch", state.finished, state.total), file=sys.stderr, flush=True)
            return
        eta = "" if state.eta_s is None else f" ETA {int(state.eta_s // 60)}m{int(state.eta_s % 60):02d}s"
        sys.stderr.write(f"\r{bar_text(state.finished, state.total)} {state.finished}/{state.total}  done {state.done}"
                         f"  failed {state.failed}  skipped {state.skipped}  running {state.running}{eta}   ")
        if state.finished == state.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> int:
    from ..cohort.run import batch
    from ..errors import Cancelled

    try:
        result = batch(args.model, args.inputs, args.output_dir, workers=args.workers,
                       threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
                       memory_per_worker=args.memory_per_worker, retries=args.retries, labelmap=args.labelmap,
                       measure=args.measure, export=args.export, options=SegmentOptions.from_args(args),
                       progress=progress_display(args.progress), cancel=args.cancel)
    except Cancelled:
        print(f"\ndeepseg batch: cancelled; finished cases are kept in {args.output_dir} (cohort.csv). "
              "Run the same command again to resume.", file=sys.stderr)
        return 130
    failed = [r for r in result.rows if r["status"] == "failed"]
    summary = {"counts": result.counts, "seconds": round(result.seconds, 1), "cohort_csv": str(result.cohort_csv),
               "cohort_json": str(result.cohort_json),
               "failed": [{"case": r["case"], "error": r["error"], "fix": r["fix"]} for r in failed]}
    text = "\n".join([f"{k}: {v}" for k, v in result.counts.items()]
                     + [f"FAILED {r['case']}: {r['error']}\n  Fix: {r['fix']}" for r in failed]
                     + [f"wrote {result.cohort_csv}", f"wrote {result.cohort_json}"])
    emit(summary, args.json, text)
    return 1 if failed else 0
