"""The compiled-network cache's files, and OpenVINO compiling a cached network in the background.

A second run of a converted network needs only the compiled files in the model store; reading and compiling
them (seconds for a TotalSegmentator-sized network) depends on nothing the run does before its sliding window.
A model format that can name its network from its files alone (an ``identity``: for nnU-Net the bytes of the
checkpoint, plans and dataset files) has ``start`` compile the cached network in a thread at the start of the
run, while the main thread imports PyTorch, loads the weights and reads the image (mostly one core's work on
a CPU that has more); ``backends`` then ``take``s it instead of compiling it again. OpenVINO compiles with the
GIL released. Nothing here imports PyTorch, so the thread starts before PyTorch is imported.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
import threading
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

EXPORT_VERSION = "4"  # bump when the export recipe changes, so old cached files are not reused


def cache_root() -> Path:
    """``compiled/`` in the model store (``$DEEPSEG_HOME`` or the per-user data folder)."""
    from ..home import default_home

    return default_home() / "compiled"


def backend_dir(backend: str, root: Optional[Path] = None) -> Path:
    """The cache folder of ``backend`` (its package's version in the name: a new version converts anew; each
    backend is named as its package)."""
    return (root or cache_root()) / f"{backend}-{importlib.metadata.version(backend)}"


def identity_key(identity: str, shape: Sequence[int]) -> str:
    """The cached files' name of the network an ``identity`` names, exported for input ``shape``."""
    text = "|".join([EXPORT_VERSION, identity, str(tuple(int(s) for s in shape)), importlib.metadata.version("torch")])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cpu_threads() -> int:
    """The threads CPU inference runs with: ``OMP_NUM_THREADS``, else every core the process may run on.
    One count, told without importing PyTorch, for the background compilation and the run's (``backends``):
    a compilation for another count is not taken (PyTorch's own count may differ: it reads ``MKL_NUM_THREADS``
    over ``OMP_NUM_THREADS``)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


def requested_backend(choice: Optional[str]) -> str:
    """The backend asked for, lower case; ``auto`` as the environment variable ``DEEPSEG_BACKEND`` names it."""
    choice = (choice or "auto").lower()
    if choice == "auto":
        choice = os.environ.get("DEEPSEG_BACKEND", "auto").lower() or "auto"
    return choice


def likely_openvino(backend: Optional[str], device: Optional[str]) -> bool:
    """Whether ``backends.resolve_backend`` will very likely choose OpenVINO, told without importing PyTorch:
    OpenVINO asked for (or ``auto``) on the CPU, or ``auto`` on a machine without a CUDA or Apple GPU."""
    choice = requested_backend(backend)
    device = (device or "auto").lower()
    if choice not in ("auto", "openvino") or device not in ("auto", "cpu"):
        return False
    gpu = Path("/dev/nvidia0").exists() or Path("/dev/dxg").exists() or \
        (sys.platform == "darwin" and platform.machine() == "arm64") or \
        (sys.platform == "win32" and Path(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvcuda.dll").exists())
    return (device == "cpu" or not gpu) and importlib.util.find_spec("openvino") is not None


def openvino():
    """The ``openvino`` module, imported without its usage telemetry (the ``openvino-telemetry`` package it
    depends on): otherwise importing it, and every conversion, sends events to Google Analytics, each from a
    forked copy of this process (network access nobody asked for, from a process holding patient images;
    and after each fork every page of the GBs this process holds faults again when next written).
    openvino then uses its own no-op stand-in, as when the package is not installed."""
    sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: importing it raises ImportError
    import openvino

    return openvino


@lru_cache(maxsize=1)
def _openvino_core(blob_cache: str):
    core = openvino().Core()
    core.set_property({"CACHE_DIR": blob_cache})
    return core


def openvino_properties(streams: int, threads: int) -> dict:
    """OpenVINO's CPU compile properties, float32 on every CPU. Latency mode: all threads on one call;
    throughput mode: ``streams`` calls at once, threads split among them, not pinned to cores (a stream pinned
    to a core that another program is using cannot move)."""
    hint = {"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                  "NUM_STREAMS": streams, "ENABLE_CPU_PINNING": False}
    return {"INFERENCE_PRECISION_HINT": "f32", **hint, "INFERENCE_NUM_THREADS": max(threads, streams)}


def compile_openvino(xml: Path, streams: int, threads: int):
    """OpenVINO's compiled network of a cached ``xml`` (its compiled blob cached next to it)."""
    core = _openvino_core(str(xml.parent / "blobs"))
    return core.compile_model(str(xml), "CPU", openvino_properties(streams, threads))


_PENDING: dict[tuple[str, int, int], Future] = {}
_LOCK = threading.Lock()


def start(identity: Callable[[], Optional[str]], shape: Sequence[int], streams: int, threads: int,
          root: Optional[Path] = None) -> None:
    """In a background thread: tell the network's ``identity`` (hashing files takes time too) and, if the cache
    holds its OpenVINO network for input ``shape`` (a first run has nothing to read: it exports as before),
    compile it for ``take``."""
    def work() -> None:
        try:
            name = identity()  # None: the files changed while being read
            xml = backend_dir("openvino", root) / f"{identity_key(name, shape)}.xml" if name else None
            if xml is None or not xml.is_file():
                return
            pending: Future = Future()
            with _LOCK:
                if (str(xml), streams, threads) in _PENDING:
                    return
                _PENDING[str(xml), streams, threads] = pending
        except Exception as exc:  # noqa: BLE001 - the run loads and compiles as without this
            log.debug("no background compilation (%s)", exc)
            return
        try:
            pending.set_result(compile_openvino(xml, streams, threads))
        except BaseException as exc:  # the run compiles it again in the main thread and reports what fails
            pending.set_exception(exc)

    threading.Thread(target=work, name="deepseg-precompile", daemon=True).start()


def take(xml: Path, streams: int, threads: int):
    """The network ``start`` compiled for these files and settings (waiting for it), or None. Compilations of
    the same files for other settings are dropped too: the run compiles its own and nothing would take them (an
    image with fewer patches than threads runs fewer streams), while a long-lived process (Slicer) would keep
    each (GBs for a CT-sized network)."""
    with _LOCK:
        same_files = [key for key in _PENDING if key[0] == str(xml)]
        pending = {key: _PENDING.pop(key) for key in same_files}.get((str(xml), streams, threads))
    if pending is None:
        return None
    try:
        return pending.result()
    except Exception as exc:
        log.debug("background compilation of %s failed (%s); compiling again", xml.name, exc)
        return None
