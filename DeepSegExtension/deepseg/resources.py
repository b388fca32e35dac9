"""Find files shipped in ``Resources/`` (schemas, terminology), installed or in a source checkout."""
from __future__ import annotations

from pathlib import Path

_SOURCE_RESOURCES = Path(__file__).resolve().parents[2] / "Resources"


def resource_path(name: str) -> Path:
    """Path of ``Resources/<name>``: the installed ``deepseg_resources`` package, else the checkout."""
    try:
        from importlib.resources import files

        candidate = Path(str(files("deepseg_resources") / name))
        if candidate.exists():
            return candidate
    except (ModuleNotFoundError, TypeError):
        pass
    return _SOURCE_RESOURCES / name
