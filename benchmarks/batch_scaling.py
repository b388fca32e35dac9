"""Cohort throughput of ``deepseg batch`` on this machine, in one run:

* cases per hour with 1 worker (all cores' threads) and with 2 workers (threads split), as a ratio;
* the overhead per case against a sequential loop of ``deepseg segment`` (one process per case, the way
  a shell loop runs it), which must stay under 10 % for cases of at least 30 s;
* peak memory per worker (from OUT/cohort.json), and whether the label maps equal the sequential ones.

The model is the genuine nnU-Net fixture (``Testing/fixtures/make_nnunet_model.py``, both 3d_fullres folds);
cases are synthetic volumes large enough that one case takes 30 s or more.  On a shared machine run it
with ``nice`` and read only the ratios; the load average is printed with the results.

    nice -n 5 python benchmarks/batch_scaling.py --cases 4 --size 240 96 240
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case, trainer_folder, write_case  # noqa: E402


def _timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(command, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--size", type=int, nargs=3, default=[240, 96, 240], metavar=("I", "J", "K"))
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from deepseg.io import read_volume

    model = trainer_folder(ensure_nnunet_fixture(REPO / "Testing" / "_fixtures"))
    work = args.work or Path(tempfile.mkdtemp(prefix="deepseg-batch-bench-"))
    cases = work / "cases"
    names = [f"case{i}" for i in range(args.cases)]
    for i, name in enumerate(names):
        if not (cases / f"{name}_0001.nii.gz").exists():
            write_case(cases, name, make_case(700 + i, size_ijk=tuple(args.size)))
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    deepseg = [sys.executable, "-m", "deepseg"]

    def sequential(tag: str) -> list[float]:
        """``deepseg segment`` once per case, one process each (a shell loop)."""
        folder = work / f"sequential_{tag}"
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir()
        return [_timed(deepseg + ["segment", "--model", str(model), "--input", str(cases / f"{n}_0000.nii.gz"),
                                  "--input", str(cases / f"{n}_0001.nii.gz"), "--labelmap",
                                  str(folder / f"{n}_labels.nii.gz"), "--folds", args.folds, "--progress", "none"])
                for n in names]

    def cohort(workers: int, threads: int) -> dict:
        out = work / f"batch_{workers}w"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        wall = _timed(deepseg + ["batch", "--model", str(model), "--inputs", str(cases), "--output-dir", str(out),
                                 "--workers", str(workers), "--threads-per-worker", str(threads), "--folds", args.folds,
                                 "--labelmap", "--progress", "none"])
        prov = json.loads((out / "cohort.json").read_text())
        rows = {r["case"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
        # what the batch machinery adds around segment() per case (hash, staging, rename, result): task seconds
        # minus the stage timings segment() recorded in the case's provenance.  A worker's first case also
        # pays the one-off model load and first imports; the others show the steady state.
        inner = {n: sum(json.loads((out / n / f"{n}.json").read_text())["timings_s"].values()) for n in names}
        first, steady, seen = [], [], set()
        for n in names:
            (steady if rows[n]["worker"] in seen else first).append(float(rows[n]["seconds"]) - inner[n])
            seen.add(rows[n]["worker"])
        loads = sum(w["model_load_s"] for w in prov["workers"].values())
        same = all(np.array_equal(read_volume(out / n / f"{n}_labels.nii.gz").array,
                                  read_volume(work / "sequential_a" / f"{n}_labels.nii.gz").array) for n in names)
        return {"threads": threads, "wall_s": wall, "cases_per_hour": 3600 * len(names) / wall,
                "task_s": sum(float(r["seconds"]) for r in rows.values()), "inner_s": sum(inner.values()),
                "steady_s": sum(steady) / max(1, len(steady)), "first_s": sum(first) / len(first),
                "model_load_s": loads,
                "peak_rss_mb": sorted(w["peak_rss_mb"] for w in prov["workers"].values()),
                "model_loads": sorted(w["model_loads"] for w in prov["workers"].values()), "same": same}

    seq = sequential("a")
    runs = {1: cohort(1, cores), 2: cohort(2, max(1, cores // 2))}
    seq += sequential("b")  # before and after the cohorts: the load of a shared machine drifts
    load_after = os.getloadavg()

    seq_per_case = sum(seq) / len(seq)
    print(f"## deepseg batch scaling ({len(names)} cases {args.size[0]}x{args.size[1]}x{args.size[2]}, folds "
          f"{args.folds}, {cores} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)")
    print(f"sequential `deepseg segment` (one process per case, run before and after the cohorts): "
          f"{seq_per_case:.1f} s per case (each {', '.join(f'{s:.1f}' for s in seq)}) = {3600 / seq_per_case:.0f} cases/h")
    for workers, r in runs.items():
        per_case = r["wall_s"] / len(names)
        fixed = r["wall_s"] * workers - r["task_s"]
        print(f"batch {workers} worker(s) x {r['threads']} thread(s): {r['wall_s']:.1f} s wall = {per_case:.1f} s/case = "
              f"{r['cases_per_hour']:.0f} cases/h; wall per case vs sequential {100 * (per_case / seq_per_case - 1):+.1f} %; "
              f"batch bookkeeping {r['steady_s']:.2f} s/case = {100 * r['steady_s'] * len(names) / r['inner_s']:.1f} % "
              f"of segment() (a worker's first case: +{r['first_s']:.1f} s, model load and first imports); "
              f"model loaded {r['model_loads']} time(s) per worker ({r['model_load_s']:.1f} s in all); "
              f"cluster start/stop and idle {fixed:.0f} worker-s; peak RSS per worker {r['peak_rss_mb']} MB; "
              f"labels identical to sequential: {r['same']}")
    print(f"throughput ratio 2 workers / 1 worker: {runs[2]['cases_per_hour'] / runs[1]['cases_per_hour']:.2f}")


if __name__ == "__main__":
    main()
