"""Where DeepSeg keeps per-user data (the model store, compiled networks): one place, below every layer."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def default_home() -> Path:
    """``$DEEPSEG_HOME``, else the per-user data folder (``~/.local/share/deepseg`` on Linux,
    ``~/Library/Application Support/DeepSeg`` on macOS, ``%LOCALAPPDATA%\\DeepSeg`` on Windows)."""
    if os.environ.get("DEEPSEG_HOME"):
        return Path(os.environ["DEEPSEG_HOME"]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "DeepSeg"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "DeepSeg"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "deepseg"
