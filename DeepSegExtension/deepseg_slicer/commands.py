"""The command lines the panels run: ``<PythonSlicer> -m deepseg <sub-command> ...`` with an
environment in which that Python finds the ``deepseg`` package shipped with the extension."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import deepseg
from deepseg.options import SegmentOptions


def python_executable() -> str:
    """PythonSlicer inside Slicer (Slicer's Python without the GUI), else this interpreter."""
    if hasattr(sys.modules.get("slicer"), "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def deepseg_command(subcommand: str, args: Sequence[str], python: Optional[str] = None) -> list[str]:
    return [python or python_executable(), "-m", "deepseg", subcommand, *[str(a) for a in args]]


def deepseg_env(base: Optional[dict] = None, threads: Optional[int] = None) -> dict:
    """Environment for the child: ``deepseg`` importable, unbuffered output, optional thread cap."""
    env = dict(os.environ if base is None else base)
    package_parent = str(Path(deepseg.__file__).resolve().parents[1])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_args(model: str, inputs: Sequence["str | Path"], options: SegmentOptions,
             names: Optional[Sequence[str]] = None) -> list[str]:
    """``--model``, one ``--input`` per channel, the run ``options`` (only ``names`` if given) and
    machine-readable progress: the common part of ``deepseg segment`` and ``deepseg explain``."""
    args = ["--model", model]
    for path in inputs:
        args += ["--input", str(path)]
    return args + options.to_argv(names) + ["--progress", "lines"]
