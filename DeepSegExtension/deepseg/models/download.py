"""Verified downloads and safe unpacking for the model store.

``download_file`` streams an https URL to a file while hashing it, reports progress, honours cancel,
and refuses the result unless its size and sha256 match what the catalog pinned.  ``extract_zip``
unpacks an archive without letting a member escape the destination (absolute paths, ``..``,
symbolic links) or expand without bound.  Both raise ``StoreError`` naming the problem and the fix.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

from ..version import __version__
from ..errors import StoreError
from ..progress import Progress

CHUNK = 1 << 20
MAX_UNPACKED_BYTES = 64 << 30  # refuse archives that claim to expand beyond 64 GiB
TIMEOUT_S = 60


def human_size(n: Optional[int]) -> str:
    """``123456789`` -> ``'123.5 MB'`` (decimal units, as download pages show them)."""
    if n is None:
        return "unknown size"
    if n < 1000:
        return f"{n} bytes"
    size = float(n)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


def sha256_file(path: "str | Path") -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Only https, except plain http to this machine (local mirrors and tests)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
        return
    raise StoreError(f"Refusing to download {url}: only https addresses are allowed.",
                     "Use the https address of the file, or import a local copy with `deepseg models import`.")


def verify_file(path: Path, name: str, sha256: Optional[str], size: Optional[int]) -> str:
    """Check a complete file against its pinned size and sha256; return its sha256."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise StoreError(f"{name} has {actual_size} bytes but {size} were expected; the download was interrupted "
                         f"or the file was changed.", "Nothing was installed. Fetch it again.")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        raise _mismatch(name, digest, sha256)
    return digest


def _mismatch(name: str, actual: str, expected: str) -> StoreError:
    return StoreError(f"Checksum mismatch for {name}: sha256 is {actual}, the catalog expects {expected}.",
                      "The file is corrupt or not the published one; nothing was installed. Fetch it again, "
                      "and if it keeps failing, report it (the upstream file may have changed).")


def download_file(url: str, dest: Path, *, sha256: Optional[str], size: Optional[int],
                  progress: Optional[Progress] = None, timeout: float = TIMEOUT_S) -> str:
    """Stream ``url`` to ``dest``; verify size and sha256 when given; return the sha256.

    A connection that closes early, a wrong size or a wrong checksum raise ``StoreError`` and leave
    ``dest`` for the caller to delete (the store downloads into a staging folder it removes whole).
    """
    check_url(url)
    progress = progress or Progress()
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
    request = urllib.request.Request(url, headers={"User-Agent": f"deepseg/{__version__}"})
    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or size or 0)
            if size is not None and total and total != size:
                raise StoreError(f"The server offers {name} with {total} bytes, but the catalog pins {size} bytes.",
                                 "The published file has changed or the address is wrong; nothing was installed.")
            last_report = -1
            while True:
                progress.cancel.raise_if_cancelled()
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                percent = done * 100 // total if total else done // (10 * CHUNK)
                if percent != last_report:  # about one report per percent, whatever the chunk count
                    progress.step(done, total)
                    last_report = percent
    except StoreError:
        raise
    except urllib.error.HTTPError as exc:
        raise StoreError(f"Downloading {url} failed: HTTP {exc.code} {exc.reason}.",
                         "Check the address; if the file moved, import a copy with `deepseg models import`.") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if done:
            raise StoreError(f"The download of {name} was interrupted after {done} bytes "
                             f"({type(exc).__name__}: {exc}).",
                             "Nothing was installed. Check the network connection and fetch again.") from exc
        raise StoreError(f"Could not download {url} ({getattr(exc, 'reason', exc)}).",
                         "Check the network connection or proxy (HTTPS_PROXY).") from exc
    expected = size if size is not None else (total or None)
    if expected is not None and done != expected:
        raise StoreError(f"The download of {name} was interrupted: {done} of {expected} bytes arrived.",
                         "Nothing was installed. Check the network connection and fetch again.")
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256:
        raise _mismatch(name, actual, sha256)
    progress.step(done, done)
    return actual


def _is_junk(parts: tuple[str, ...]) -> bool:
    return "__MACOSX" in parts or any(p == ".DS_Store" or p.startswith("._") for p in parts)


def extract_zip(archive: Path, dest: Path, progress: Optional[Progress] = None) -> None:
    """Unpack ``archive`` into ``dest``, refusing members that would land outside it."""
    progress = progress or Progress()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StoreError(f"{archive.name} is not a readable zip archive ({exc}).",
                         "The file is truncated or not a model archive; download it again.") from exc
    with zf:
        members = zf.infolist()
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise StoreError(f"{archive.name} would expand to more than {human_size(MAX_UNPACKED_BYTES)}.",
                             "This is not a model archive DeepSeg accepts.")
        for n, member in enumerate(members):
            progress.step(n, len(members))
            rel = PurePosixPath(member.filename.replace("\\", "/"))
            if rel.is_absolute() or ".." in rel.parts or stat.S_ISLNK(member.external_attr >> 16):
                raise StoreError(f"{archive.name} contains an unsafe entry {member.filename!r} (absolute path, '..' "
                                 "or symbolic link).", "Only import archives from sources you trust.")
            if _is_junk(rel.parts):
                continue
            target = dest.joinpath(*rel.parts)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise StoreError(f"{archive.name} is damaged: {member.filename} could not be unpacked ({exc}).",
                                 "Download the archive again.") from exc
