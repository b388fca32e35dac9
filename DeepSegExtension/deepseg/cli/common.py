"""Pieces shared by sub-commands: progress display and JSON/plain output."""
from __future__ import annotations

import json
import sys

from ..progress import progress_line


def add_progress_option(parser) -> None:
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                        help="progress on stderr: a bar for people, PROGRESS lines for programs (default: bar on a terminal)")


def progress_mode(mode: str) -> str:
    """``--progress``'s mode, ``auto`` resolved: a bar on a terminal, else ``lines``."""
    return ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode


def bar_text(done: int, total: int, width: int = 30) -> str:
    """``[####......]``: the part of the bar that ``done`` of ``total`` fills."""
    filled = int(width * done / max(1, total))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def progress_callback(mode: str):
    """The callback for ``--progress``; ``lines`` prints ``PROGRESS <stage> <done>/<total>`` (parsed by Slicer)."""
    mode = progress_mode(mode)
    if mode == "none":
        return None
    if mode == "lines":
        return lambda stage, done, total: print(progress_line(stage, done, total), file=sys.stderr, flush=True)

    def bar(stage: str, done: int, total: int) -> None:
        if total:
            sys.stderr.write(f"\r{stage:<11} {bar_text(done, total)} {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{stage}...\n")
        sys.stderr.flush()

    return bar


def emit(data: dict, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text)
