"""Card-described PyTorch models: MONAI V-Net, MONAI U-Net and our Render 3D U-Net.

A model folder holds ``deepseg-card.json`` (validated against ``Resources/model-card.schema.json``)
and the weights: ``weights.pt`` (a ``state_dict``) or ``fold_<k>/weights.pt`` for an ensemble.
The card's ``architecture`` gives the network's constructor arguments and ``preprocessing`` the
per-channel intensity normalisation, the target spacing (x, y, z mm; null keeps the input's), the
patch size (z, y, x), overlap, blending and mirror axes.

``prepare`` normalises each channel, then resamples the channels to the target spacing keeping
the grid's extent and direction; ``restore`` resamples the logits back onto the input grid
exactly and applies softmax.  ``refine`` runs the Render 3D U-Net's false-positive screening.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError, ModelError
from ..inference.preprocess import normalize, resample_array, resampled_grid, resampled_shape
from ..io.atomic import write_atomically
from ..resources import resource_path
from ..volume import Volume, check_image
from .base import Prepared, SegmentationModel, WindowSpec, fold_name, select_folds
from .card import CARD_FILE, ModelCard
from .safe_load import load_checkpoint

WEIGHTS_FILE = "weights.pt"
CARD_FORMATS = ("monai-vnet", "monai-unet", "render-unet")


# --- card validation ----------------------------------------------------------------------
def validate_card(data: dict, source: str = "model card") -> ModelCard:
    """Check ``data`` against the card JSON Schema and build the ``ModelCard``; ``ModelError`` lists
    every violation with its location."""
    import jsonschema

    schema = json.loads(resource_path("model-card.schema.json").read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
                             for e in errors[:5])
        raise ModelError(f"The {source} does not follow the model-card schema ({problems}).",
                         "Fix the card (see Resources/model-card.schema.json) or re-download the model.")
    return ModelCard.from_json(data)


def read_card(folder: Path) -> ModelCard:
    path = folder / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{path} does not exist.", "Choose a model folder that holds a DeepSeg model card.") from exc
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}).", "Repair the card or re-download the model.") from exc
    return validate_card(data, str(path))


# --- networks -----------------------------------------------------------------------------
def _divisor(card: ModelCard) -> int:
    """What every patch dimension must be a multiple of for the architecture to fit."""
    if card.format == "monai-vnet":
        return 16
    if card.format == "monai-unet":
        return int(np.prod(card.architecture["strides"]))
    return 1


def build_network(card: ModelCard) -> torch.nn.Module:
    """The untrained network the card describes (channels from ``inputs``, classes from ``labels``)."""
    kwargs = dict(in_channels=len(card.inputs), out_channels=len(card.labels) + 1, **card.architecture)
    try:
        if card.format == "monai-vnet":
            from monai.networks.nets import VNet
            return VNet(spatial_dims=3, **kwargs)
        if card.format == "monai-unet":
            from monai.networks.nets import UNet
            return UNet(spatial_dims=3, **kwargs)
        if card.format == "render-unet":
            from .networks.render_unet import RenderUNet
            return RenderUNet(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"Model {card.id!r}: the card's architecture {card.architecture} cannot build a "
                         f"{card.format} network ({exc}).", "Fix the card's 'architecture' entry.") from exc
    raise ModelError(f"Model {card.id!r} has format {card.format!r}, which is not a card-based format.",
                     "Card-based formats: " + ", ".join(CARD_FORMATS) + ".")


def _weight_files(folder: Path, folds: Optional[Sequence["int | str"]], checkpoint: str) -> dict[str, Path]:
    """Fold name -> weight file of the selected folds (``checkpoint`` if present, else ``weights.pt``);
    a folder without ``fold_<k>`` folders holds one network, fold ``"0"``."""
    fold_dirs = {fold_name(p.name): p for p in sorted(folder.glob("fold_*")) if p.is_dir()} or {"0": folder}
    files = {}
    for name in select_folds(list(fold_dirs), folds, str(folder)):
        files[name] = fold_dirs[name] / (checkpoint if (fold_dirs[name] / checkpoint).is_file() else WEIGHTS_FILE)
    return files


def load_card_model(folder: "str | Path", folds: Optional[Sequence[int]] = None,
                    checkpoint: str = WEIGHTS_FILE) -> "CardModel":
    """Load a card-based model folder (the ``LOADERS`` entry for monai-vnet, monai-unet, render-unet)."""
    folder = Path(folder)
    card = read_card(folder)
    nets = {}
    for fold, path in _weight_files(folder, folds, checkpoint).items():
        net = build_network(card)
        state = load_checkpoint(path)
        if not isinstance(state, Mapping):
            raise ModelError(f"{path} is not a state_dict.", "Save weights with torch.save(model.state_dict()).")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{path} does not match the architecture in the card ({str(exc).splitlines()[0]}).",
                             "Use the card that was saved with these weights.") from exc
        nets[fold] = net.eval()
    return CardModel(card, nets)


def save_card_model(folder: "str | Path", card: "ModelCard | dict",
                    state_dicts: "Mapping | Sequence[Mapping]") -> Path:
    """Write a model folder: the validated card and ``weights.pt`` (one state_dict) or
    ``fold_<k>/weights.pt`` (a list of state_dicts, one per fold).  Files are written to temporary
    names and renamed, so an interrupted save never leaves a half-written weight file."""
    folder = Path(folder)
    data = json.loads(json.dumps(card.to_json() if isinstance(card, ModelCard) else card))  # tuples -> lists
    card_obj = validate_card(data, "card to save")
    build_network(card_obj)  # fail before writing anything if the architecture is unusable
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(state_dicts, Mapping):
        targets = [(folder / WEIGHTS_FILE, state_dicts)]
    else:
        targets = [(folder / f"fold_{k}" / WEIGHTS_FILE, sd) for k, sd in enumerate(state_dicts)]
    for path, sd in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp, sd=sd: torch.save({k: v.detach().cpu() for k, v in sd.items()}, tmp))
    write_atomically(folder / CARD_FILE, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
    return folder


# --- the model ----------------------------------------------------------------------------
class CardModel(SegmentationModel):
    """A MONAI V-Net/U-Net or Render 3D U-Net described by a model card."""

    def __init__(self, card: ModelCard, networks: dict) -> None:
        self.card = card
        self.networks = networks  # fold name -> network
        pre = card.preprocessing
        self.window = WindowSpec(
            patch_size=tuple(int(p) for p in pre["patch_size"]), overlap=float(pre.get("overlap", 0.5)),
            blend=pre.get("blend", "gaussian"), mirror_axes=tuple(pre.get("mirror_axes", (0, 1, 2))))
        divisor = _divisor(card)
        if any(p % divisor for p in self.window.patch_size):
            raise ModelError(f"Model {card.id!r}: patch size {self.window.patch_size} is not a multiple of "
                             f"{divisor}, which {card.format} needs.", f"Use multiples of {divisor} in the card.")

    def normalization_specs(self) -> list[dict]:
        spec = self.card.preprocessing.get("normalization", {"method": "none"})
        specs = spec if isinstance(spec, list) else [spec] * len(self.card.inputs)
        if len(specs) != len(self.card.inputs):
            raise ModelError(f"Model {self.card.id!r} gives {len(specs)} normalisation specs for "
                             f"{len(self.card.inputs)} inputs.", "Give one spec per input channel, or one for all.")
        return specs

    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        self.check_channels(channels)
        reference = channels[0]
        for spec, ch in zip(self.card.inputs, channels):
            check_image(ch, f"input '{spec.name}'")
            if not ch.same_grid(reference):
                raise InputError(f"Input '{spec.name}' is not on the voxel grid of '{self.card.inputs[0].name}'.",
                                 "Resample every channel onto the first one (segment() does this for you).")
        image = np.stack([normalize(ch.array, spec) for ch, spec in zip(channels, self.normalization_specs())])
        target = self.card.preprocessing.get("target_spacing")
        shape = reference.shape if target is None else \
            resampled_shape(reference.shape, reference.spacing[::-1], tuple(target)[::-1])
        image = resample_array(image, new_shape=shape, order=int(self.card.preprocessing.get("resample_order", 1)))
        return Prepared(image.astype(np.float32, copy=False), reference,
                        {"network_grid": resampled_grid(reference, shape)})

    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        """Linear resampling back onto the input grid (the network sees its whole extent: nothing to fill)."""
        maps = torch.as_tensor(maps, dtype=torch.float32).numpy()
        return resample_array(maps, new_shape=prepared.reference.shape, order=1)

    def restore(self, logits, prepared: Prepared) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.to_input_grid(logits, prepared)), dim=0).numpy()

    def class_index(self, labels: np.ndarray) -> np.ndarray:
        """Label values -> output-channel indices (0 = background, ``c`` = ``card.labels[c-1]``);
        values the card does not know map to 0."""
        lut = np.zeros(int(max(max(lab.value for lab in self.card.labels), labels.max(initial=0))) + 1, np.int64)
        lut[[lab.value for lab in self.card.labels]] = np.arange(1, len(self.card.labels) + 1)
        return lut[labels]

    def _screens(self) -> list:
        return [net.fp_screen for net in self.networks.values()
                if getattr(net, "fp_screen", None) is not None and bool(net.fp_screen.trained)]

    def components(self, labels: np.ndarray, probabilities: np.ndarray, reference: Volume):
        """Connected components of a label map with the FP-screening features (``fp_screen``)."""
        from .networks.fp_screen import find_components

        intensity = normalize(reference.array, self.normalization_specs()[0]) \
            if reference.shape == labels.shape else None
        return find_components(self.class_index(labels), probabilities, intensity, reference.voxel_volume_mm3)

    def component_scores(self, components) -> np.ndarray:
        """Mean FP-screening score of each component over the folds' classifiers."""
        return np.mean([s.score(components) for s in self._screens()], axis=0)

    def refine(self, labels: np.ndarray, probabilities: np.ndarray, reference: Volume) -> np.ndarray:
        """Render 3D U-Net: remove components the false-positive classifier scores below its threshold."""
        screens = self._screens()
        if not screens:
            return labels
        from .networks.fp_screen import remove_components

        comps = self.components(labels, probabilities, reference)
        if len(comps) == 0:
            return labels
        return remove_components(labels, comps, self.component_scores(comps) < screens[0].threshold)
