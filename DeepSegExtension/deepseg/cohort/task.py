"""What a Dask worker does for one case: skip it if it is already done, else segment it with the worker's
model (loaded once per worker process) and move the finished case folder into place in one rename.

A case is written into ``OUT/.partial/<case>-<id>/`` and renamed to ``OUT/<case>/`` only when every file
is there, so a killed worker or Ctrl-C never leaves a partial ``OUT/<case>/``, and a case run twice (a
worker that was presumed dead) can only land once.  ``OUT/<case>/batch.json`` records the sha256 of the
inputs and of the settings and the case's files, which is how a re-run recognises finished cases (a case
whose files were deleted since is made again).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import Cancelled, DeepSegError, InputError
from ..options import SegmentOptions
from ..progress import CancelToken
from .cases import Case

RECORD = "batch.json"
PARTIAL = ".partial"


@dataclass(frozen=True)
class Job:
    """Everything a worker needs besides the case; pickled once per task (small)."""
    out_dir: str
    plugin: str                      # name of the ModelCache plugin on the workers
    options: SegmentOptions          # the run options of every case (overwrite: replace stale case folders)
    settings_sha256: str
    cancel_event: str                # name of the distributed.Event set on Ctrl-C
    labelmap: bool = False
    measure: bool = False
    export: tuple[str, ...] = ()


@dataclass
class ModelCache(WorkerPlugin):
    """Dask worker plugin: the model, loaded on first use and kept for every later case of this worker
    process (a restarted worker gets the plugin again and loads once more).  Also sets PyTorch's threads
    and, with GPUs, the worker's own GPU."""
    name: str
    model_ref: str
    folds: Optional[tuple] = None
    threads: Optional[int] = None
    device: str = "auto"
    gpus: tuple = ()
    loads: int = field(default=0, init=False)
    load_seconds: float = field(default=0.0, init=False)

    def setup(self, worker) -> None:
        self._lock = threading.Lock()
        self._model = None
        if self.gpus and isinstance(worker.name, int):
            self.device = f"cuda:{self.gpus[worker.name % len(self.gpus)]}"
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def teardown(self, worker) -> None:
        self._model = None

    def model(self):
        with self._lock:
            if self._model is None:
                from ..models.loaders import load_model

                t0 = time.perf_counter()
                self._model = load_model(self.model_ref, folds=list(self.folds) if self.folds else None)
                self.loads += 1
                self.load_seconds = time.perf_counter() - t0
            return self._model


class ClusterCancel(CancelToken):
    """A cancel token that also follows a cluster-wide ``distributed.Event`` (checked at most once a second),
    so Ctrl-C on the client stops cases running on remote workers at their next step."""

    def __init__(self, event_name: str) -> None:
        super().__init__()
        self._name = event_name
        self._checked = 0.0

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and time.monotonic() - self._checked > 1.0:
            from distributed import Event

            self._checked = time.monotonic()
            if Event(self._name).is_set():
                self._event.set()
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled()


def input_sha256(inputs: "tuple[str, ...]") -> str:
    """sha256 over every input file's name and bytes (all files of a DICOM series folder, sorted)."""
    h = hashlib.sha256()
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            raise InputError(f"Input {p} does not exist.", "Check the path (and that the file was fully copied).")
        for f in sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run_case(case: Case, job: Job) -> dict:
    """Segment one case on this worker; returns its cohort row (never raises for a bad case)."""
    from distributed import get_worker

    started = time.perf_counter()
    worker = get_worker()
    cache: ModelCache = worker.plugins[job.plugin]
    row: dict = {"case": case.name, "worker": worker.address, "error": "", "fix": "", "volumes": []}
    out = Path(job.out_dir)
    stage = out / PARTIAL / f"{case.name}-{uuid.uuid4().hex[:8]}"
    try:
        digest = input_sha256(case.inputs)
        final = out / case.name
        previous = read_record(final)
        same = bool(previous) and previous["input_sha256"] == digest and previous["settings_sha256"] == job.settings_sha256
        if same and not _missing_outputs(final, previous):
            row.update(status="skipped", volumes=previous["volumes"])
        elif final.exists() and not same and not job.options.overwrite:  # same run, outputs missing: made again
            why = "other inputs or settings" if previous else "something other than deepseg batch"
            raise InputError(f"{final} already holds results made from {why}.",
                             "Pass --overwrite to replace them, or choose another --output-dir.")
        else:
            stage.mkdir(parents=True)
            volumes = _segment(case, job, cache, stage, ClusterCancel(job.cancel_event))
            (stage / RECORD).write_text(json.dumps({
                "case": case.name, "inputs": list(case.inputs), "input_sha256": digest,
                "files": sorted(p.name for p in stage.iterdir()),
                "settings_sha256": job.settings_sha256, "volumes": volumes, "worker": worker.address,
                "seconds": round(time.perf_counter() - started, 3), "finished": time.time()}, indent=2))
            _publish(stage, final, out)
            row.update(status="done", volumes=volumes)
    except Cancelled:
        row.update(status="cancelled")
    except DeepSegError as exc:
        row.update(status="failed", error=exc.problem, fix=exc.fix)
    except Exception as exc:  # a bug or a library error on this case: report it, keep the cohort going
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   fix="Open the case in Slicer to check it; if it looks fine, report this error with the case.")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - started, 3)
    row["worker_stats"] = {"pid": os.getpid(), "model_loads": cache.loads, "model_load_s": round(cache.load_seconds, 3),
                           "peak_rss_bytes": _peak_rss_bytes()}
    return row


def read_record(folder: Path) -> Optional[dict]:
    """``<case folder>/batch.json``: inputs' and settings' sha256, volumes, worker (None if absent)."""
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _missing_outputs(folder: Path, record: dict) -> list[str]:
    """The case's output files (listed in its record) that are no longer in its folder."""
    return [name for name in record.get("files", []) if not (folder / name).is_file()]


def _segment(case: Case, job: Job, cache: ModelCache, stage: Path, cancel: CancelToken) -> list[dict]:
    from ..inference.pipeline import segment

    # the cached model holds the selected folds (as `deepseg segment` loads it); the stage folder is empty
    options = job.options.replace(folds=None, device=cache.device, overwrite=False)
    result = segment(cache.model(), list(case.inputs), output=stage / f"{case.name}.seg.nrrd",
                     labelmap=stage / f"{case.name}_labels.nii.gz" if job.labelmap else None, options=options,
                     cancel=cancel)
    if job.measure:
        from ..io import read_volume
        from ..measure.table import measure_segmentation, write_csv

        rows, spec = measure_segmentation(result.labels, result.label_info, read_volume(case.inputs[0]))
        write_csv(rows, spec, stage / f"{case.name}_measurements.csv")
    if job.export:
        _export(case, job, result, stage)
    cancel.raise_if_cancelled()
    return [{"name": v["name"], "volume_ml": v["volume_ml"]} for v in result.volumes(options.use_tg263)]


def _export(case: Case, job: Job, result, stage: Path) -> None:
    from ..export.dicom_ref import read_reference_series

    if not Path(case.inputs[0]).is_dir():
        raise InputError(f"--export {','.join(job.export)} needs a DICOM series as input; {case.name} is "
                         f"{case.inputs[0]}.", "Run the cohort from DICOM series folders, or leave out --export.")
    ref = read_reference_series(case.inputs[0])
    if "dicom-seg" in job.export:
        from ..export.dicom_seg import write_dicom_seg

        write_dicom_seg(stage / f"{case.name}_seg.dcm", result.labels, result.label_info, ref)
    if "rtstruct" in job.export:
        from ..export.rtstruct import write_rtstruct

        write_rtstruct(stage / f"{case.name}_rtstruct.dcm", result.labels, result.label_info, ref)


def _publish(stage: Path, final: Path, out: Path) -> None:
    """Move the finished case folder into place in one rename (replacing an older one with --overwrite)."""
    old = None
    if final.exists():
        old = out / PARTIAL / f"{final.name}-old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    try:
        os.rename(stage, final)
    except OSError:
        if not (final / RECORD).exists():  # not a twin run of this case that landed first
            if old is not None:
                os.rename(old, final)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
