"""DeepSeg core: pretrained 3D segmentation networks on medical volumes, without any GUI import."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import Cancelled, DeepSegError, InputError, ModelError  # noqa: E402
from .volume import Volume  # noqa: E402

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
