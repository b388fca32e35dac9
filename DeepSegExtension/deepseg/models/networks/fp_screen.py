"""False-positive screening: a small classifier that keeps or removes each predicted component.

Every connected component (26-connectivity) of every predicted class is described by a few
scale-free features — its physical size, its size relative to the class's largest component,
the network's confidence inside it, how compact it is and the intensity statistics of the
(normalised) image under it — plus the class (one-hot).  A two-layer MLP scores the probability
that the component is a true structure; components scoring below the threshold are set to
background.  The classifier is trained on components of training-set predictions labelled by
their overlap with the ground truth (``fit``), and its feature standardisation is stored with its
weights so that one ``state_dict`` carries everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy import ndimage
from torch import nn

FEATURE_NAMES = ("log_volume_mm3", "relative_volume", "mean_probability", "min_probability",
                 "max_probability", "fill_ratio", "mean_intensity", "std_intensity")


@dataclass
class Components:
    """Connected components of a class-index map: ``ids`` (int32 map, 0 = none), ``classes``
    (class index of component ``n`` at ``classes[n-1]``) and ``features`` ``(n, len(FEATURE_NAMES))``."""

    ids: np.ndarray
    classes: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def find_components(index_map: np.ndarray, probabilities: np.ndarray, intensity: Optional[np.ndarray],
                    voxel_volume_mm3: float) -> Components:
    """Components of every foreground class of ``index_map`` (class indices, 0 = background) and
    their features; ``probabilities`` is ``(K, ...)`` on the same grid, ``intensity`` optional."""
    ids = np.zeros(index_map.shape, dtype=np.int32)
    classes, rows = [], []
    structure = np.ones((3, 3, 3), dtype=bool)
    for c in range(1, probabilities.shape[0]):
        comp, n = ndimage.label(index_map == c, structure=structure)
        if n == 0:
            continue
        labels = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(np.ones_like(comp, dtype=np.float32), comp, labels)
        prob = probabilities[c]
        boxes = ndimage.find_objects(comp)
        fill = np.array([s / np.prod([sl.stop - sl.start for sl in box]) for s, box in zip(sizes, boxes)])
        if intensity is not None:
            mean_i = ndimage.mean(intensity, comp, labels)
            std_i = ndimage.standard_deviation(intensity, comp, labels)
        else:
            mean_i = std_i = np.zeros(n)
        rows.append(np.stack([
            np.log10(sizes * voxel_volume_mm3 + 1.0), sizes / sizes.max(),
            ndimage.mean(prob, comp, labels), ndimage.minimum(prob, comp, labels),
            ndimage.maximum(prob, comp, labels), fill, mean_i, std_i], axis=1))
        ids[comp > 0] = comp[comp > 0] + len(classes)
        classes += [c] * n
    features = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return Components(ids, np.asarray(classes, dtype=np.int64), features)


def remove_components(labels: np.ndarray, components: Components, remove: np.ndarray) -> np.ndarray:
    """``labels`` with the components flagged in ``remove`` (bool per component) set to 0."""
    if not np.any(remove):
        return labels
    drop = np.concatenate([[False], np.asarray(remove, dtype=bool)])
    out = labels.copy()
    out[drop[components.ids]] = 0
    return out


class ComponentScreen(nn.Module):
    """MLP scoring components as true structures (1) or false positives (0)."""

    def __init__(self, num_classes: int, hidden: int = 16, threshold: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.threshold = threshold
        n_features = len(FEATURE_NAMES)
        self.mlp = nn.Sequential(nn.Linear(n_features + num_classes - 1, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("trained", torch.tensor(False))

    def _inputs(self, features: np.ndarray, classes: np.ndarray) -> torch.Tensor:
        x = (torch.as_tensor(features, dtype=torch.float32) - self.feature_mean) / self.feature_std
        onehot = nn.functional.one_hot(torch.as_tensor(classes) - 1, self.num_classes - 1).float()
        return torch.cat([x, onehot], dim=1)

    def score(self, components: Components) -> np.ndarray:
        """Probability that each component is a true structure."""
        if len(components) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.no_grad():
            return torch.sigmoid(self.mlp(self._inputs(components.features, components.classes))[:, 0]).numpy()

    def fit(self, features: np.ndarray, classes: np.ndarray, is_true: np.ndarray, epochs: int = 400,
            lr: float = 0.01, seed: int = 0) -> list[float]:
        """Train on component features labelled true (1) / false positive (0); class-balanced BCE.
        Returns the loss per epoch."""
        torch.manual_seed(seed)
        self.feature_mean.copy_(torch.as_tensor(features.mean(0), dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(features.std(0) + 1e-6, dtype=torch.float32))
        x = self._inputs(features, classes)
        y = torch.as_tensor(is_true, dtype=torch.float32)
        n_pos = float(y.sum())
        pos_weight = torch.tensor((len(y) - n_pos) / n_pos if 0 < n_pos < len(y) else 1.0)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        opt = torch.optim.Adam(self.mlp.parameters(), lr=lr, weight_decay=1e-4)
        history = []
        with torch.enable_grad():
            for _ in range(epochs):
                opt.zero_grad()
                loss = loss_fn(self.mlp(x)[:, 0], y)
                loss.backward()
                opt.step()
                history.append(loss.item())
        self.trained.fill_(True)
        return history
