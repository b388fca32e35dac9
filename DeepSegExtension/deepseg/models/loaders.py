"""``load_model(id_or_folder)``: the one way to get a loaded model from what a user typed
(``as_model`` also passes an already loaded model through).

A folder is loaded as it is; anything else is a catalog id that the local store resolves (fetched
models only; never downloads).  The format is recognised and loaded by ``formats``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .base import SegmentationModel
from .formats import load_folder
from .store import resolve


def load_model(model: "str | Path", folds: Optional[Sequence["int | str"]] = None,
               checkpoint: str = "checkpoint_final.pth") -> SegmentationModel:
    """Load a model from a folder path or a catalog id (fetched models only; never downloads)."""
    return load_folder(resolve(model), folds=folds, checkpoint=checkpoint)


def as_model(model: "str | Path | SegmentationModel",
             folds: Optional[Sequence["int | str"]] = None) -> SegmentationModel:
    """A loaded model as it is (its ``fold_networks`` select folds by name at run time), or the model an id
    or folder names, loaded with ``folds``."""
    return model if isinstance(model, SegmentationModel) else load_model(model, folds=folds)
