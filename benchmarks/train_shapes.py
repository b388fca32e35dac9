"""Learning check: train MONAI V-Net and the Render 3D U-Net on generated 3D shapes on the CPU,
save each as a card folder, reload it with ``deepseg.load_model`` and measure held-out Dice
through ``deepseg.segment``.

    OMP_NUM_THREADS=1 python benchmarks/train_shapes.py --out benchmarks/_work/shapes [--record]

``--record`` appends the result table to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from deepseg.training.shapes import SHAPE_ITERATIONS, learning_check

HEADING = "## Learning check: V-Net and Render 3D U-Net on generated shapes"


def markdown(reports: list[dict], command: str) -> str:
    rows = ["| model | iterations | train time (s) | loss first->last 10 | Dice ellipsoid | Dice box | "
            "mean Dice (reloaded) | mean Dice (in memory) | mean Dice before `refine` |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        rows.append(f"| {r['format']} | {r['iterations']} | {r['train_seconds']:.0f} | "
                     f"{r['first_loss']:.3f} -> {r['final_loss']:.3f} | {r['dice']['ellipsoid']:.3f} | "
                     f"{r['dice']['box']:.3f} | {r['mean_dice']:.3f} | {r['in_memory_mean_dice']:.3f} | "
                    f"{r['mean_dice_before_refine']:.3f} |")
    notes = [f"- {r['format']}: false-positive screen trained on {r['fp_screen']['components']} connected "
             f"components of its predictions on the training volumes at 1/5, 1/2 and the end of training ({r['fp_screen']['false_positives']} "
             "false positives); `refine` applies it" for r in reports if "fp_screen" in r]
    return "\n".join([HEADING, "", f"Command: `{command}`", "",
                      f"{reports[0]['n_train']} training / {reports[0]['n_test']} held-out generated 32^3 volumes "
                      "(ellipsoid = 1, box = 2, unlabelled bright distractor blobs, Gaussian noise), 1 CPU thread, "
                      "batch 2. Held-out Dice measured after save -> `deepseg.load_model` -> `deepseg.segment`.", "",
                      *rows, "", *notes, ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/_work/shapes"))
    ap.add_argument("--formats", nargs="+", default=["monai-vnet", "render-unet"])
    ap.add_argument("--iterations", type=int, default=None, help="override the per-format default")
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--test", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reports = []
    for fmt in args.formats:
        iterations = args.iterations or SHAPE_ITERATIONS[fmt]
        t0 = time.perf_counter()
        report = learning_check(fmt, args.out / fmt, iterations=iterations, n_train=args.train, n_test=args.test,
                                on_step=lambda i, loss: print(f"{fmt} it {i} loss {loss:.4f}", flush=True)
                                if i % 25 == 0 else None)
        report.update(n_train=args.train, n_test=args.test, total_seconds=time.perf_counter() - t0)
        print(json.dumps(report), flush=True)
        reports.append(report)
    command = "OMP_NUM_THREADS=1 python benchmarks/train_shapes.py " + " ".join(argv or sys.argv[1:])
    table = markdown(reports, command.strip())
    print(table)
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        results.write_text(results.read_text().rstrip("\n") + "\n\n" + table)
    return 0 if all(r["mean_dice"] > 0.9 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
