"""Run a command (the ``deepseg`` CLI under PythonSlicer) outside the GUI thread, with its output
parsed into progress events and log lines, and a Cancel that ends the whole process tree.

No Qt here: a panel calls ``BackgroundJob.process_events()`` from a ``QTimer``; a script calls
``wait()``.  The process runner is injected, so the same job logic is tested with real processes.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from typing import Callable, Optional, Protocol, Sequence

from .progress_lines import ProgressEvent, ProgressTracker

_EOF = object()


class ProcessRunner(Protocol):
    """What a background job needs from a process: start it, read its lines, poll, cancel."""

    def start(self, argv: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None: ...
    def lines(self) -> list[tuple[str, str]]: ...
    def poll(self) -> Optional[int]: ...
    def streams_closed(self) -> bool: ...
    def cancel(self, grace: float = 5.0) -> None: ...


class SubprocessRunner:
    """``subprocess.Popen`` in its own process group/session; two reader threads queue the lines."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self._queue: "queue.Queue" = queue.Queue()
        self._open_streams = 0

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def start(self, argv: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None:
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # own process group: cancel reaches every child
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=cwd, text=True,
                                     encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        self._open_streams = 2
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            self._queue.put((name, line.rstrip("\r\n")))
        stream.close()
        self._queue.put((name, _EOF))

    def lines(self) -> list[tuple[str, str]]:
        out = []
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return out
            if line is _EOF:
                self._open_streams -= 1
            else:
                out.append((name, line))

    def streams_closed(self) -> bool:
        return self._open_streams == 0 and self._queue.empty()

    def poll(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def cancel(self, grace: float = 5.0) -> None:
        """Ask the job to stop (SIGTERM: the CLI cancels and removes partial outputs), then kill
        whatever is left of the process group after ``grace`` seconds."""
        if not self.proc:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.proc.pid)], capture_output=True, check=False)
            self.proc.wait()
            return
        pgid = self.proc.pid  # session leader: its pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)  # children that outlived the leader, or a hung leader
        self.proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class BackgroundJob:
    """One command run in the background: progress/log callbacks, final state, Cancel.

    ``state`` goes ``idle -> running -> finished | failed | cancelled``; ``on_finished(job)`` is
    called once, from whichever thread calls ``process_events``/``wait`` (the GUI thread in Slicer).
    """

    def __init__(self, argv: Sequence[str], *, env: Optional[dict] = None, cwd: Optional[str] = None,
                 runner: Optional[ProcessRunner] = None,
                 on_progress: Optional[Callable[[ProgressEvent], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[["BackgroundJob"], None]] = None) -> None:
        self.argv = list(argv)
        self.env, self.cwd = env, cwd
        self.runner: ProcessRunner = runner or SubprocessRunner()
        self.on_progress, self.on_log, self.on_finished = on_progress, on_log, on_finished
        self.tracker = ProgressTracker()
        self.log: list[str] = []
        self.state = "idle"
        self.returncode: Optional[int] = None
        self._cancel_requested = False

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> "BackgroundJob":
        self.state = "running"
        self._emit_log("$ " + " ".join(self.argv))
        self.runner.start(self.argv, env=self.env, cwd=self.cwd)
        return self

    def process_events(self) -> bool:
        """Dispatch the lines available now; returns True while the job is still running."""
        if self.state != "running":
            return False
        for _stream, line in self.runner.lines():
            event = self.tracker.feed(line)
            if event is not None:
                if self.on_progress:
                    self.on_progress(event)
            else:
                self._emit_log(line)
        code = self.runner.poll()
        if code is None or not self.runner.streams_closed():
            return True
        self._finish(code)
        return False

    def _finish(self, code: Optional[int]) -> None:
        self.returncode = code
        self.state = "cancelled" if self._cancel_requested else ("finished" if code == 0 else "failed")
        if self.on_finished:
            self.on_finished(self)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> str:
        """Block until the job ends (scripts, tests); returns the final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.process_events():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(interval)
        return self.state

    def cancel(self, grace: float = 5.0) -> None:
        """End the process tree; the job ends in state ``cancelled`` and its result is not imported."""
        if self.state != "running":
            return
        self._cancel_requested = True
        self._emit_log("Cancelling...")
        self.runner.cancel(grace)
        deadline = time.monotonic() + 10.0  # a detached grandchild may keep the pipes open
        while self.process_events():
            if time.monotonic() > deadline:
                self._finish(self.runner.poll())
                break
            time.sleep(0.01)

    @property
    def error_message(self) -> str:
        """The CLI's own error text (``deepseg: error: ...`` and its Fix line), else the log tail."""
        for n, line in enumerate(self.log):
            if line.startswith("deepseg: error:"):
                return "\n".join(self.log[n:]).replace("deepseg: error: ", "", 1).strip()
        tail = [line for line in self.log[-15:] if line.strip()]
        return "\n".join(tail) or f"The process ended with exit code {self.returncode}."

    def _emit_log(self, line: str) -> None:
        self.log.append(line)
        if self.on_log:
            self.on_log(line)

