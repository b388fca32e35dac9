"""``deepseg`` (console script and ``python -m deepseg``) exits through ``cli.entry``: after ``main()`` it
waits for other threads, runs the ``atexit`` handlers and flushes the streams as a normal exit does, keeps
the exit code, and skips the interpreter's object-by-object teardown (seconds after a large run)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    import deepseg.cli as cli

    class Held:  # finalised at a normal interpreter shutdown, not after entry()
        def __del__(self):
            print("finalised", flush=True)

    held = Held()
    atexit.register(lambda: print("atexit ran"))

    def late():
        time.sleep(0.3)
        print("thread finished")

    def main():
        threading.Thread(target=late).start()
        print("x" * 100000, end="")  # unflushed, no newline
        return 3

    cli.main = main
    {call}
""")


def _run(call: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(call=call)], capture_output=True, text=True,
                          timeout=120)


def test_entry_keeps_what_a_normal_exit_does_and_skips_the_teardown():
    normal = _run("sys.exit(main())")
    for call in ("cli.entry()", "import runpy; runpy.run_module('deepseg', run_name='__main__')"):  # python -m deepseg
        fast = _run(call)
        for done in (normal, fast):
            assert done.returncode == 3, done.stderr
            assert done.stdout.startswith("x" * 100000)
            assert "thread finished" in done.stdout and "atexit ran" in done.stdout
        assert "finalised" in normal.stdout  # the teardown that entry() skips
        assert "finalised" not in fast.stdout


def test_the_console_script_is_entry():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["deepseg"] == "deepseg.cli:entry"


def test_entry_ends_idle_thread_pools_as_a_normal_exit_does():
    """A ``ThreadPoolExecutor`` never shut down (Dask distributed keeps one per process, ``Dask-Offload``) has
    non-daemon idle workers that a normal exit stops (``threading._register_atexit``) before waiting for
    threads: ``entry()`` must not wait for them forever."""
    script = textwrap.dedent("""
        from concurrent.futures import ThreadPoolExecutor
        import deepseg.cli as cli

        pool = ThreadPoolExecutor(2)

        def main():
            pool.submit(print, "job ran")
            return 4

        cli.main = main
        cli.entry()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 4, done.stderr
    assert "job ran" in done.stdout
