"""Train a card model's networks and its false-positive screen.

Training data go through the model's own ``prepare`` (normalisation, resampling), so a network
is trained on exactly what it will see at inference; label maps are resampled to the network grid
with nearest neighbour.  Networks with their own ``loss`` (Render 3D U-Net: deep supervision +
point loss) use it; the others use MONAI's Dice + cross-entropy.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..inference.preprocess import resample_array
from ..models.card_model import CardModel
from ..progress import Progress
from ..volume import Volume

log = logging.getLogger(__name__)

Case = tuple[Sequence[Volume], np.ndarray]
"""Input channels and the ground-truth label map (label *values*) on the first channel's grid."""


def training_arrays(model: CardModel, cases: Sequence[Case]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Network-space images ``(C, z, y, x)`` and class-index targets ``(z, y, x)`` for ``cases``."""
    images, targets = [], []
    for channels, labels in cases:
        prepared = model.prepare(channels)
        images.append(prepared.image)
        targets.append(resample_array(model.class_index(labels), new_shape=prepared.image.shape[1:], order=0))
    return images, targets


def _batch(images, targets, patch, rng, batch_size):
    xs, ys = [], []
    for n in rng.integers(0, len(images), batch_size):
        img, tgt = images[n], targets[n]
        starts = [int(rng.integers(0, max(1, s - p) + 1)) for s, p in zip(tgt.shape, patch)]
        sl = tuple(slice(s, s + p) for s, p in zip(starts, patch))
        x, y = img[(slice(None), *sl)], tgt[sl]
        pad = [(0, max(0, p - s)) for s, p in zip(y.shape, patch)]
        x, y = np.pad(x, [(0, 0)] + pad), np.pad(y, pad)
        for axis in range(3):  # mirror augmentation
            if rng.random() < 0.5:
                x, y = np.flip(x, axis + 1), np.flip(y, axis)
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)[:, None].astype(np.int64))


def train_network(net: torch.nn.Module, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                  patch_size: Sequence[int], iterations: int, batch_size: int = 2, lr: float = 3e-3,
                  seed: int = 0, progress: Optional[Progress] = None,
                  on_step: Optional[Callable[[int, float], None]] = None) -> list[float]:
    """Train ``net`` on random patches (AdamW, polynomial learning-rate decay); returns the loss
    of every iteration and leaves ``net`` in eval mode."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    progress = progress or Progress()
    loss_fn = getattr(net, "loss", None)
    if loss_fn is None:
        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        loss_fn = lambda out, y: dice_ce(out, y)  # noqa: E731
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - it / iterations) ** 0.9)
    net.train()
    losses = []
    with torch.enable_grad():
        for it in range(iterations):
            x, y = _batch(images, targets, patch_size, rng, batch_size)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if on_step:
                on_step(it, losses[-1])
            progress.step(it + 1, iterations)
    net.eval()
    return losses


def predict_case(model: CardModel, channels: Sequence[Volume]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and (unrefined) label map of one case on its input grid, on the CPU."""
    prepared = model.prepare(channels)
    logits = model.predict_logits(prepared, device="cpu", tta=False, overlap=None, progress=Progress())
    probabilities = model.restore(logits, prepared)
    return probabilities, model.labels_from_probabilities(probabilities)


def screen_examples(model: CardModel, cases: Sequence[Case], *, low_thresholds: Sequence[float] = (0.2,),
                    true_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of the model's predictions on ``cases``: features, classes and true/false flags.

    A component is *true* when at least ``true_fraction`` of its voxels carry its class in the
    ground truth.  Besides the arg-max label map, maps thresholded at ``low_thresholds`` (a voxel
    joins its most likely foreground class once that class's probability exceeds the threshold)
    add more, harder false-positive candidates.
    """
    features, classes, is_true = [], [], []
    for channels, gt in cases:
        probabilities, labels = predict_case(model, channels)
        gt_index = model.class_index(gt)
        fg = probabilities[1:]
        # background channel 1 where no foreground class exceeds t: the arg-max then keeps background
        candidates = [labels] + [model.labels_from_probabilities(np.concatenate([(fg.max(0) <= t)[None], fg]))
                                 for t in low_thresholds]
        for cand in candidates:
            comps = model.components(cand, probabilities, channels[0])
            if len(comps) == 0:
                continue
            agree = ndimage.mean(gt_index == model.class_index(cand), comps.ids, np.arange(1, len(comps) + 1))
            features.append(comps.features)
            classes.append(comps.classes)
            is_true.append(np.asarray(agree) >= true_fraction)
    if not features:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(features), np.concatenate(classes), np.concatenate(is_true)


def fit_fp_screen(model: CardModel, examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  epochs: int = 400) -> dict:
    """Fit every fold's false-positive classifier on ``screen_examples`` outputs (pooled); returns
    the counts of true and false components it learnt from."""
    examples = [e for e in examples if len(e[2])]
    if not examples:
        log.warning("No predicted components to train the false-positive screen on; it stays disabled.")
        return {"components": 0, "false_positives": 0}
    f, c, t = (np.concatenate([e[i] for e in examples]) for i in range(3))
    for net in model.networks.values():
        net.fp_screen.fit(f, c, t, epochs=epochs)
    return {"components": int(len(t)), "false_positives": int((~t).sum())}


def train_fp_screen(model: CardModel, cases: Sequence[Case], epochs: int = 400, **kwargs) -> dict:
    """``fit_fp_screen`` on the components of the current predictions on ``cases``."""
    return fit_fp_screen(model, [screen_examples(model, cases, **kwargs)], epochs=epochs)
