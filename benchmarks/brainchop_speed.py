"""Brainchop MeshNets on FreeSurfer's norm.mgz: accuracy, time and peak memory, and the speed-up over a
plain PyTorch whole-volume pass.

Each brainchop run of ``benchmarks/accuracy.py`` (``RUNS``, per-structure Dice and HD95 against
FreeSurfer's labels) runs in a fresh subprocess so its peak memory (max RSS) is its own; ``--baseline``
also times, in the same invocation, one plain pass of model18cls over the whole conformed 256^3 volume
(contiguous memory, ``torch.no_grad``, no crop), the reference point for the speed ratio.

    python benchmarks/brainchop_speed.py [--only model18cls] [--baseline] [--no-write]
    python benchmarks/brainchop_speed.py --backends [--no-write]

``--backends``: whole ``deepseg segment`` processes of model18cls on norm.mgz with ``--backend auto``
(OpenVINO; first run with an empty compiled-model cache, then again) and ``--backend torch``, in one run.

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


def backend_runs(command: str) -> str:
    """model18cls on norm.mgz as whole CLI processes: auto (first, then second run) against torch."""
    import os
    import shutil

    import SimpleITK as sitk

    from cli_timing import timed_cli

    work = RESULTS.parent / "_work" / "meshnet_backends"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "DEEPSEG_BACKEND"}
    env["DEEPSEG_HOME"] = str(work / "home")

    def cli(backend: str, out: str) -> list[str]:
        return [sys.executable, "-m", "deepseg", "segment", "--model", str(SHARED / "models/brainchop/model18cls"),
                "--input", str(SHARED / "data/niivue/norm.mgz"), "--labelmap", str(work / out), "--device", "cpu",
                "--backend", backend]

    runs = [("auto, first run (empty cache)", cli("auto", "auto1.nii.gz"), "auto1.nii.gz"),
            ("torch", cli("torch", "torch.nii.gz"), "torch.nii.gz"),
            ("auto, second run (cache reused)", cli("auto", "auto2.nii.gz"), "auto2.nii.gz")]
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: CPU backends", "", f"Command: `{command}`",
             "", "`deepseg segment` of model18cls on the full 256^3 norm.mgz, whole processes, "
             f"load average at start {os.getloadavg()[0]:.1f}.", "",
             "| run | wall s | ratio to torch | peak RSS MB | min per-structure Dice vs torch |", "|---|---|---|---|---|"]
    results = [(name, timed_cli(cmd, env), out) for name, cmd, out in runs]
    torch_s = results[1][1]["seconds"]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "torch.nii.gz")))
    for name, r, out in results:
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(work / out)))
        dice = [2 * float(((lab == c) & (ref == c)).sum()) / float((lab == c).sum() + (ref == c).sum())
                for c in range(1, 18) if (lab == c).any() or (ref == c).any()]
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['seconds'] / torch_s:.2f} | {r['peak_mib']:.0f} | "
                     f"{min(dice):.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="only runs whose name contains this text")
    parser.add_argument("--baseline", action="store_true", help="also time a plain whole-volume pass")
    parser.add_argument("--no-write", action="store_true", help="print without touching RESULTS.md")
    parser.add_argument("--backends", action="store_true", help="deepseg segment with --backend auto vs torch")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_run(args.measure)))
        return 0
    if args.measure_baseline:
        print(json.dumps(baseline_pass()))
        return 0
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/brainchop_speed.py", *(argv or sys.argv[1:])])
    if args.backends:
        text = backend_runs(command)
        print(text)
        if not args.no_write:
            append_results(text, RESULTS, section=SECTION)
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
    text = markdown(results, baseline, command)
    print(text)
    if not args.no_write:
        append_results(text, RESULTS, section=SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
