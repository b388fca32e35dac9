"""``batch()``: segment a cohort on Dask distributed (a local cluster by default, or any running scheduler).

The client only plans and bookkeeps: it lists the cases, submits one task per case, writes
``OUT/cohort.csv`` as results arrive and resubmits a case whose worker died (``retries``).  Dask does
the scheduling, worker restarts and memory limits; every task runs ``task.run_case``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..version import __version__
from ..errors import Cancelled, InputError
from ..inference.pipeline import software_versions
from ..models.formats import input_channel_count
from ..options import SegmentOptions
from ..progress import CancelToken
from .cases import Case, find_cases
from .plan import WorkerPlan, case_bytes_estimate, parse_bytes, plan_workers
from .table import CohortTable, write_provenance
from .task import PARTIAL, Job, ModelCache, read_record, run_case

log = logging.getLogger(__name__)
EXPORTS = ("dicom-seg", "rtstruct")


@dataclass
class CohortResult:
    rows: list[dict]          # one per case, in case order (skipped/done/failed)
    counts: dict[str, int]
    cohort_csv: Path
    cohort_json: Path
    seconds: float


@dataclass
class CohortProgress:
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    eta_s: Optional[float] = None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped


def batch(model: "str | Path", inputs: "str | Path", output_dir: "str | Path", *,
          options: Optional[SegmentOptions] = None, workers: Optional[int] = None,
          threads_per_worker: Optional[int] = None, scheduler: Optional[str] = None,
          memory_per_worker: "str | int | None" = None, retries: int = 2, labelmap: bool = False,
          measure: bool = False, export: Sequence[str] = (),
          progress: Optional[Callable[[CohortProgress], None]] = None, cancel: Optional[CancelToken] = None,
          **option_values) -> CohortResult:
    """Segment every case of ``inputs`` (folder, glob or manifest CSV) into ``output_dir/<case>/``.

    Run options are ``deepseg.segment``'s: a ``SegmentOptions`` and/or keywords of the same names (device,
    tta, folds, overlap, keep_largest, ...; ``overwrite`` replaces case folders made with other inputs or
    settings).  Workers: a local Dask cluster sized by ``plan_workers`` unless ``scheduler``
    (``tcp://HOST:PORT``) names a running one.  Finished cases (same input sha256 and settings) are skipped;
    a case whose worker dies is resubmitted up to ``retries`` times; ``cancel`` stops the run, keeping
    finished cases."""
    opts = SegmentOptions.build(options, **option_values)
    if opts.uncertainty:
        raise InputError("deepseg batch does not write uncertainty maps.",
                         "Run `deepseg segment --uncertainty` on the cases to review.")
    unknown = set(export) - set(EXPORTS)
    if unknown:
        raise InputError(f"Unknown export format(s) {sorted(unknown)}.", f"Use {' and/or '.join(EXPORTS)}.")
    out = Path(output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with _exclusive(out):
        model_ref = _resolve_model(model)
        cases = find_cases(inputs, exclude=out, channels=input_channel_count(Path(model_ref)))
        run_settings = {k: v for k, v in opts.settings().items() if k not in ("device", "overwrite")}
        settings = {"model": model_ref, "options": run_settings, "labelmap": labelmap, "measure": measure,
                    "export": sorted(export)}
        settings_sha = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        shutil.rmtree(out / PARTIAL, ignore_errors=True)  # debris of a killed run (we hold the folder's lock)
        token = uuid.uuid4().hex[:8]
        job = Job(str(out), f"deepseg-model-{token}", opts, settings_sha, f"deepseg-cancel-{token}",
                  labelmap, measure, tuple(export))
        plugin = ModelCache(job.plugin, model_ref, opts.folds, threads_per_worker, opts.device)
        provenance = {"deepseg": __version__, "command": "batch", "status": "running", "model": str(model),
                      "model_folder": model_ref, "inputs": str(inputs), "output_dir": str(out), "cases": len(cases),
                      "settings": settings, "settings_sha256": settings_sha, "retries": retries,
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                      "software": software_versions(("dask", "distributed"))}
        table = CohortTable(out, [c.name for c in cases])
        status = "error"
        try:
            plan = None if scheduler else _plan(cases, workers, threads_per_worker, memory_per_worker, opts.device)
            status = _on_cluster(scheduler, plan, plugin, cases, job, table, provenance, retries, token, progress,
                                 cancel or CancelToken())
        finally:
            if status == "cancelled":
                _reconcile(out, cases, table, settings_sha, started)
            if status == "finished" or not scheduler:  # no worker of ours writes any more: clear half-written cases
                shutil.rmtree(out / PARTIAL, ignore_errors=True)
            table.write()
            provenance.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                              seconds=round(time.time() - started, 1), counts=table.counts())
            cohort_json = write_provenance(out, provenance, _worker_stats(table.rows.values()))
    if status == "cancelled":
        raise Cancelled()
    rows = [table.rows[c.name] for c in cases if c.name in table.rows]
    return CohortResult(rows, table.counts(), table.path, cohort_json, time.time() - started)


def _on_cluster(scheduler: Optional[str], plan: Optional[WorkerPlan], plugin: ModelCache, cases: list[Case], job: Job,
                table: CohortTable, provenance: dict, retries: int, token: str,
                progress: Optional[Callable[[CohortProgress], None]], cancel: CancelToken) -> str:
    """Connect (or start local workers), install the model cache on every worker, run; "finished" or "cancelled"."""
    from distributed import Client, Event

    with ExitStack() as stack:
        if plan is None:
            try:
                client = stack.enter_context(Client(scheduler))  # waits distributed.comm.timeouts.connect
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(f"Cannot reach the Dask scheduler at {scheduler} ({exc}).",
                                 "Check the address (tcp://HOST:PORT), that `dask scheduler` runs there and that "
                                 "the port is open; or leave out --scheduler to use local workers.") from exc
        else:
            client = stack.enter_context(Client(_local_cluster(stack, plan)))
            plugin.threads, plugin.gpus = plan.threads, plan.gpus
        log.info("Dask scheduler %s%s", client.scheduler.address, f": {plan.describe()}" if plan else "")
        client.register_plugin(plugin)
        stack.callback(_quietly, client.unregister_worker_plugin, plugin.name)  # frees remote workers' model
        provenance.update(scheduler=client.scheduler.address, plan=plan.__dict__ if plan else None)
        write_provenance(Path(job.out_dir), provenance)
        try:
            _run(client, cases, job, table, retries, token, progress, cancel)
        except (Cancelled, KeyboardInterrupt):
            _quietly(lambda: Event(job.cancel_event, client=client).set())
            return "cancelled"
    return "finished"


def _reconcile(out: Path, cases: list[Case], table: CohortTable, settings_sha: str, started: float) -> None:
    """After a cancel: cases a worker finished in this run while the client was stopping get their row too."""
    for case in cases:
        record = read_record(out / case.name)
        if case.name not in table.rows and record and record["settings_sha256"] == settings_sha \
                and record.get("finished", 0) >= started:
            table.add({"case": case.name, "status": "done", "seconds": record.get("seconds", ""),
                       "worker": record.get("worker", ""), "attempts": "", "error": "", "fix": "",
                       "volumes": record["volumes"]})


def _run(client, cases: list[Case], job: Job, table: CohortTable, retries: int, token: str,
         progress: Optional[Callable[[CohortProgress], None]], cancel: CancelToken) -> None:
    from distributed import as_completed

    attempts = {c.name: 0 for c in cases}
    pending: dict = {}

    def submit(case: Case):
        attempts[case.name] += 1
        future = client.submit(run_case, case, job, key=f"deepseg-{token}-{case.name}-{attempts[case.name]}", pure=False)
        pending[future] = case
        return future

    queue = as_completed([submit(c) for c in cases])
    state = CohortProgress(total=len(cases))
    shown = 0.0
    first_processed = None
    while pending:
        cancel.raise_if_cancelled()
        for future in queue.next_batch(block=False):
            case = pending.pop(future)
            row = _row_of(future, case, attempts[case.name], retries)
            if row is None:
                queue.add(submit(case))
                continue
            if row["status"] == "cancelled":
                raise Cancelled()
            table.add(row)
            table.write(at_most_every_s=len(table.rows) / 500)  # ~0.2 % of the time on rewriting
            if row["status"] != "skipped" and first_processed is None:
                first_processed = time.monotonic() - row["seconds"]
        if progress and time.monotonic() - shown > 0.5:
            shown = time.monotonic()
            _update(state, table, client, token, first_processed)
            progress(state)
        time.sleep(0.1)
    if progress:
        _update(state, table, client, token, first_processed)
        state.running = 0
        progress(state)


def _row_of(future, case: Case, attempt: int, retries: int) -> Optional[dict]:
    """The case's row, or None when its worker died and it should run again."""
    if future.status == "finished":
        row = future.result()
        row["attempts"] = attempt
        return row
    exc = future.exception() if future.status == "error" else None
    if attempt <= retries:
        log.warning("case %s: its worker died (%s); retrying (attempt %d of %d)", case.name, exc, attempt + 1, retries + 1)
        return None
    return {"case": case.name, "status": "failed", "attempts": attempt, "worker": "", "seconds": "",
            "error": f"The worker segmenting this case died {attempt} time(s) ({type(exc).__name__ if exc else 'cancelled'}).",
            "fix": "It most likely ran out of memory: give each worker more (--memory-per-worker, fewer --workers) "
                   "or read the worker log.", "volumes": []}


def _update(state: CohortProgress, table: CohortTable, client, token: str, first_processed: Optional[float]) -> None:
    counts = table.counts()
    state.done, state.failed, state.skipped = counts["done"], counts["failed"], counts["skipped"]
    state.running = _quietly(lambda: sum(1 for keys in client.processing().values() for k in keys
                                         if str(k).startswith(f"deepseg-{token}-")), default=state.running)
    processed = state.done + state.failed
    if processed and first_processed is not None:
        per_case = (time.monotonic() - first_processed) / processed
        state.eta_s = per_case * (state.total - state.finished)


def _plan(cases: list[Case], workers, threads, memory_per_worker, device: str) -> WorkerPlan:
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    gpus = 0
    if str(device).startswith(("auto", "cuda")):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    step = max(1, len(cases) // 8)  # headers of up to 8 cases spread over the cohort
    need = parse_bytes(str(memory_per_worker)) if memory_per_worker else \
        case_bytes_estimate([c.inputs for c in cases[::step][:8]])
    plan = plan_workers(CPU_COUNT, MEMORY_LIMIT, gpus, need, workers, threads)
    if memory_per_worker:
        plan = WorkerPlan(plan.workers, plan.threads, need, plan.gpus)
    return plan


def _local_cluster(stack: ExitStack, plan: WorkerPlan):
    """A LocalCluster on 127.0.0.1: one task slot per worker, PyTorch threads from the plan, the plan's
    memory limit, and no scheduler-side retries (the client retries, the same way for any scheduler)."""
    from distributed import LocalCluster

    threads = str(plan.threads)
    stack.callback(_restore_environ, dict(os.environ))  # registered first: runs after the cluster closed
    cluster = LocalCluster(n_workers=plan.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           memory_limit=plan.memory_limit, dashboard_address=None,
                           scheduler_kwargs={"allowed_failures": 0},
                           env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
    stack.callback(cluster.close)
    return cluster


def _restore_environ(saved: dict) -> None:
    """Put this process's environment back as it was: each local worker's nanny sets its pre-spawn
    variables (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``PYTHONHASHSEED``, ...) in the process that starts
    the cluster (``distributed.nanny.pre-spawn-environ``) and leaves them there; the caller's later runs (Slicer's
    Python, a notebook) would otherwise take their thread counts from them."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update({key: value for key, value in saved.items() if os.environ.get(key) != value})


def _resolve_model(model: "str | Path") -> str:
    """The model's folder (checked now, before any worker starts): a folder path or a fetched catalog id."""
    from ..models.formats import detect_format
    from ..models.store import resolve

    folder = resolve(model)
    detect_format(folder)
    return str(folder.resolve())


class _exclusive:
    """Hold ``OUT/.lock`` so two runs never write the same cohort folder at once (``filelock``: fcntl on
    POSIX, msvcrt on Windows; the OS drops the lock when its process dies)."""

    def __init__(self, out: Path) -> None:
        from filelock import FileLock

        self.path = out / ".lock"
        self.lock = FileLock(str(self.path))

    def __enter__(self):
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout as exc:
            raise InputError(f"Another deepseg batch is writing to {self.path.parent}.",
                             "Wait for it to finish or choose another --output-dir.") from exc
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


def _worker_stats(rows) -> dict:
    """Per worker: cases run, model loads (1 per worker process), model load time and peak memory."""
    out: dict = {}
    for row in rows:
        stats = row.get("worker_stats")
        if not stats:
            continue
        w = out.setdefault(row["worker"], {"cases": 0, "pid": stats["pid"], "model_loads": 0, "peak_rss_mb": 0.0})
        w["cases"] += 1
        w["model_loads"] = max(w["model_loads"], stats["model_loads"])
        w["model_load_s"] = stats["model_load_s"]
        w["peak_rss_mb"] = max(w["peak_rss_mb"], round(stats["peak_rss_bytes"] / 2**20, 1))
    return out


def _quietly(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:  # best-effort bookkeeping (a closed connection at shutdown, a missing package)
        return default
