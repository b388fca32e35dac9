"""A TotalSegmentator-sized nnU-Net v2 on CT-sized inputs, on the CPU: DeepSeg with each inference backend
against nnU-Net's own ``nnUNetPredictor``, in one run.

Models: genuine nnU-Net v2 results folders whose plans come from nnunetv2's own fingerprinting and
``ExperimentPlanner`` (the default ``nnUNetPlans``, as TotalSegmentator used) run on a CT dataset at
1.5 mm and one at 3 mm ("fast"); 24 structures + background, like a TotalSegmentator v2 task. The raw
datasets are the shared TotalSegmentator CT (``example_ct_sm``, 3 mm) mirror-tiled in z to whole-body
extent (900 mm), with its labels mapped to 24 classes; the 1.5 mm dataset is the same resampled.
Weights are RANDOM (nnU-Net's He initialisation, seed 0, no training): timing does not depend on them,
agreement is measured on them (``checkpoint_final.pth`` is written in nnU-Net's checkpoint layout).

Inputs (already at the model's spacing, as TotalSegmentator hands them to ``nnUNetPredictor``):
  * 3 mm: the whole-body extent, 366 x 303 x 900 mm (122 x 101 x 300 voxels): 2 x 2 x 2 = 8 patches;
  * 1.5 mm: a centred 252 x 180 x 576 mm box (x y z; 168 x 120 x 384 voxels) of the same tiled CT:
    1.5 times the planned patch along each axis, so also 2 x 2 x 2 = 8 patches (a whole body at 1.5 mm
    needs 4 x 5 x 4 = 80 and would not fit the benchmark window; the per-patch work is the same).
The planner's patch is 256 x 80 x 112 (z y x; 2.29 M voxels) for both spacings, not TotalSegmentator's
128^3 (2.10 M voxels): nnU-Net fits the patch's aspect ratio to the median case, and these cases are
900 mm long. Same network size, 9 % more voxels per patch.

Every engine runs as its own whole process (start-up, imports, model load, read, predict, write the
label NIfTI) with fold 0, no mirroring, tile step 0.5, Gaussian weighting and 2 threads (``BENCH_THREADS``):
``deepseg segment --backend auto`` first with an empty compiled-model cache (export + compilation), then
``nnUNetPredictor`` (``predict_from_files_sequential``), then ``deepseg segment`` again (cache reused);
``--extra torch,onnxruntime`` adds ours with those backends. Dice is per class against nnUNetPredictor.
``--network-only`` then times ours' compiled network alone on the same patches (``network_worker``): the
floor under ours' time that no work outside the network can lower.

    python benchmarks/realistic_cpu.py [--only 3mm|1.5mm] [--box-mm 252 180 576] [--extra torch] [--network-only]
    python benchmarks/realistic_cpu.py --per-patch 128 80 112 [--reps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work" / "realistic"
SHARED = Path(os.environ.get("DEEPSEG_SHARED", REPO.parent / "shared")) / "data" / "totalseg"
N_LABELS = 24
TILED_Z_MM = 900.0
BOX_MM = (252.0, 180.0, 576.0)  # x y z: 1.5 x the planned patch (112 x 80 x 256 voxels at 1.5 mm) -> 2 x 2 x 2 tiles


# --- data ------------------------------------------------------------------------------------------
def _tile_z(img, slices: int):
    """``img`` mirror-tiled along z to ``slices`` slices (alternate copies flipped: no seams in anatomy)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)
    reps = -(-slices // arr.shape[0])
    tiled = np.concatenate([arr if r % 2 == 0 else arr[::-1] for r in range(reps)])[:slices]
    out = sitk.GetImageFromArray(np.ascontiguousarray(tiled))
    out.SetSpacing(img.GetSpacing())
    out.SetOrigin(img.GetOrigin())
    out.SetDirection(img.GetDirection())
    return out


def _at_spacing(img, spacing: float, label: bool, smooth: bool = False):
    """``img`` resampled to isotropic ``spacing`` mm: linearly, or a label map by nearest neighbour (with
    ``smooth``: SimpleITK's label-linear interpolation, boundaries as smooth as a map made at ``spacing``)."""
    import SimpleITK as sitk

    if abs(img.GetSpacing()[0] - spacing) < 1e-6:
        return img
    size = [int(round(n * s / spacing)) for n, s in zip(img.GetSize(), img.GetSpacing())]
    interp = sitk.sitkLinear if not label else sitk.sitkLabelLinear if smooth else sitk.sitkNearestNeighbor
    return sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), (spacing,) * 3, img.GetDirection(),
                         0 if label else -1024, img.GetPixelID())


def ct_case(spacing: float, z_mm: float):
    """(CT, 24-class labels) of the shared CT at ``spacing`` mm, tiled to ``z_mm`` in z."""
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(SHARED / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(SHARED / "example_seg.nii.gz"))
    ids = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(seg)) if v][:N_LABELS]
    lut = np.zeros(int(sitk.GetArrayViewFromImage(seg).max()) + 1, np.uint8)
    lut[ids] = np.arange(1, len(ids) + 1)
    lab = sitk.GetImageFromArray(lut[sitk.GetArrayFromImage(seg)])
    lab.CopyInformation(seg)
    ct, lab = _at_spacing(ct, spacing, False), _at_spacing(lab, spacing, True)
    slices = int(round(z_mm / spacing))
    return _tile_z(ct, slices), _tile_z(lab, slices)


# --- models ----------------------------------------------------------------------------------------
def dataset_name(spacing: float) -> tuple[int, str]:
    did = 915 if spacing == 1.5 else 930
    return did, f"Dataset{did}_TotalSegLike{str(spacing).replace('.', 'p')}mm"


def build_model(spacing: float) -> Path:
    """nnunetv2 fingerprint + plan for a CT dataset at ``spacing`` and a random-weight fold 0; returns the
    ``nnUNetTrainer__nnUNetPlans__3d_fullres`` folder (built once, in a subprocess)."""
    did, name = dataset_name(spacing)
    train_dir = WORK / "results" / name / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if (train_dir / "fold_0" / "checkpoint_final.pth").is_file():
        return train_dir
    subprocess.run([sys.executable, __file__, "--build", str(spacing)], check=True)
    return train_dir


def _build(spacing: float) -> None:
    import SimpleITK as sitk

    did, name = dataset_name(spacing)
    os.environ.update({"nnUNet_raw": str(WORK / "raw"), "nnUNet_preprocessed": str(WORK / "preprocessed"),
                       "nnUNet_results": str(WORK / "results"), "nnUNet_def_n_proc": "1"})
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw = WORK / "raw" / name
    shutil.rmtree(raw, ignore_errors=True)
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir(parents=True)
    for c, z_mm in enumerate((TILED_Z_MM, TILED_Z_MM * 0.8)):  # two whole-body-extent cases
        ct, lab = ct_case(spacing, z_mm)
        sitk.WriteImage(ct, str(raw / "imagesTr" / f"case_{c:03d}_0000.nii.gz"))
        sitk.WriteImage(lab, str(raw / "labelsTr" / f"case_{c:03d}.nii.gz"))
    labels = {"background": 0, **{f"structure_{i:02d}": i for i in range(1, N_LABELS + 1)}}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz",
               "name": name, "description": f"TotalSegmentator-like CT dataset at {spacing} mm (benchmark)"}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    extract_fingerprints([did], num_processes=1, check_dataset_integrity=True)
    plan_experiments([did])
    plans = json.loads((WORK / "preprocessed" / name / "nnUNetPlans.json").read_text())
    train_dir = WORK / "results" / name / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (train_dir / "fold_0").mkdir(parents=True, exist_ok=True)
    (train_dir / "plans.json").write_text(json.dumps(plans, indent=2))
    (train_dir / "dataset.json").write_text(json.dumps(dataset, indent=2))
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    torch.manual_seed(0)
    net = nnUNetTrainer.build_network_architecture(pm, cm, 1, N_LABELS + 1, enable_deep_supervision=False)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                "inference_allowed_mirroring_axes": (0, 1, 2),
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset},
                "current_epoch": 0, "optimizer_state": None, "grad_scaler_state": None, "logging": {},
                "_best_ema": None}, train_dir / "fold_0" / "checkpoint_final.pth")


# --- runs --------------------------------------------------------------------------------------------
def reference_worker(train_dir: Path, image: Path, out: Path) -> None:
    """``nnUNetPredictor`` in this process (its leanest path: no worker processes), 1 fold, no mirroring."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    sys.path.insert(0, str(REPO / "Testing"))
    from fixtures.nnunet_runs import run_reference

    run_reference(train_dir, [image], out, [0], mirror=False)


def network_worker(train_dir: Path, image: Path) -> None:
    """Only the network, as ``deepseg segment --backend auto`` runs it: the input's patches (random values)
    through the cached compiled network on OpenVINO's streams, nothing else (no cutting, weighting,
    accumulating, reading, writing): the part of ours that no work outside the network can remove."""
    import torch

    from deepseg.inference.backends import on_backend
    from deepseg.inference.sliding_window import in_order, plan_windows
    from deepseg.io import read_volume
    from deepseg.models.nnunet import load_nnunet_folder

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = load_nnunet_folder(train_dir, folds=[0])
    plan = plan_windows(model.prepare([read_volume(image)]).image.shape[1:], model.window, model.window.overlap)
    net = on_backend(model.fold_networks()[0], "openvino")
    x = torch.randn(1, 1, *plan.patch)
    streams = net.streams_for(len(plan.boxes))
    net.compile(tuple(x.shape), streams)  # from the cache, not timed
    t0 = time.perf_counter()
    for _ in in_order(lambda box: net(x, streams), plan.boxes, streams):
        pass
    print(json.dumps({"seconds": time.perf_counter() - t0, "patches": len(plan.boxes), "streams": streams}))


def engine_command(engine: str, train_dir: Path, image: Path, out: Path) -> list[str]:
    """The command of one run: ``deepseg segment`` as a user types it, or nnU-Net's predictor."""
    if engine == "reference":
        return [sys.executable, __file__, "--worker", str(train_dir), str(image), str(out)]
    return [sys.executable, "-m", "deepseg", "segment", "--model", str(train_dir), "--input", str(image),
            "--labelmap", str(out), "--device", "cpu", "--backend", engine, "--folds", "0", "--overwrite"]


def read_labels(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def dice_summary(a: np.ndarray, b: np.ndarray) -> str:
    """Lowest per-class Dice over the classes present in either map (and how many there are)."""
    classes = [c for c in range(1, N_LABELS + 1) if (a == c).any() or (b == c).any()]
    dice = {}
    for c in classes:
        x, y = a == c, b == c
        dice[c] = 2.0 * int((x & y).sum()) / (int(x.sum()) + int(y.sum()))
    worst = min(dice, key=dice.get)
    return f"{dice[worst]:.4f} (class {worst}; {len(classes)} classes, mean {np.mean(list(dice.values())):.4f})"


def compare(label: str, spacing: float, image: Path, extent: str, extra: list[str], network: bool = False) -> None:
    """Whole processes, interleaved: ours auto with an empty compiled-model cache, nnUNetPredictor, ours
    auto again (cache reused), then the ``extra`` backends of ours (each with an empty cache); ``network``:
    then the network alone (``network_worker``) against the same nnUNetPredictor run."""
    from cli_timing import timed_cli

    train_dir = build_model(spacing)
    plans = json.loads((train_dir / "plans.json").read_text())["configurations"]["3d_fullres"]
    kw = plans["architecture"]["arch_kwargs"]
    shape = read_labels(image).shape
    print(f"### {label}: {extent}\n\nModel: `{train_dir.relative_to(REPO)}` (nnunetv2 planner: patch "
          f"{plans['patch_size']}, spacing {plans['spacing']}, {kw['n_stages']} stages, features "
          f"{kw['features_per_stage'][0]}-{kw['features_per_stage'][-1]}, {N_LABELS + 1} outputs, random weights). "
          f"Input {shape[2]}x{shape[1]}x{shape[0]} voxels (x y z).\n", flush=True)
    homes = WORK / "homes" / label
    shutil.rmtree(homes, ignore_errors=True)
    runs = [("ours auto, first run (empty cache: export + compile)", "auto", homes / "auto"),
            ("nnUNetPredictor", "reference", homes / "ref"),
            ("ours auto, second run (cache reused)", "auto", homes / "auto"),
            *[(f"ours {b} (empty cache)", b, homes / b) for b in extra]]
    results = {}
    for n, (name, engine, home) in enumerate(runs):
        out = WORK / "out" / f"{label}_{n}_{engine}.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "DEEPSEG_BACKEND"}
        env.update(DEEPSEG_HOME=str(home), OMP_NUM_THREADS=os.environ.get("BENCH_THREADS", "2"))
        load = os.getloadavg()[0]
        r = timed_cli(engine_command(engine, train_dir, image, out), env)
        sidecar = out.with_name(out.name.replace(".nii.gz", ".json"))
        prov = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        r.update(backend=prov.get("settings", {}).get("backend", "nnUNetPredictor"), stages=prov.get("timings_s"),
                 load=load)
        results[name] = (r, read_labels(out))
        print(f"<!-- {name}: {r['seconds']:.1f} s, peak {r['peak_mib']:.0f} MiB, backend {r['backend']}, "
              f"stages {r['stages']}, load at start {load:.1f} -->", flush=True)
    ref_t = results["nnUNetPredictor"][0]["seconds"]
    ref_labels = results["nnUNetPredictor"][1]
    print("| run | backend used | wall s (whole process) | ratio to nnUNetPredictor | peak RSS MiB | "
          "min per-class Dice vs nnUNetPredictor |\n|---|---|---|---|---|---|")
    for name, (r, lab) in results.items():
        dice = "-" if name == "nnUNetPredictor" else dice_summary(lab, ref_labels)
        print(f"| {name} | {r['backend']} | {r['seconds']:.1f} | {r['seconds'] / ref_t:.2f} | {r['peak_mib']:.0f} | "
              f"{dice} |", flush=True)
    if network:
        env = {**os.environ, "DEEPSEG_HOME": str(homes / "auto"),
               "OMP_NUM_THREADS": os.environ.get("BENCH_THREADS", "2")}
        out = subprocess.run([sys.executable, __file__, "--network", str(train_dir), str(image)], env=env,
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"\nNetwork alone (ours' compiled network on {r['patches']} random patches, {r['streams']} OpenVINO "
              f"streams, nothing else): {r['seconds']:.1f} s = {r['seconds'] / ref_t:.2f} of nnUNetPredictor's "
              "whole run above.", flush=True)
    print()


def per_patch(spacing: float, shape: list[int], reps: int) -> None:
    """One patch of the planned network through each backend, interleaved in this one process (2 threads)."""
    import torch

    from deepseg.inference.backends import on_backend
    from deepseg.models.nnunet import load_nnunet_folder

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    os.environ["DEEPSEG_HOME"] = str(WORK / "homes" / "per_patch")
    net = load_nnunet_folder(build_model(spacing), folds=[0]).fold_networks()[0]
    x = torch.randn(1, 1, *shape)
    runners = {b: on_backend(net, b) for b in ("torch", "openvino", "onnxruntime")}
    for b in ("openvino", "onnxruntime"):
        t0 = time.perf_counter()
        runners[b].compile(tuple(x.shape))
        print(f"- {b}: conversion + compilation {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\nOne {'x'.join(map(str, shape))} patch of the {spacing} mm network, interleaved, seconds per patch:\n\n"
          "| rep | torch | openvino | onnxruntime | openvino / torch | load |\n|---|---|---|---|---|---|")
    for rep in range(reps):
        times, outs = {}, {}
        for b, run in runners.items():
            t0 = time.perf_counter()
            with torch.inference_mode():
                outs[b] = run(x)
            times[b] = time.perf_counter() - t0
        print(f"| {rep} | {times['torch']:.1f} | {times['openvino']:.1f} | {times['onnxruntime']:.1f} | "
              f"{times['openvino'] / times['torch']:.2f} | {os.getloadavg()[0]:.0f} |", flush=True)
    for b in ("openvino", "onnxruntime"):
        differ = float((outs[b].argmax(1) != outs["torch"].argmax(1)).float().mean())
        print(f"\n{b}: argmax differs from torch in {100 * differ:.3f} % of voxels", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["3mm", "1.5mm"])
    ap.add_argument("--per-patch", type=int, nargs=3, metavar=("Z", "Y", "X"),
                    help="only time one patch of this shape per backend (3 mm network), interleaved")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--box-mm", type=float, nargs=3, default=list(BOX_MM),
                    help="x y z extent (mm) of the centred box of the 1.5 mm input")
    ap.add_argument("--extra", default="", help="also run ours with these backends, e.g. torch,onnxruntime")
    ap.add_argument("--network-only", action="store_true",
                    help="also time ours' network alone on the same patches (the floor of ours' time)")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared TotalSegmentator CT in {SHARED}")
    import SimpleITK as sitk

    extra = [b for b in args.extra.split(",") if b]
    print(f"## TotalSegmentator-sized nnU-Net on the CPU\n\nCommand: `python benchmarks/realistic_cpu.py "
          f"{' '.join(sys.argv[1:])}`; load average at start {os.getloadavg()[0]:.1f}.\n", flush=True)
    if args.per_patch:
        return per_patch(3.0, args.per_patch, args.reps)
    inputs = WORK / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    if args.only != "1.5mm":
        image = inputs / "wholebody_3mm_0000.nii.gz"
        if not image.is_file():
            sitk.WriteImage(ct_case(3.0, TILED_Z_MM)[0], str(image))
        compare("3mm", 3.0, image, f"whole-body extent ({TILED_Z_MM:.0f} mm in z) at 3 mm ('fast')", extra,
                args.network_only)
    if args.only != "3mm":
        box = [int(round(m / 1.5)) for m in args.box_mm]
        image = inputs / f"box{'x'.join(map(str, box))}_1p5mm_0000.nii.gz"
        if not image.is_file():
            ct = ct_case(1.5, args.box_mm[2])[0]
            size = [min(b, n) for b, n in zip(box, ct.GetSize())]
            sitk.WriteImage(sitk.RegionOfInterest(ct, size, [(n - s) // 2 for n, s in zip(ct.GetSize(), size)]),
                            str(image))
        compare("1.5mm", 1.5, image, "partial extent (a centred {:.0f} x {:.0f} x {:.0f} mm box) at 1.5 mm"
                .format(*args.box_mm), extra, args.network_only)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        reference_worker(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--network":
        network_worker(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--build":
        _build(float(sys.argv[2]))
    else:
        main()
