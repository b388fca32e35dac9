"""Brainchop MeshNets on FreeSurfer's norm.mgz: accuracy, time and peak memory, and the speed-up over a
plain PyTorch whole-volume pass.

Each brainchop run of ``benchmarks/accuracy.py`` (``RUNS``, per-structure Dice and HD95 against
FreeSurfer's labels) runs in a fresh subprocess so its peak memory (max RSS) is its own; ``--baseline``
also times, in the same invocation, one plain pass of model18cls over the whole conformed 256^3 volume
(contiguous memory, ``torch.no_grad``, no crop), the reference point for the speed ratio.

    python benchmarks/brainchop_speed.py [--only model18cls] [--baseline] [--no-write]

Results are appended to benchmarks/RESULTS.md under "## Brainchop MeshNet on niivue norm.mgz".
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time

import numpy as np

from accuracy import RESULTS, RUNS, SHARED, append_results, run_one

SECTION = "## Brainchop MeshNet on niivue norm.mgz"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_run(name: str) -> dict:
    """One run in this process: ``accuracy.run_one`` rows plus peak RSS and thread count."""
    import torch

    run = next(r for r in RUNS if r.name == name)
    rows = run_one(run)
    return {"run": name, "rows": rows, "peak_mb": _peak_mb(), "threads": torch.get_num_threads()}


def baseline_pass() -> dict:
    """model18cls over the whole conformed norm.mgz in one plain PyTorch pass."""
    import torch

    from deepseg.inference.device import use_all_cores
    from deepseg.io import read_volume
    from deepseg.models.loaders import load_model

    use_all_cores()
    model = load_model(SHARED / "models" / "brainchop" / "model18cls")
    image = read_volume(SHARED / "data" / "niivue" / "norm.mgz")  # already conformed: no resampling
    x = torch.from_numpy(model.scale_intensities(image.array).transpose(2, 1, 0).copy())[None, None]
    t0 = time.perf_counter()
    with torch.no_grad():
        model.fold_networks()[0](x)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(), "threads": torch.get_num_threads()}


def _in_subprocess(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results: list[dict], baseline: "dict | None", command: str) -> str:
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", f"Command: `{command}`", "",
             f"CPU threads: {results[0]['threads'] if results else '?'} (2-core machine shared with other jobs, so "
             "absolute times are noisy; the ratio below is from one invocation).", "",
             "| run | mean Dice | structures | time (s) | peak RSS (MB) |", "|---|---|---|---|---|"]
    for r in results:
        dice = [row["dice"] for row in r["rows"]]
        lines.append(f"| {r['run']} | {np.mean(dice):.3f} | {len(dice)} | {r['rows'][0]['seconds']:.0f} | "
                     f"{r['peak_mb']:.0f} |")
    lines += ["", "| run | structure | Dice | HD95 (mm) |", "|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            hd = "-" if row["hd95_mm"] is None else f"{row['hd95_mm']:.1f}"
            lines.append(f"| {r['run']} | {row['structure']} | {row['dice']:.3f} | {hd} |")
    if baseline:
        ours = next((r for r in results if "model18cls" in r["run"]), None)
        lines += ["", f"Plain PyTorch whole-volume pass of model18cls (network only, 256^3, contiguous memory, "
                      f"no crop): {baseline['seconds']:.0f} s, peak RSS {baseline['peak_mb']:.0f} MB."]
        if ours:
            t = ours["rows"][0]["seconds"]
            lines.append(f"DeepSeg end to end (conform, crop to the head, channels_last halo slabs, restore): "
                         f"{t:.0f} s, **{baseline['seconds'] / t:.1f}x faster**, peak memory "
                         f"{ours['peak_mb'] / baseline['peak_mb']:.2f}x the plain pass.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="only runs whose name contains this text")
    parser.add_argument("--baseline", action="store_true", help="also time a plain whole-volume pass")
    parser.add_argument("--no-write", action="store_true", help="print without touching RESULTS.md")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_run(args.measure)))
        return 0
    if args.measure_baseline:
        print(json.dumps(baseline_pass()))
        return 0
    runs = [r.name for r in RUNS if r.name.startswith("brainchop-") and args.only in r.name]
    if not runs:
        print(f"no brainchop runs (is ../shared at {SHARED}?)", file=sys.stderr)
        return 0
    results = []
    for name in runs:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(_in_subprocess("--measure", name))
    baseline = _in_subprocess("--measure-baseline") if args.baseline else None
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/brainchop_speed.py", *(argv or sys.argv[1:])])
    text = markdown(results, baseline, command)
    print(text)
    if not args.no_write:
        append_results(text, RESULTS, section=SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
