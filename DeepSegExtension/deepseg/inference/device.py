"""Device choice (CUDA, then MPS, then CPU), autocast and CPU thread setup."""
from __future__ import annotations

import contextlib
import logging
import os

import torch

from ..errors import InputError
from .precompile import cpu_threads

log = logging.getLogger(__name__)


def resolve_device(choice: "str | torch.device" = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an unavailable explicit choice is an error."""
    if isinstance(choice, torch.device):
        return choice
    choice = (choice or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available to PyTorch.",
                         "Use --device cpu (or auto), or install a CUDA build of PyTorch.")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("MPS was requested but Apple Metal is not available.", "Use --device cpu or auto.")
    if choice not in {"cpu", "mps"} and not choice.startswith("cuda"):
        raise InputError(f"Unknown device {choice!r}.", "Use auto, cpu, cuda, cuda:N or mps.")
    return torch.device(choice)


def use_all_cores() -> None:
    """CPU inference uses every core the process may run on (respecting affinity and OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" in os.environ:
        return  # PyTorch took its count from the environment
    n = cpu_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def autocast(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op elsewhere."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def describe_devices() -> list[dict]:
    """What the device selector shows: each GPU with its memory, then the CPU."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append({"device": f"cuda:{i}", "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append({"device": "mps", "name": "Apple Metal", "memory_gb": None})
    out.append({"device": "cpu", "name": f"CPU ({os.cpu_count()} cores)", "memory_gb": None})
    return out
