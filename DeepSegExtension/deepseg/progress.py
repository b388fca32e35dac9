"""Progress reporting and cooperative cancellation shared by the CLI, Python API and Slicer.

A long job calls ``progress.stage(name)`` when it enters a stage and ``progress.step(done, total)``
inside loops; both check the cancel token, so Ctrl-C in the CLI or Cancel in Slicer stops the job
at the next step without leaving partial outputs behind.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import Cancelled

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``callback(stage, done, total)``; ``total == 0`` means "stage started"."""


class CancelToken:
    """Thread-safe flag; set it from any thread (signal handler, GUI) to stop the job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class Progress:
    """Stage/step reporter handed down the pipeline; records per-stage timings for provenance."""

    callback: Optional[ProgressCallback] = None
    cancel: CancelToken = field(default_factory=CancelToken)
    timings: dict = field(default_factory=dict)
    _stage: str = ""
    _t0: float = 0.0

    def stage(self, name: str) -> None:
        self.cancel.raise_if_cancelled()
        self._close_stage()
        self._stage, self._t0 = name, time.perf_counter()
        if self.callback:
            self.callback(name, 0, 0)

    def step(self, done: int, total: int) -> None:
        self.cancel.raise_if_cancelled()
        if self.callback:
            self.callback(self._stage, done, total)

    def finish(self) -> None:
        self._close_stage()
        self._stage = ""

    def _close_stage(self) -> None:
        if self._stage:
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.perf_counter() - self._t0


def progress_line(stage: str, done: int, total: int) -> str:
    """Machine-readable progress line (parsed by the Slicer panels): ``PROGRESS <stage> <done>/<total>``."""
    return f"PROGRESS {stage} {done}/{total}"
