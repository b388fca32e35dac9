"""Safe checkpoint loading: ``torch.load(weights_only=True)`` with a minimal allow-list.

A pickled checkpoint can run arbitrary code when loaded.  We never unpickle anything but tensors,
containers and the few plain types nnU-Net checkpoints carry; anything else is refused with a
message that says why, instead of being executed.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import ModelError


def _allowed_globals() -> list:
    """Types found in genuine nnU-Net v2 checkpoints beyond the default weights-only set."""
    import numpy as np

    allowed: list = []
    try:  # numpy scalars and dtypes in nnU-Net's training log
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar  # type: ignore
    allowed += [scalar, np.dtype, type(np.dtype("float64")), type(np.dtype("float32")), type(np.dtype("int64"))]
    return allowed


def load_checkpoint(path: "str | Path", map_location: str = "cpu"):
    """Load a PyTorch checkpoint without executing code; raise ``ModelError`` for unsafe or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint {path} does not exist.", "Fetch the model again or choose another fold.")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError with the offending global
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise ModelError(f"Checkpoint {path} contains Python objects that are not plain weights "
                             f"and was refused for safety ({_culprit(text)}).",
                             "Only load checkpoints from sources you trust; re-export the weights with "
                             "torch.save(model.state_dict()).") from exc
        raise ModelError(f"Checkpoint {path} could not be read ({type(exc).__name__}: {text[:200]}).",
                         "The file may be truncated or corrupt; fetch it again.") from exc


def _culprit(text: str) -> str:
    """The object torch refused, without torch's advice (to allow-list it or to set ``weights_only=False``,
    which is exactly the unsafe workaround)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in text.splitlines()]
    found = next((ln for ln in lines if re.search(r"unsupported global", ln, re.IGNORECASE)), "")
    found = re.split(r"\. (?:Please|Check|Re-running)|weights_only", found)[0].strip().rstrip(".")
    return found[:200] or "it holds objects outside the weights-only allow-list"
