"""nnU-Net v2 results folders in DeepSeg's own inference engine (see ``model.py``)."""
from __future__ import annotations

__all__ = ["NnUNetModel", "load_nnunet_folder"]


def __getattr__(name: str):
    """The loader on first use: ``folder`` (which imports no PyTorch) can be used before PyTorch is imported."""
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
