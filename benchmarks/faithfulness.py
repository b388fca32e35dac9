"""Faithfulness and cost of explanation maps on the project's own models and real cases.

For each run (a model, a case, a structure) and each method (Grad-CAM, Grad-CAM++, HiResCAM,
layer-sum) plus two baselines (a random map; a structure-distance map), the map is scored by
deletion / insertion (Dice of the structure after removing / keeping only the top-k% voxels,
relative to the model's own prediction) and Prediction / Image Preserved (map >= 0.5 kept).  A
method counts as better than chance only where it beats the random map on both deletion and
insertion.  The cost of one explanation is compared with one plain inference run (wall time and
peak resident memory, each measured in a fresh process).

    python benchmarks/faithfulness.py                                # cue + nnU-Net faithfulness, nnU-Net cost
    python benchmarks/faithfulness.py --only none --cost none --combined liver   # the slow liver model
    python benchmarks/faithfulness.py --no-record ...                 # print only

Results are printed and appended to ``benchmarks/RESULTS.md`` under ``## Explainability``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deepseg.options import EXPLAIN_METHODS as METHODS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "Testing"), str(REPO / "Testing" / "explain"), str(REPO / "Testing" / "fixtures")]
RESULTS = HERE / "RESULTS.md"
WORK = HERE / "_work"


@dataclass
class Run:
    name: str
    model: Callable[[], object]           # -> SegmentationModel
    case: Callable[[], list]              # -> channels (Volumes)
    segment: str
    fractions: Sequence[float] = (0.01, 0.05, 0.2)
    background: "Sequence[float] | None" = None  # removed-voxel intensity per channel (default: channel minimum)
    methods: Sequence[str] = METHODS
    note: str = ""
    removal: str = "constant"             # how perturbations remove voxels (deepseg.explain.removal)
    preserved: bool = True                # also Prediction / Image Preserved (one more re-segmentation per map)
    insertion: bool = True                # also insertion (one more re-segmentation per map and fraction)


# --- models and cases ---------------------------------------------------------------------------------------
def _cue_model():
    from explain_helpers import ArrayModel
    from fixtures.cue_unet import load_cue_unet

    return ArrayModel(load_cue_unet())


def _cue_case():
    from fixtures.cue_unet import make_cue_case

    from deepseg.volume import Volume

    return [Volume(make_cue_case(np.random.default_rng(123), cue=True)[0], name="cue")]


def _liver_model():
    from accuracy import pyliverlesionseg_folder

    from deepseg.models.loaders import load_model

    return load_model(pyliverlesionseg_folder(False))


def _totalseg_ct():
    from accuracy import CASES

    return [CASES["totalseg-ct"].load()[0]]


def _meshnet_model(name: str):
    def load():
        from accuracy import SHARED

        from deepseg.models.loaders import load_model

        return load_model(SHARED / "models" / "brainchop" / name)
    return load


def _norm_crop():
    from robustness import norm_crop

    return [norm_crop()]


def _lits117():
    from accuracy import lits117_volumes

    return [lits117_volumes()[0]]


def _nnunet_folder() -> Path:
    from make_nnunet_model import TRAINER, PLANS_NAME, ensure_nnunet_fixture

    return ensure_nnunet_fixture(REPO / "Testing" / "_fixtures") / f"{TRAINER}__{PLANS_NAME}__3d_fullres"


def _nnunet_model():
    from deepseg.models.nnunet import load_nnunet_folder

    return load_nnunet_folder(_nnunet_folder())


def _nnunet_case(size_ijk=(56, 28, 56)):
    def load():
        from make_nnunet_model import make_case

        from deepseg.io import volume_from_sitk

        ct, t1, _ = make_case(1234, size_ijk=size_ijk)
        return [volume_from_sitk(ct, "ct"), volume_from_sitk(t1, "t1")]
    return load


RUNS = [
    Run("cue-unet/generated", _cue_model, _cue_case, "target", background=[0.0],
        note="MONAI U-Net trained to need a cue cube away from the structure; background = noise mean 0"),
    Run("nnunet-fixture/synthetic", _nnunet_model, _nnunet_case(), "liver",
        note="genuine tiny nnU-Net v2 (3d_fullres, 2 folds) on a generated two-channel case"),
    # one re-segmentation of LiTS 117 takes ~4 min on the shared cores: one method, one fraction
    Run("liver/lits117", _liver_model, _lits117, "Liver", fractions=(0.05,), methods=("gradcam",),
        note="pyliverlesionseg liver U-Net on LiTS case 117 (assumed 1.5 mm)"),
    # the real models with imputed removal (constant removal saturates: any scattered 5 % kills the liver)
    Run("nnunet-fixture/synthetic imputed", _nnunet_model, _nnunet_case(), "liver", removal="impute",
        methods=("gradcam", "occlusion")),
    Run("liver/totalseg-ct imputed", _liver_model, _totalseg_ct, "Liver", fractions=(0.05,),
        methods=("occlusion", "gradcam"), removal="impute", insertion=False, preserved=False,
        note="pyliverlesionseg liver U-Net on the TotalSegmentator example CT (35-100 s per re-segmentation on "
             "the shared cores; its Grad-CAM needs ~12 GB)"),
    *[Run(f"meshnet-{m}/norm-crop {s} imputed", _meshnet_model(m), _norm_crop, s, fractions=(0.05,),
          methods=("occlusion", "gradcam"), removal="impute")
      for m, s in (("model5_gw_ae", "White Matter"), ("model5_gw_ae", "Grey Matter"),
                   ("model18cls", "Cerebral-Cortex"))],
]
# cost runs: the liver model on LiTS, nnU-Net on a CT-sized volume (the fixture model on a large generated case)
COST_RUNS = {
    "liver": Run("liver/lits117", _liver_model, _lits117, "Liver"),
    "nnunet-ct-sized": Run("nnunet-fixture/ct-sized 256x128x256", _nnunet_model, _nnunet_case((256, 128, 256)), "liver"),
    "nnunet-medium": Run("nnunet-fixture/128x64x128", _nnunet_model, _nnunet_case((128, 64, 128)), "liver"),
    "cue": Run("cue-unet/generated", _cue_model, _cue_case, "target"),
}


# --- measurements -----------------------------------------------------------------------------------------
def _first_to_go() -> None:
    """On a shared machine, let the kernel's out-of-memory killer pick this process first."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def measure(kind: str, run_key: str) -> dict:
    """One plain inference or one explanation, in this (fresh) process: wall time and peak RSS."""
    import resource

    _first_to_go()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    run = COST_RUNS[run_key]
    model, channels = run.model(), run.case()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "plain":
        from deepseg.inference.pipeline import segment

        segment(model, channels, device="cpu")
    else:
        from deepseg.explain import explain

        explain(model, channels, run.segment, method=kind, device="cpu")
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": base / 1024}


def _in_subprocess(kind: str, run_key: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, run_key], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"exit code {out.returncode} (-9: killed, e.g. out of memory) {out.stderr[-300:]}".strip())
    return json.loads(out.stdout.strip().splitlines()[-1])


def cost(run_key: str, methods: Sequence[str] = ("gradcam", "layer-sum")) -> list[str]:
    plain = _in_subprocess("plain", run_key)
    rows = []
    for m in methods:
        e = _in_subprocess(m, run_key)
        rows.append(f"| {COST_RUNS[run_key].name} | {m} | {plain['seconds']:.1f} | {e['seconds']:.1f} | "
                    f"{e['seconds'] / plain['seconds']:.2f} | {plain['peak_rss_mb']:.0f} | {e['peak_rss_mb']:.0f} | "
                    f"{e['peak_rss_mb'] / plain['peak_rss_mb']:.2f} |")
        print(rows[-1], flush=True)
    return rows


def combined(run: Run, method: str = "gradcam") -> tuple[list[str], list[str]]:
    """For slow models: in one process, one plain inference, one explanation (time; peak RSS read
    after each, so the second is the larger of the two), then the faithfulness of that map against
    the random map -- one model load and one explanation instead of three."""
    import resource

    from deepseg.explain import explain
    from deepseg.explain.faithfulness import evaluate_map, model_segmenter, random_map
    from deepseg.inference.pipeline import segment

    _first_to_go()
    model, channels = run.model(), run.case()
    t0 = time.perf_counter()
    segment(model, channels, device="cpu")
    t_plain, rss_plain = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = explain(model, channels, run.segment, method=method, device="cpu")
    t_exp, rss_exp = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cost_row = (f"| {run.name} | {method} | {t_plain:.1f} | {t_exp:.1f} | {t_exp / t_plain:.2f} | {rss_plain:.0f} | "
                f"{rss_exp:.0f} | {rss_exp / rss_plain:.2f} |")
    print(cost_row, flush=True)
    segmenter = model_segmenter(model, "cpu")
    labels, value = res.labels.array, res.info["value"]
    scores = {name: evaluate_map(segmenter, channels, labels, value, heat, fractions=run.fractions,
                                 background=run.background, preserved=False)
              for name, heat in ((method, res.heatmap.array), ("random map", random_map(labels.shape)))}
    return _rows(run, scores, pp=False), [cost_row]


def _rows(run: Run, scores: dict, pp: bool = True) -> list[str]:
    rnd, dist = scores["random map"], scores.get("distance baseline")
    baselines = ("random map", "distance baseline")
    rows = []
    for name, s in scores.items():
        beats = "" if name in baselines or not s.insertion else (
            "yes" if s.deletion_mean > rnd.deletion_mean and s.insertion_mean > rnd.insertion_mean else "no")
        both = "" if name in baselines or dist is None or 0.05 not in s.deletion else (
            "yes" if s.deletion[0.05] > max(rnd.deletion[0.05], dist.deletion[0.05]) else "no")
        dels = " / ".join(f"{s.deletion[k]:.3f}" for k in run.fractions)
        ins = " / ".join(f"{s.insertion[k]:.3f}" if k in s.insertion else "not run" for k in run.fractions)
        pp_ip = f"{s.prediction_preserved:.2f} | {s.image_preserved:.3f}" if pp else "not run | not run"
        rows.append(f"| {run.name} | {name} | {dels} | {ins} | {pp_ip} | {beats} | {both} |")
    return rows


def faithfulness(run: Run, reuse_maps: bool = False) -> list[str]:
    """Baselines first, then each method's map scored as soon as it is made (slow models report what
    finished); every score is printed as it comes.  ``reuse_maps``: score the map this run saved last time
    instead of making it again."""
    from deepseg.explain import explain
    from deepseg.explain.faithfulness import distance_map, evaluate_map, model_segmenter, random_map
    from deepseg.models.base import SegmentationModel

    model, channels = run.model(), run.case()
    assert isinstance(model, SegmentationModel)
    segmenter = model_segmenter(model, "cpu")
    labels = segmenter(channels)
    value = model.card.label(run.segment).value
    scores = {}

    def score(name: str, heat: np.ndarray) -> None:
        scores[name] = evaluate_map(segmenter, channels, labels, value, heat, fractions=run.fractions,
                                    background=run.background, removal=run.removal, insertion=run.insertion,
                                    preserved=run.preserved)
        print(f"{run.name}: {name}: {scores[name].to_json()}", flush=True)

    score("random map", random_map(labels.shape))
    score("distance baseline", distance_map(labels == value, channels[0].spacing))
    for m in run.methods:
        saved = WORK / f"{run.name.replace('/', '_').replace(' ', '_')}-{m}.npy"
        if reuse_maps and saved.exists():  # re-score a map made earlier (e.g. after a pipeline change)
            print(f"{run.name}: {m} map reused from {saved.name} (made {time.ctime(saved.stat().st_mtime)})",
                  flush=True)
            score(m, np.load(saved))
            print("\n".join(_rows(run, scores, pp=run.preserved)), flush=True)
            continue
        t0 = time.perf_counter()
        res = explain(model, channels, run.segment, method=m, device="cpu")
        WORK.mkdir(exist_ok=True)
        np.save(saved, res.heatmap.array)
        print(f"{run.name}: {m} map in {time.perf_counter() - t0:.1f} s, of which segmentation "
              f"{res.info['seconds']['segment']:.1f} s (layers {res.info['layers']})", flush=True)
        score(m, res.heatmap.array)
        print("\n".join(_rows(run, scores, pp=run.preserved)), flush=True)
    return _rows(run, scores, pp=run.preserved)


def _keys(text: "str | None", default: Sequence[str]) -> list[str]:
    if text is None:
        return list(default)
    return [] if text == "none" else [k.strip() for k in text.split(",") if k.strip()]


def _not_measured(name: str, exc: Exception) -> str:
    return f"| {name} | (not measured: {type(exc).__name__}: {' '.join(str(exc).split())[:150]}) |||||||"


FAITH_HEADER = ["| run | map | deletion: Dice lost at top k% | insertion: Dice at top k% | Prediction Preserved | "
                "Image Preserved | beats random | deletion at 5% beats random and distance |",
                "|---|---|---|---|---|---|---|---|"]
COST_HEADER = ["| run | method | plain inference s | explanation s | time ratio | plain peak RSS MB | "
               "explanation peak RSS MB | memory ratio |", "|---|---|---|---|---|---|---|---|"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="faithfulness runs whose name contains one of these (comma-separated; 'none')")
    ap.add_argument("--methods", help="override the methods of the selected faithfulness runs (comma-separated, "
                                      "in this order; the baselines always run)")
    ap.add_argument("--reuse-maps", action="store_true",
                    help=f"score the maps saved by an earlier run ({WORK.name}/RUN-METHOD.npy) instead of making them")
    ap.add_argument("--cost", help="cost runs (comma-separated; 'none'): " + ", ".join(COST_RUNS))
    ap.add_argument("--cost-methods", default="gradcam,layer-sum", help="methods timed in the cost runs")
    ap.add_argument("--combined", help="slow runs measured in one process (cost + faithfulness of one map): "
                                       + ", ".join(COST_RUNS))
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--measure", nargs=2, metavar=("KIND", "RUN"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    command = "python benchmarks/faithfulness.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    faith, costs = list(FAITH_HEADER), list(COST_HEADER)
    keys = _keys(args.only, ["cue", "nnunet"])
    for run in RUNS:
        if any(k in run.name for k in keys):
            if args.methods:
                run = replace(run, methods=tuple(_keys(args.methods, [])))
            try:
                rows = faithfulness(run, args.reuse_maps)
            except Exception as exc:  # a model that is not available here is reported, not hidden
                rows = [_not_measured(run.name, exc)]
            faith += [f"| {run.name} | k = " + " / ".join(f"{k:.0%}" for k in run.fractions) + " | | | | | | |"] + rows
            print("\n".join(rows), flush=True)
    for key in _keys(args.combined, []):
        run = COST_RUNS[key]
        run = next((r for r in RUNS if r.name == run.name), run)
        try:
            rows, cost_rows = combined(run)
        except Exception as exc:
            rows, cost_rows = [_not_measured(run.name, exc)], []
        faith += [f"| {run.name} | k = " + " / ".join(f"{k:.0%}" for k in run.fractions) + " | | | | | | |"] + rows
        costs += cost_rows
    for key in _keys(args.cost, ["nnunet-ct-sized"]):
        try:
            costs += cost(key, _keys(args.cost_methods, []))
        except Exception as exc:
            costs.append(_not_measured(COST_RUNS[key].name, exc))
    text = "\n".join((faith if len(faith) > 2 else []) + [""] + (costs if len(costs) > 2 else []))
    print(text)
    if args.no_record:
        return 0
    with open(RESULTS, "a") as fh:
        fh.write(f"\n## Explainability: faithfulness and cost (explain)\n\n`{command.strip()}` "
                 f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2 shared CPU cores)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
