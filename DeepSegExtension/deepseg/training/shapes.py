"""Generated 3D shapes and the learning check: can a card model learn, save, reload and segment?

Each case is a small CT-like volume (Hounsfield-like values, Gaussian noise) holding an ellipsoid
(label 1) and a box (label 2) of random size and position, plus small bright *distractor* blobs
that are not labelled — realistic false-positive bait for the Render 3D U-Net's screening.
``learning_check`` trains a model on such cases, saves it as a card folder, loads it back through
``deepseg.load_model`` and measures Dice on held-out cases through ``deepseg.segment``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..models.card import Code, LabelInfo, ModelCard
from ..volume import Volume
from .train import Case

SHAPE_LABELS = [
    LabelInfo(1, "ellipsoid", (220, 90, 80), type=Code("85756007", "SCT", "Tissue")),
    LabelInfo(2, "box", (80, 130, 220), type=Code("85756007", "SCT", "Tissue")),
]

# Small architectures that train on a CPU in minutes.
SHAPE_ARCHITECTURES = {
    "monai-vnet": {"dropout_prob_down": 0.0, "dropout_prob_up": [0.0, 0.0]},
    "monai-unet": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1},
    "render-unet": {"features": [8, 16, 32, 64], "coarse_level": 1, "subdivision_points": 2048,
                    "train_points": 1024},
}
SHAPE_ITERATIONS = {"monai-vnet": 300, "monai-unet": 300, "render-unet": 500}
"""Training iterations that reach Dice > 0.9 (see benchmarks/RESULTS.md)."""


def make_case(rng: np.random.Generator, size: Sequence[int] = (32, 32, 32), noise: float = 40.0,
              distractors: int = 3, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[Volume, np.ndarray]:
    """One generated volume (``Volume`` in HU-like units) and its label map (values 1, 2)."""
    shape = np.asarray(size)
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    grid = np.stack([zz, yy, xx])
    labels = np.zeros(tuple(shape), dtype=np.uint16)
    # box first, ellipsoid drawn over it where they overlap
    half = rng.uniform(np.minimum(2.5, shape / 6), shape / 5)
    centre = rng.uniform(half + 1, shape - half - 1)
    labels[np.all(np.abs(grid - centre[:, None, None, None]) <= half[:, None, None, None], axis=0)] = 2
    radii = rng.uniform(np.minimum(3.5, shape / 6), shape / 4.5)
    centre = rng.uniform(radii + 1, shape - radii - 1)
    labels[(((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1] = 1
    image = np.where(labels == 1, 200.0, np.where(labels == 2, 100.0, 0.0)).astype(np.float32)
    for _ in range(distractors):
        c = rng.uniform(2, shape - 2)
        blob = ((grid - c[:, None, None, None]) ** 2).sum(0) <= rng.uniform(1.0, 2.2) ** 2
        image[blob & (labels == 0)] = 200.0
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return Volume(image, spacing=tuple(spacing), name="shapes"), labels


def make_cases(n: int, seed: int, size: Sequence[int] = (32, 32, 32), **kwargs) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [((vol,), lab) for vol, lab in (make_case(rng, size, **kwargs) for _ in range(n))]


def shapes_card(fmt: str, patch_size: Sequence[int] = (32, 32, 32), architecture: Optional[dict] = None) -> ModelCard:
    """A card for a model of ``fmt`` on generated shapes (CT window normalisation, 1 mm)."""
    return ModelCard(
        id=f"shapes-{fmt}", title=f"Generated shapes ({fmt})", format=fmt, labels=list(SHAPE_LABELS),
        description="Learning check on generated ellipsoids and boxes; not a clinical model.",
        architecture=dict(SHAPE_ARCHITECTURES[fmt] if architecture is None else architecture),
        preprocessing={"normalization": {"method": "window", "lower": -100, "upper": 300},
                       "target_spacing": [1.0, 1.0, 1.0], "patch_size": list(patch_size), "overlap": 0.5,
                       "mirror_axes": [0, 1, 2]},
        license="Apache-2.0")


def evaluate(model, cases: Sequence[Case]) -> dict:
    """Per-class Dice on ``cases`` through ``deepseg.segment`` (all refinements included)."""
    from ..inference.pipeline import segment
    from ..measure.compare import dice

    per_class: dict[str, list[float]] = {lab.name: [] for lab in model.card.labels}
    unrefined: list[float] = []  # mean Dice of the plain arg-max (before model.refine)
    for channels, gt in cases:
        result = segment(model, list(channels), device="cpu", return_probabilities=True)
        raw = model.labels_from_probabilities(result.probabilities)
        raw_dice = []
        for lab in model.card.labels:
            per_class[lab.name].append(dice(result.labels.array == lab.value, gt == lab.value))
            raw_dice.append(dice(raw == lab.value, gt == lab.value))
        unrefined.append(float(np.mean(raw_dice)))
    dice = {k: float(np.mean(v)) for k, v in per_class.items()}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))),
            "mean_dice_before_refine": float(np.mean(unrefined))}


def learning_check(fmt: str, folder: "str | Path", *, iterations: int = 300, n_train: int = 24, n_test: int = 8,
                   size: Sequence[int] = (32, 32, 32), batch_size: int = 2, lr: float = 3e-3, seed: int = 0,
                   architecture: Optional[dict] = None, on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """Train a ``fmt`` model on generated shapes, save it to ``folder``, reload it with
    ``deepseg.load_model`` and measure held-out Dice through ``deepseg.segment``."""
    from ..models.card_model import CardModel, build_network, save_card_model
    from ..models.loaders import load_model
    from .train import fit_fp_screen, screen_examples, train_network, training_arrays

    torch.manual_seed(seed)
    card = shapes_card(fmt, size, architecture)
    net = build_network(card)
    model = CardModel(card, {"0": net})
    train, test = make_cases(n_train, seed, size), make_cases(n_test, seed + 1000, size)
    images, targets = training_arrays(model, train)
    screening = fmt == "render-unet"
    examples = []  # FP-screen training components, from predictions during and after training

    def step(it: int, loss: float) -> None:
        if on_step:
            on_step(it, loss)
        if screening and it + 1 in (iterations // 5, iterations // 2):
            net.eval()
            examples.append(screen_examples(model, train))
            net.train()

    t0 = time.perf_counter()
    losses = train_network(net, images, targets, patch_size=size, iterations=iterations, batch_size=batch_size,
                           lr=lr, seed=seed, on_step=step)
    report = {"format": fmt, "iterations": iterations, "first_loss": float(np.mean(losses[:10])),
              "final_loss": float(np.mean(losses[-10:]))}
    if screening:
        examples.append(screen_examples(model, train))
        report["fp_screen"] = fit_fp_screen(model, examples)
    report["train_seconds"] = time.perf_counter() - t0
    save_card_model(folder, card, net.state_dict())
    loaded = load_model(Path(folder))
    report.update(evaluate(loaded, test))
    report["in_memory_mean_dice"] = evaluate(model, test)["mean_dice"]
    return report
