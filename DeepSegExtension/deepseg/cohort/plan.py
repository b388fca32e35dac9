"""How many Dask workers, how many threads each and how much memory each, from the machine and the cases.

Each worker segments one case at a time (one Dask task slot) with ``threads`` PyTorch threads, under a
Dask memory limit: a worker whose process grows past it is restarted by its nanny and the case retried,
so a cohort of large CTs cannot take the machine down.  With GPUs there is one worker per GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..errors import InputError

BYTES_PER_VOXEL = 64       # per input voxel: image, resampled copy, float32 probabilities of a few classes
MIN_CASE_BYTES = 2 << 30   # model weights, PyTorch and the interpreter alone take about a GiB


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int             # PyTorch threads per worker
    memory_limit: int        # bytes per worker (Dask restarts a worker above it)
    gpus: tuple[int, ...] = ()  # GPU index of worker i is gpus[i]

    def describe(self) -> str:
        where = f", GPUs {list(self.gpus)}" if self.gpus else ""
        return (f"{self.workers} worker(s) x {self.threads} thread(s), "
                f"{self.memory_limit / 2**30:.1f} GiB each{where}")


def plan_workers(cores: int, memory: int, gpus: int = 0, case_bytes: int = MIN_CASE_BYTES,
                 workers: Optional[int] = None, threads: Optional[int] = None) -> WorkerPlan:
    """Choose the plan for ``cores`` CPU cores, ``memory`` bytes and ``gpus`` GPUs; explicit values win.

    CPU: about 4 threads per worker on big machines (more processes scale better than more threads in one
    PyTorch), as many workers as fit both the cores and the memory one case needs.  GPU: one worker per GPU."""
    if workers is not None and workers < 1 or threads is not None and threads < 1:
        raise InputError("--workers and --threads-per-worker must be at least 1.", "Leave them out to choose automatically.")
    case_bytes = max(case_bytes, MIN_CASE_BYTES)
    if gpus:
        n = workers or gpus
        t = threads or max(1, cores // n)
        return WorkerPlan(n, t, memory // n, tuple(i % gpus for i in range(n)))
    t = threads or max(1, min(4, cores // 4))
    fit_memory = max(1, int(memory * 0.9) // case_bytes)
    n = workers or max(1, min(cores // t, fit_memory))
    return WorkerPlan(n, t, memory // n)


def case_bytes_estimate(image_inputs: Sequence[Sequence[str]]) -> int:
    """Peak memory one case needs, from the largest voxel count among the given cases' first inputs
    (headers only).  A heuristic: ``--memory-per-worker`` overrides it."""
    voxels = 0
    for inputs in image_inputs:
        voxels = max(voxels, _voxels(inputs[0]) * len(inputs))
    return max(MIN_CASE_BYTES, voxels * BYTES_PER_VOXEL)


def _voxels(path: str) -> int:
    from pathlib import Path

    import SimpleITK as sitk

    p = Path(path)
    try:
        if p.is_dir():  # a DICOM series: slices x rows x columns of the first slice
            files = sorted(f for f in p.iterdir() if f.is_file())
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(files[0]))
            reader.ReadImageInformation()
            size = reader.GetSize()
            return int(size[0] * size[1] * len(files))
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        n = 1
        for s in reader.GetSize():
            n *= int(s)
        return n
    except Exception:  # unreadable or exotic (.mgz): the case itself will report it
        return 0


def parse_bytes(text: str) -> int:
    """``16GB``, ``512MiB``, ``2e9`` -> bytes (Dask's parser)."""
    from dask.utils import parse_bytes as dask_parse

    try:
        return int(dask_parse(text))
    except (ValueError, TypeError) as exc:
        raise InputError(f"Cannot read the memory size {text!r}.", "Write it like 16GB or 512MiB.") from exc
