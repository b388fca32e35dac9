"""Time whole command-line processes (start-up and imports included), as a user runs them."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time


def timed_cli(cmd: list[str], env: dict) -> dict:
    """Wall seconds and peak RSS (MiB, the largest process of the tree) of one command; its stderr."""
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        _, status, rusage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        log.seek(0)
        err = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{err[-3000:]}")
    return {"seconds": seconds, "peak_mib": rusage.ru_maxrss / 1024, "stderr": err}
