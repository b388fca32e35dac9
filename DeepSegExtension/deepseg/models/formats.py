"""Model formats: recognise a model folder's format and load it with that format's loader.

Formats register here by name -> ``"module:function"``; each loader takes the model folder (and
optionally folds) and returns a ``SegmentationModel``.  Imports are lazy so one missing optional
dependency never breaks the other formats.  Folders only: catalog ids resolve in ``store``, and
``loaders.load_model`` joins the two.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ..errors import ModelError
from .card import CARD_FILE

if TYPE_CHECKING:
    from .base import SegmentationModel

LOADERS: dict[str, str] = {
    "nnunetv2": "deepseg.models.nnunet:load_nnunet_folder",
    "monai-vnet": "deepseg.models.card_model:load_card_model",
    "monai-unet": "deepseg.models.card_model:load_card_model",
    "render-unet": "deepseg.models.card_model:load_card_model",
    "brainchop-meshnet": "deepseg.models.meshnet:load_meshnet_folder",
    "pyliverlesionseg": "deepseg.models.liver:load_liver_folder",
}

# formats whose networks' identities and input shapes can be read from their files, without PyTorch
# (``inference.precompile`` compiles their cached networks while the run loads): "module:function"
IDENTITIES: dict[str, str] = {"nnunetv2": "deepseg.models.nnunet.folder:compiled_inputs"}


def detect_format(folder: Path) -> str:
    """Which loader a model folder needs, from the files it holds."""
    if (folder / CARD_FILE).exists():
        try:
            return json.loads((folder / CARD_FILE).read_text())["format"]
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{folder / CARD_FILE} is not a valid model card ({exc!r}).",
                             "Re-import the model or fix the card.") from exc
    if (folder / "dataset.json").exists() or (folder / "plans.json").exists() or any(folder.glob("fold_*")):
        return "nnunetv2"
    # an nnU-Net dataset results folder (Trainer__Plans__config/ inside) or an unpacked model zip (one level up)
    if any(p.is_dir() for p in folder.glob("*__*__*")) or any(p.is_dir() for p in folder.glob("*/*__*__*")):
        return "nnunetv2"
    if (folder / "model.json").exists():
        try:
            if "modelTopology" in json.loads((folder / "model.json").read_text()):
                return "brainchop-meshnet"
        except ValueError:
            pass
    raise ModelError(f"{folder} is not a model folder DeepSeg recognises.",
                     f"Expected an nnU-Net v2 results folder (dataset.json, plans.json, fold_N/), a folder "
                     f"with {CARD_FILE}, or a TensorFlow.js MeshNet folder (model.json).")


def load_folder(folder: Path, folds: Optional[Sequence["int | str"]] = None,
                checkpoint: str = "checkpoint_final.pth") -> "SegmentationModel":
    """Load the model in ``folder`` with the loader of its format."""
    fmt = detect_format(folder)
    if fmt not in LOADERS:
        raise ModelError(f"Model format {fmt!r} in {folder} is not supported.",
                         "Supported formats: " + ", ".join(sorted(LOADERS)) + ".")
    module, func = LOADERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)(folder, folds=folds, checkpoint=checkpoint)


def input_channel_count(folder: Path) -> int:
    """How many input images the model in ``folder`` takes, from its card or ``dataset.json`` (no weights
    are read), parsed as the loaders parse them: the cohort reader needs it to tell nnU-Net channel files
    (``case_0001``) from numbered single-channel cases (``patient_0001``)."""
    if (folder / CARD_FILE).exists():
        from .card_model import read_card

        return len(read_card(folder).inputs)
    if detect_format(folder) == "nnunetv2":
        from .nnunet.folder import read_json, select_training_folder
        from .nnunet.folder import input_specs

        return len(input_specs(read_json(select_training_folder(folder) / "dataset.json", "input channels")))
    return 1  # a MeshNet folder without a card: one image


def compiled_inputs(folder: Path, folds: Optional[Sequence["int | str"]] = None) -> list[tuple[Callable[[], Optional[str]], tuple[int, ...]]]:
    """(identity, input shape) of the networks the model in ``folder`` will load with ``folds``, for the formats
    that can tell them from their files (``IDENTITIES``); none for the others."""
    fmt = detect_format(folder)
    if fmt not in IDENTITIES:
        return []
    module, func = IDENTITIES[fmt].split(":")
    return getattr(importlib.import_module(module), func)(folder, folds=folds)
