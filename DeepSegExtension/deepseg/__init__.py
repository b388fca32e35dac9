"""DeepSeg core: pretrained 3D segmentation networks on medical volumes, without any GUI import."""
from __future__ import annotations

from .version import __version__
from .errors import Cancelled, DeepSegError, InputError, ModelError
from .volume import Volume

__all__ = ["__version__", "Volume", "DeepSegError", "InputError", "ModelError", "Cancelled", "segment",
           "read_volume", "load_model", "batch"]


def __getattr__(name: str):
    """Lazy access to the heavy entry points so ``import deepseg`` stays fast (no torch import)."""
    if name == "segment":
        from .inference.pipeline import segment
        return segment
    if name == "batch":
        from .cohort.run import batch
        return batch
    if name == "read_volume":
        from .io import read_volume
        return read_volume
    if name == "load_model":
        from .models.loaders import load_model
        return load_model
    raise AttributeError(name)
