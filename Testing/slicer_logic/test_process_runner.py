"""The background-process path without Qt: spawn a real process, parse its PROGRESS lines, and
cancel it so that no process of its tree survives."""
from __future__ import annotations

import os
import sys
import textwrap
import time

import psutil
import pytest

from deepseg_slicer.process import BackgroundJob
from deepseg_slicer.progress_lines import ProgressTracker, parse_progress_line

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process-group semantics tested on POSIX")

WORKER = textwrap.dedent("""
    import subprocess, sys, time
    from deepseg.cli.common import progress_callback
    print_progress = progress_callback("lines")  # what the CLI prints with --progress lines
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"CHILD {child.pid}", flush=True)
    print_progress("load", 0, 0)
    print("a log line", file=sys.stderr, flush=True)
    n = int(sys.argv[1])
    for i in range(1, n + 1):
        print_progress("infer", i, n)
        time.sleep(float(sys.argv[2]))
    child.kill()
    print("done", flush=True)
""")


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def test_parse_progress_lines_from_core_format():
    from deepseg.progress import progress_line

    assert parse_progress_line(progress_line("infer", 3, 12)).fraction == 0.25
    event = parse_progress_line(progress_line("write segmentation", 0, 0))
    assert (event.stage, event.fraction, event.text) == ("write segmentation", None, "write segmentation...")
    assert parse_progress_line("WARNING: PROGRESS infer 1/2 was slow") is None
    tracker = ProgressTracker()
    for line in [progress_line("load", 0, 0), "noise", progress_line("infer", 1, 4), progress_line("infer", 3, 4)]:
        tracker.feed(line)
    assert tracker.stages == ["load", "infer"] and tracker.percent == 75 and tracker.text == "infer (3/4)"


def test_job_reports_progress_and_log_then_finishes(worker):
    events, logs, finished = [], [], []
    job = BackgroundJob([sys.executable, str(worker), "4", "0.01"], on_progress=events.append,
                        on_log=logs.append, on_finished=finished.append)
    assert job.start().wait(timeout=120) == "finished"
    assert job.returncode == 0 and finished == [job]
    assert [(e.stage, e.done, e.total) for e in events] == [("load", 0, 0)] + [("infer", i, 4) for i in range(1, 5)]
    assert "a log line" in logs and "done" in logs
    assert not any(line.startswith("PROGRESS") for line in logs)


def test_cancel_mid_run_kills_the_whole_tree(worker):
    seen = []
    job = BackgroundJob([sys.executable, str(worker), "1000", "0.2"], on_progress=seen.append)
    job.start()
    deadline = time.monotonic() + 120

    def child_line():  # stdout (CHILD) and stderr (PROGRESS) are read by two threads: either may come first
        return next((line for line in job.log if line.startswith("CHILD")), None)

    while not (any(e.stage == "infer" for e in seen) and child_line()) and time.monotonic() < deadline:
        job.process_events()
        time.sleep(0.02)
    assert job.running and seen and child_line(), "the worker never reported progress and its child"
    child_pid = int(child_line().split()[1])
    leader = job.runner.pid
    assert psutil.pid_exists(child_pid)
    job.cancel(grace=2.0)
    assert job.state == "cancelled" and job.returncode != 0
    for pid in (leader, child_pid):
        gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        if not gone:  # the grandchild is re-parented to init; give it a moment to be reaped
            time.sleep(1.0)
            gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert gone, f"process {pid} survived the cancel"


def test_failed_command_surfaces_the_cli_error(tmp_path):
    job = BackgroundJob([sys.executable, "-m", "deepseg", "segment", "--model", str(tmp_path / "nope"),
                         "--input", str(tmp_path / "missing.nii.gz"), "--output", str(tmp_path / "o.seg.nrrd"),
                         "--progress", "lines"])
    assert job.start().wait(timeout=300) == "failed"
    assert job.returncode == 2
    assert "Fix:" in job.error_message and "deepseg: error" not in job.error_message


def test_model_commands_run_as_background_tasks(tmp_path, monkeypatch):
    """What the panels' "Install model..." button runs: ``deepseg models ...`` through CommandTask."""
    from deepseg.errors import DeepSegError
    from deepseg_slicer.tasks import CommandTask

    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path))  # never touch the user's model store
    shown = CommandTask("models", ["show", "totalseg-organs"]).start().wait(timeout=300)
    assert any("totalseg-organs" in line for line in shown)
    failed = CommandTask("models", ["fetch", "no-such-model", "--progress", "lines"]).start()
    with pytest.raises(DeepSegError, match="no-such-model"):
        failed.wait(timeout=300)
    assert failed.job.state == "failed" and failed.workdir is None
