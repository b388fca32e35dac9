"""Margins of the test assertions that rest on trained networks, across CPU kernels and training seeds.

A test may assert on a trained network only if its verdict cannot depend on the machine.  The explain
tests use the shipped cue network (``Testing/fixtures/cue_unet.pt``); the Render 3D U-Net test trains
for 40 iterations in the test.  This script recomputes every quantity those tests compare with a
threshold, as ``value - threshold`` (or ``value / threshold`` for ratio thresholds), so the smallest
number is the headroom left:

* the shipped cue weights evaluated with 1 and 2 threads (different float summation orders, as on
  another CPU); inference uses every core unless OMP_NUM_THREADS is set, so run the script once with
  ``OMP_NUM_THREADS=1`` and once without;
* cue networks re-trained with several seeds and 1 or 2 threads (a different CPU's kernels change a
  training run about as much as a different seed does);
* the Render 3D U-Net short training with several seeds and 1 or 2 threads;
* (``--perturb EPS...``) the shipped cue weights with every parameter scaled by ``1 + EPS * N(0, 1)``
  (seeds 0-2): another CPU's kernels change results by about 1e-6 relative, so an assertion whose
  headroom does not move at EPS 1e-5 to 1e-3 has the same verdict on every machine.

    python benchmarks/assertion_margins.py [--seeds 0 1 2 3 4] [--threads 1 2] [--perturb 1e-5 1e-3]
                                           [--no-render] [--no-record]

Results are printed and appended to ``benchmarks/RESULTS.md`` under ``## Test margins``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "Testing"), str(REPO / "Testing" / "explain")]
RESULTS = HERE / "RESULTS.md"


def cue_margins(net) -> dict[str, float]:
    """The cue-network assertions of test_explain.py, test_explain_cli.py and test_uncertainty_faithfulness.py."""
    from explain_helpers import ArrayModel
    from fixtures.cue_unet import CUE, make_cue_case
    from scipy import ndimage

    from deepseg.explain import explain
    from deepseg.explain.faithfulness import distance_map, evaluate_map, model_segmenter, random_map
    from deepseg.volume import Volume

    img, lab = make_cue_case(np.random.default_rng(123), cue=True)
    vol, block = Volume(img, spacing=(1.0, 1.0, 1.0), name="cue"), lab.astype(bool)
    out: dict[str, float] = {}
    cue = np.zeros(vol.shape, bool)
    cue[CUE] = True
    other = ~(cue | block)
    near = ndimage.binary_dilation(cue | block, iterations=2)
    found, ratio, mass = [], [], []
    for method, layer in (("gradcam", None), ("layer-sum", None), ("hirescam", "model.0")):
        for moved in (False, True):
            res = explain(ArrayModel(net, transpose=moved), [vol], "target", method=method, layer=layer, device="cpu")
            heat = res.heatmap.array
            found.append((res.labels.array == 1).sum() / block.sum())
            ratio.append(heat[cue].mean() / heat[other].mean())
            mass.append(heat[near].sum() / heat.sum())
    out["explain: structure found (/0.8)"] = min(found) / 0.8
    out["explain: cue/other mean (/2.5)"] = min(ratio) / 2.5
    out["explain: mass near cue+block (-0.45)"] = min(mass) - 0.45
    model = ArrayModel(net)
    res = explain(model, [vol], "target", method="gradcam", device="cpu")
    seg = model_segmenter(model, "cpu")
    labels = res.labels.array
    kw = dict(fractions=(0.05,), background=[0.0])
    cam = evaluate_map(seg, [vol], labels, 1, res.heatmap.array, **kw)
    rnd = evaluate_map(seg, [vol], labels, 1, random_map(vol.shape), **kw)
    dist = evaluate_map(seg, [vol], labels, 1, distance_map(labels == 1, vol.spacing), **kw)
    out["faithfulness: deletion cam-rnd (-0.3)"] = cam.deletion[0.05] - rnd.deletion[0.05] - 0.3
    out["faithfulness: insertion cam-dist (-0.2)"] = cam.insertion[0.05] - dist.insertion[0.05] - 0.2
    out["faithfulness: insertion cam-rnd (-0.1)"] = cam.insertion[0.05] - rnd.insertion[0.05] - 0.1
    out["faithfulness: 0.2 - image preserved"] = 0.2 - cam.image_preserved
    out["uncertainty: shell/far entropy (/3)"] = _uncertainty_ratio(net, vol, block) / 3
    return out


def _uncertainty_ratio(net, vol, block) -> float:
    """test_uncertainty_maps_ensemble_matches_segment: entropy on the structure's shell vs far from it."""
    from explain_helpers import two_fold_model
    from fixtures.cue_unet import CUE
    from scipy import ndimage

    from deepseg.explain import uncertainty_maps

    img = vol.array.copy()
    for z in (slice(1, 6), slice(18, 23)):
        for x in (slice(1, 6), slice(18, 23)):
            img[z, 1:6, x] = img[CUE]
    vol = vol.with_array(img)
    entropy = uncertainty_maps(two_fold_model(net), [vol], device="cpu").maps["entropy"].array
    shell = ndimage.binary_dilation(block, iterations=1) & ~ndimage.binary_erosion(block, iterations=1)
    far = ~ndimage.binary_dilation(block, iterations=4)
    return float(entropy[shell].mean() / entropy[far].mean())


def render_margins(seed: int) -> dict[str, float]:
    """test_render_unet.py::test_short_training_lowers_loss_and_beats_chance with training seed ``seed``."""
    import torch

    from deepseg.models.card_model import CardModel, build_network
    from deepseg.training.shapes import make_cases, shapes_card
    from deepseg.training.train import predict_case, train_network, training_arrays

    card = shapes_card("render-unet", (24, 24, 24), {"features": [8, 16, 16, 32], "subdivision_points": 1024,
                                                     "train_points": 512})
    torch.manual_seed(seed)
    net = build_network(card)
    model = CardModel(card, {"0": net})
    cases = make_cases(4, seed=5, size=(24, 24, 24))
    images, targets = training_arrays(model, cases)
    losses = train_network(net, images, targets, patch_size=(24, 24, 24), iterations=40, batch_size=2, seed=seed)
    channels, gt = make_cases(1, seed=99, size=(24, 24, 24))[0]
    _, labels = predict_case(model, channels)
    fg, pred = gt > 0, labels > 0
    dice = 2 * (fg & pred).sum() / (fg.sum() + pred.sum())
    return {"render: 0.7 - late/early loss": 0.7 - np.mean(losses[-8:]) / np.mean(losses[:8]),
            "render: dice - chance - 0.2": dice - fg.mean() - 0.2, **_fp_screen_margins(seed)}


def _fp_screen_margins(seed: int) -> dict[str, float]:
    """test_fp_screen_removes_low_scored_and_keeps_high_scored_components with data and training seed ``seed``."""
    from deepseg.models.card_model import CardModel, build_network
    from deepseg.models.networks.fp_screen import FEATURE_NAMES
    from deepseg.training.shapes import shapes_card

    card = shapes_card("render-unet", (16, 16, 16), {"features": [4, 8, 16, 16]})
    model = CardModel(card, {"0": build_network(card).eval()})
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[2:12, 2:12, 2:12] = 1
    labels[15:17, 15:17, 15:17] = 1
    probs = np.zeros((3, 20, 20, 20), np.float32)
    probs[0] = 1
    probs[:, labels == 1] = np.array([0.1, 0.8, 0.1])[:, None]
    from deepseg.volume import Volume

    image = Volume(np.where(labels == 1, 200.0, 0.0).astype(np.float32) + 1)
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 4, 200)
    feats = np.stack([size] + [rng.normal(size=200) for _ in FEATURE_NAMES[1:]], axis=1).astype(np.float32)
    screen = model.networks["0"].fp_screen
    history = screen.fit(feats, np.ones(200, np.int64), size > 2.0, seed=seed)
    comps = model.components(labels, probs, image)
    scores = model.component_scores(comps)
    small, big = comps.ids[16, 16, 16] - 1, comps.ids[5, 5, 5] - 1
    return {"fp screen: 0.5 - last/first loss": 0.5 - history[-1] / history[0],
            "fp screen: threshold - small score": float(screen.threshold - scores[small]),
            "fp screen: big score - threshold": float(scores[big] - screen.threshold)}


def _perturbed(net, eps: float, seed: int):
    """``net`` with every parameter scaled by ``1 + eps * N(0, 1)`` (a stand-in for other kernels' rounding)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1 + eps * torch.randn(p.shape, generator=gen))
    return net


def main() -> None:
    import torch

    from fixtures.cue_unet import load_cue_unet, train_cue_unet

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--perturb", type=float, nargs="*", default=[])
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    t0 = time.time()
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows.append((f"cue, shipped weights, {threads} thread(s)", cue_margins(load_cue_unet())))
        print(rows[-1], flush=True)
        for eps in args.perturb:
            for seed in range(3):
                rows.append((f"cue, shipped weights x (1 + {eps:g} N(0,1)) seed {seed}, {threads} thread(s)",
                             cue_margins(_perturbed(load_cue_unet(), eps, seed))))
                print(rows[-1], flush=True)
    for seed in args.seeds:
        for threads in args.threads:
            torch.set_num_threads(threads)
            rows.append((f"cue, trained seed {seed}, {threads} thread(s)", cue_margins(train_cue_unet(seed=seed))))
            print(rows[-1], flush=True)
            if not args.no_render:
                torch.set_num_threads(threads)  # inference (use_all_cores) raised it to every core
                rows.append((f"render, trained seed {seed}, {threads} thread(s)", render_margins(seed)))
                print(rows[-1], flush=True)
    keys = list(dict.fromkeys(k for _, r in rows for k in r))
    lines = [f"Command: `{shlex.join(['python', 'benchmarks/assertion_margins.py', *sys.argv[1:]])}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - t0:.0f} s). Each cell is "
             "the headroom of one test assertion (`-x`: value minus threshold, `/x`: value over threshold; "
             "the test fails below 0 or 1 respectively); the last row is the smallest of each column.", "",
             "| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
    lines.append("| **minimum** | " + " | ".join(f"**{min(r[k] for _, r in rows if k in r):.3f}**" for k in keys) + " |")
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write("\n## Test margins: assertions on trained networks across kernels and seeds\n\n" + text + "\n")


if __name__ == "__main__":
    main()
