"""DeepSeg's nnU-Net v2 engine vs nnU-Net's own ``nnUNetPredictor`` on the same model, input and settings.

Each run is a separate process (model load + read + predict + write the label NIfTI, Python start-up
excluded) so peak memory (ru_maxrss, worker processes reported separately) is per engine.  Reports the
wall-time ratio ours/reference measured in this one run, with and without mirroring, and per-class Dice
between the two label maps; then DeepSeg's time on a 512x512x300 CT-sized input (no reference: it would
take far longer than the rest).

    python benchmarks/nnunet_vs_reference.py [--size 112 40 112] [--big 512 300 512] [--threads 2]

``--only bar`` is the bar's setting: whole command-line processes (``deepseg segment`` with
``--backend``, then nnU-Net's ``nnUNetv2_predict_from_modelfolder``) with mirroring on, fold 0, on
a second genuine fixture with a bigger network (features 8-64, 4 stages, patch 24 x 80 x 80), fold 0 trained
by nnunetv2 for a few iterations (``build_bar_fixture``).  ``deepseg segment`` runs first with an empty
compiled-model cache (first run: conversion included), then again (second run: cache reused).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))
WORK = REPO / "benchmarks" / "_work" / "nnunet"

import fixtures.make_nnunet_model as mk  # noqa: E402
from cli_timing import timed_cli  # noqa: E402
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


BAR_ROOT = WORK / "bar_fixture"


def build_bar_fixture() -> Path:
    """nnunetv2 fingerprint/plan/preprocess/train of the fixture dataset with the bar's plans (4 stages,
    features 8-64, patch 24x80x80, two 3x3x3 convolutions per stage), fold 0 trained briefly (2 epochs of 5
    iterations: the shared 2-core machine allows no more); returns the 3d_fullres training folder (built once,
    in a subprocess)."""
    train_dir = BAR_ROOT / "results" / mk.DATASET_NAME / f"{mk.TRAINER}__{mk.PLANS_NAME}__3d_fullres"
    if not (train_dir / "fold_0" / "checkpoint_final.pth").is_file():
        subprocess.run([sys.executable, __file__, "--build-bar"], check=True)
    return train_dir


def _build_bar() -> None:
    os.environ.update({"nnUNet_raw": str(BAR_ROOT / "raw"), "nnUNet_preprocessed": str(BAR_ROOT / "preprocessed"),
                       "nnUNet_results": str(BAR_ROOT / "results"), "nnUNet_n_proc_DA": "1",
                       "nnUNet_def_n_proc": "1", "nnUNet_compile": "false"})
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    torch.manual_seed(0)
    np.random.seed(0)
    pre = BAR_ROOT / "preprocessed" / mk.DATASET_NAME
    if not (pre / "nnUNetPlans.json").is_file():
        shutil.rmtree(BAR_ROOT, ignore_errors=True)
        mk.write_raw_dataset(BAR_ROOT / "raw")
        extract_fingerprints([mk.DATASET_ID], num_processes=1, check_dataset_integrity=True)
        plan_experiments([mk.DATASET_ID])
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["plans_name"] = mk.PLANS_NAME
    conf = plans["configurations"]["3d_fullres"]
    plans["configurations"] = {"3d_fullres": conf}
    conf.update(patch_size=[24, 80, 80], batch_size=2)
    conf["architecture"]["arch_kwargs"].update(
        n_stages=4, features_per_stage=[8, 16, 32, 64], kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2, 2, 2, 2],
        n_conv_per_stage_decoder=[2, 2, 2])
    (pre / f"{mk.PLANS_NAME}.json").write_text(json.dumps(plans, indent=2))
    if not (pre / "nnUNetPlans_3d_fullres").is_dir():
        preprocess([mk.DATASET_ID], mk.PLANS_NAME, configurations=("3d_fullres",), num_processes=(1,))
    mk.EPOCHS["3d_fullres"], mk.ITERATIONS["3d_fullres"] = 2, 5
    os.environ["nnUNet_n_proc_DA"] = "0"  # augment in this process: no worker processes on 2 cores
    mk._train("3d_fullres", 0, BAR_ROOT / "preprocessed")


def bar(args) -> None:
    import SimpleITK as sitk

    train_dir = build_bar_fixture()
    a = np.deg2rad(17)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    images = write_case(WORK / "bar_in", "bar_000", make_case(7, size_ijk=args.size, spacing=(0.75, 3.0, 0.7),
                                                              direction=direction, margin=4))
    home = WORK / "bar_home"
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "DEEPSEG_BACKEND"}
    env["DEEPSEG_HOME"] = str(home)
    ours = lambda out, backend: [sys.executable, "-m", "deepseg", "segment", "--model", str(train_dir),  # noqa: E731
                                 "--input", str(images[0]), "--input", str(images[1]), "--labelmap", str(out),
                                 "--device", "cpu", "--tta", "--folds", "0", "--backend", backend, "--overwrite"]
    ref_out = WORK / "bar_ref"
    shutil.rmtree(ref_out, ignore_errors=True)
    # nnU-Net's console script nnUNetv2_predict_from_modelfolder, run by this interpreter
    reference = [sys.executable, "-c", "import sys; from nnunetv2.inference.predict_from_raw_data import "
                 "predict_entry_point_modelfolder as m; sys.argv[0] = 'nnUNetv2_predict_from_modelfolder'; m()", "-i", str(images[0].parent), "-o", str(ref_out),
                 "-m", str(train_dir), "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"]
    print(f"Bar fixture: `{train_dir.relative_to(REPO)}` (nnunetv2-planned, patch 24x80x80, features 8-64, "
          f"fold 0 trained 2x5 iterations); input {args.size[0]}x{args.size[1]}x{args.size[2]} (i j k), 2 "
          f"channels, mirroring on. Whole CLI processes, load average at start {os.getloadavg()[0]:.1f}.\n")
    runs = [("deepseg segment, auto, first run (empty cache)", ours(WORK / "bar_auto1.nii.gz", "auto")),
            ("nnUNetv2_predict_from_modelfolder", reference),
            ("deepseg segment, auto, second run (cache reused)", ours(WORK / "bar_auto2.nii.gz", "auto")),
            ("deepseg segment, torch", ours(WORK / "bar_torch.nii.gz", "torch"))]
    results = {name: timed_cli(cmd, env) for name, cmd in runs}
    ref_t = results["nnUNetv2_predict_from_modelfolder"]["seconds"]
    ref_labels = read_labels(ref_out / "bar_000.nii.gz")
    outs = {runs[0][0]: "bar_auto1", runs[2][0]: "bar_auto2", runs[3][0]: "bar_torch"}
    print("| run | wall s | ratio to nnUNetPredictor | peak RSS MiB | Dice liver / spleen vs reference |\n|---|---|---|---|---|")
    for name, r in results.items():
        lab = ref_labels if name not in outs else read_labels(WORK / f"{outs[name]}.nii.gz")
        d = dice_per_class(lab, ref_labels, [1, 2])
        print(f"| {name} | {r['seconds']:.1f} | {r['seconds'] / ref_t:.2f} | {r['peak_mib']:.0f} | "
              f"{d[1]:.4f} / {d[2]:.4f} |", flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=3, default=[112, 40, 112], help="comparison input size (i j k)")
    ap.add_argument("--big", type=int, nargs=3, default=[512, 300, 512], help="CT-sized input for our engine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--only", choices=["compare", "big", "bar"], help="run one part only")
    args = ap.parse_args()
    folds = [int(f) for f in args.folds.split(",")]
    if args.only == "bar":
        print(f"## Bar: deepseg segment vs nnUNetv2_predict\n\nCommand: `python benchmarks/nnunet_vs_reference.py "
              f"{' '.join(sys.argv[1:])}`\n")
        return bar(args)
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
    if len(sys.argv) > 1 and sys.argv[1] == "--build-bar":
        _build_bar()
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, train_dir, out, folds, mirror, *images = sys.argv[2:]
        worker(engine, Path(train_dir), [Path(p) for p in images], Path(out), [int(f) for f in folds.split(",")],
               mirror == "1")
    else:
        main()
