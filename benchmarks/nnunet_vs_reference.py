"""DeepSeg's nnU-Net v2 engine vs nnU-Net's own ``nnUNetPredictor`` on the same model, input and settings.

Each run is a separate process (model load + read + predict + write the label NIfTI, Python start-up
excluded) so peak memory (ru_maxrss, worker processes reported separately) is per engine.  Reports the
wall-time ratio ours/reference measured in this one run, with and without mirroring, and per-class Dice
between the two label maps; then DeepSeg's time on a 512x512x300 CT-sized input (no reference: it would
take far longer than the rest).

    python benchmarks/nnunet_vs_reference.py [--size 112 40 112] [--big 512 300 512] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))
WORK = REPO / "benchmarks" / "_work" / "nnunet"

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case, trainer_folder, write_case  # noqa: E402
from fixtures.nnunet_runs import dice_per_class, run_ours, run_reference  # noqa: E402


def worker(engine: str, train_dir: Path, images: list[Path], out: Path, folds: list[int], mirror: bool) -> None:
    """One timed job in this process; prints a JSON line with seconds and peak memory (MiB)."""
    import torch

    t0 = time.perf_counter()
    if engine == "ours":
        from deepseg.io import write_volume

        labels, _ = run_ours(train_dir, images, folds, mirror)
        write_volume(labels, out)
    else:
        run_reference(train_dir, images, out, folds, mirror, sequential=engine == "reference")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "children_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def spawn(engine: str, train_dir: Path, images: list[Path], out: Path, folds: list[int], mirror: bool,
          threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), nnUNet_def_n_proc=str(threads))
    cmd = [sys.executable, __file__, "--worker", engine, str(train_dir), str(out), ",".join(map(str, folds)),
           "1" if mirror else "0", *map(str, images)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def read_labels(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def big_case(size_ijk) -> tuple:
    """A CT-sized case: a 160x60x160 synthetic case centred in a canvas of air (CT -1000, T1 0); generating
    the shapes on the full grid would need several GB of coordinate arrays."""
    import SimpleITK as sitk

    small = make_case(8, size_ijk=(160, 60, 160), spacing=(0.8, 2.5, 0.8), margin=0)
    out = []
    for img, fill in zip(small, (-1000, 0, 0)):
        arr = sitk.GetArrayFromImage(img)
        pad = [((n - s) // 2, n - s - (n - s) // 2) for n, s in zip(size_ijk[::-1], arr.shape)]
        big = sitk.GetImageFromArray(np.pad(arr, pad, constant_values=fill))
        big.SetSpacing(img.GetSpacing())
        out.append(big)
    return tuple(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=3, default=[112, 40, 112], help="comparison input size (i j k)")
    ap.add_argument("--big", type=int, nargs=3, default=[512, 300, 512], help="CT-sized input for our engine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--only", choices=["compare", "big"], help="run one part only")
    args = ap.parse_args()
    folds = [int(f) for f in args.folds.split(",")]
    results = ensure_nnunet_fixture(REPO / "Testing" / "_fixtures")
    train_dir = trainer_folder(results, "3d_fullres")
    WORK.mkdir(parents=True, exist_ok=True)
    print("## nnU-Net v2 engine vs nnUNetPredictor\n")
    print(f"Command: `python benchmarks/nnunet_vs_reference.py {' '.join(sys.argv[1:])}`\n")
    if args.only != "big":
        compare(args, train_dir, folds)
    if args.only != "compare":
        big_run(args, train_dir, folds)


def compare(args, train_dir: Path, folds: list[int]) -> None:
    a = np.deg2rad(17)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    images = write_case(WORK / "in", "cmp_000", make_case(7, size_ijk=args.size, spacing=(0.75, 3.0, 0.7),
                                                          direction=direction, margin=4))
    print(f"Model: fixture Dataset977 3d_fullres (genuine nnU-Net v2 training, folds {folds}); input "
          f"{args.size[0]}x{args.size[1]}x{args.size[2]} voxels (i j k) at 0.75x3.0x0.7 mm, 2 channels, "
          f"resampled by both engines to the plans' 0.8x2.5x0.8 mm; {args.threads} torch threads; tile step 0.5, "
          f"Gaussian. Each engine in its own process (model load + read + predict + write).\n")
    print("| mirroring | engine | seconds | ratio ours/engine | peak RSS MiB (+workers) | Dice liver | Dice spleen |")
    print("|---|---|---|---|---|---|---|")
    for mirror in (False, True):
        runs = {}
        for engine in ("ours", "reference", "reference-mp"):
            out = WORK / f"{engine}_{int(mirror)}.nii.gz"
            runs[engine] = (spawn(engine, train_dir, images, out, folds, mirror, args.threads), read_labels(out))
        ours_t = runs["ours"][0]["seconds"]
        for engine, (r, lab) in runs.items():
            d = dice_per_class(runs["ours"][1], lab, [1, 2])
            ratio = "-" if engine == "ours" else f"{ours_t / r['seconds']:.2f}"
            extra = f" (+{r['children_peak_mib']:.0f})" if r["children_peak_mib"] > 1 else ""
            print(f"| {'on' if mirror else 'off'} | {engine} | {r['seconds']:.1f} | {ratio} | "
                  f"{r['peak_mib']:.0f}{extra} | {d[1]:.4f} | {d[2]:.4f} |", flush=True)
    print("\n`reference` = nnUNetPredictor.predict_from_files_sequential (no worker processes); `reference-mp` = "
          "predict_from_files with 1 preprocessing + 1 export worker (the nnUNetv2_predict path). Dice is "
          "each engine's labels vs ours.\n")


def big_run(args, train_dir: Path, folds: list[int]) -> None:
    big = write_case(WORK / "big", "big_000", big_case(args.big))
    r = spawn("ours", train_dir, big, WORK / "big_ours.nii.gz", [folds[0]], False, args.threads)
    n = int(np.prod(args.big))
    print(f"Our engine on a CT-sized {args.big[0]}x{args.big[1]}x{args.big[2]} input ({n / 1e6:.0f} M voxels, "
          f"2 channels, already at the plans' spacing), 1 fold, no mirroring, patch 16x32x32: "
          f"{r['seconds']:.0f} s, peak RSS {r['peak_mib']:.0f} MiB.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, train_dir, out, folds, mirror, *images = sys.argv[2:]
        worker(engine, Path(train_dir), [Path(p) for p in images], Path(out), [int(f) for f in folds.split(",")],
               mirror == "1")
    else:
        main()
