"""The command lines the panels run: ``<PythonSlicer> -m deepseg <sub-command> ...`` with an
environment in which that Python finds the ``deepseg`` package shipped with the extension."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import deepseg


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


def segment_args(model: str, inputs: Sequence["str | Path"], output: "str | Path", *, device: str = "auto",
                 fast: bool = False, structures: Optional[Sequence[str]] = None, tg263: bool = False,
                 keep_largest: bool = False, min_component_ml: float = 0.0) -> list[str]:
    """Arguments of ``deepseg segment`` for one run (see ``deepseg segment --help``).

    ``fast`` lowers the sliding-window overlap to 25 % (about 3x fewer windows than nnU-Net's 50 %),
    which every model format accepts; the result can differ slightly at window seams.
    """
    args = ["--model", model]
    for path in inputs:
        args += ["--input", str(path)]
    args += ["--output", str(output), "--device", device, "--progress", "lines"]
    if fast:
        args += ["--overlap", "0.25"]
    if structures:
        args += ["--structures", ",".join(str(s) for s in structures)]
    if tg263:
        args.append("--tg263")
    if keep_largest:
        args.append("--keep-largest")
    if min_component_ml > 0:
        args += ["--min-component-ml", f"{min_component_ml:g}"]
    return args
