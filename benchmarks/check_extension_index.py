"""Run the Slicer ExtensionsIndex's own description checker on DeepSeg.json, offline.

The checker (``scripts/check_description_files.py`` of a Slicer/ExtensionsIndex checkout, not part of
this repository) clones ``scm_url``, downloads the JSON schema and every icon/screenshot URL, and asks
the GitHub API for the repository topics.  Offline this script runs the same check functions with:

* the repository "clone" = a ``git clone`` of this working tree at HEAD (what would be published);
* the schema read from a Slicer/Slicer checkout (``Schemas/<name>`` at HEAD) instead of downloaded;
* each ``https://raw.githubusercontent.com/<owner>/<repo>/<revision>/<path>`` URL answered with the
  file ``<path>`` of that clone (content type from its PNG/JPEG/GIF signature, 404 when absent);
* the topics check skipped (it needs the GitHub API: the repository must get the
  ``3d-slicer-extension`` topic at publication).

    python benchmarks/check_extension_index.py --index PATH/TO/ExtensionsIndex --slicer PATH/TO/Slicer
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


def git_show(repo: Path, path: str) -> bytes:
    """A file at HEAD of a (possibly bare) git checkout."""
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


class OfflineResponse:
    def __init__(self, status: int, content: bytes, content_type: str, url: str) -> None:
        self.status_code, self.content, self.url = status, content, url
        self.headers = {"Content-Type": content_type}
        self.text = content.decode("utf-8", "replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            import requests

            raise requests.HTTPError(f"{self.status_code} for url: {self.url}")

    def json(self):
        import json

        return json.loads(self.content)


def offline_get(clone: Path, slicer: Path, repository: list[str]):
    """``requests.get`` answering the schema and raw.githubusercontent URLs of ``repository`` (owner,
    name) from local files; URLs into any other repository answer 404."""
    def get(url: str, *args, **kwargs) -> OfflineResponse:
        parts = urllib.parse.urlsplit(url)
        segments = parts.path.strip("/").split("/")
        if parts.netloc == "raw.githubusercontent.com" and segments[:2] == ["Slicer", "Slicer"]:
            return OfflineResponse(200, git_show(slicer, "/".join(segments[3:])), "application/json", url)
        if parts.netloc == "raw.githubusercontent.com" and len(segments) > 3:
            path = clone / "/".join(segments[3:])
            if segments[:2] != repository:
                return OfflineResponse(404, b"404: Not Found", "text/plain", url)
            if not path.is_file():
                return OfflineResponse(404, b"404: Not Found", "text/plain", url)
            content = path.read_bytes()
            kind = next((t for sig, t in SIGNATURES.items() if content.startswith(sig)), "application/octet-stream")
            return OfflineResponse(200, content, kind, url)
        raise ConnectionError(f"offline: no local answer for {url}")
    return get


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="Slicer/ExtensionsIndex checkout (or bare git dir)")
    parser.add_argument("--slicer", type=Path, required=True, help="Slicer/Slicer checkout (or bare git dir), for the schema")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="deepseg-index-check-"))
    try:
        (work / "check_description_files.py").write_bytes(git_show(args.index, "scripts/check_description_files.py"))
        spec = importlib.util.spec_from_file_location("check_description_files", work / "check_description_files.py")
        checker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(checker)
        import requests

        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        description = ROOT / "DeepSeg.json"
        name = description.stem
        metadata = checker.parse_json(description)
        scm = urllib.parse.urlsplit(metadata["scm_url"]).path.strip("/").removesuffix(".git").split("/")
        requests.get = offline_get(clone, args.slicer, scm[:2])
        checks = [
            ("Check repository size", checker.check_repository_size, {"cloned_repository_folder": str(clone)}),
            ("Check JSON schema", checker.check_json_schema, {}),
            ("Check JSON file format", checker.check_json_file_format, {"extension_file_path": str(description)}),
            ("Check extension name", checker.check_extension_name, {}),
            ("Check category", checker.check_category, {}),
            ("Check git repository name", checker.check_git_repository_name, {}),
            ("Check SCM URL syntax", checker.check_scm_url_syntax, {}),
            ("Check CMakeLists.txt content", checker.check_cmakelists_content, {"cloned_repository_folder": str(clone)}),
            ("Check license file", checker.check_license_file, {"cloned_repository_folder": str(clone)}),
        ]
        print(f"## Extension: {name} (offline run of ExtensionsIndex scripts/check_description_files.py)")
        failed = 0
        for title, check, kwargs in checks:
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    check(name, metadata, **kwargs)
                print(f"- ok: {title}")
            except checker.ExtensionCheckError as exc:
                failed += 1
                print(f"- FAILED: {title}: {exc}")
            for line in out.getvalue().splitlines():
                if line.strip():
                    print(f"    {line.replace(':white_check_mark:', 'ok')}")
        print("- not run offline: Clone repository (local clone used), Check git repository topics (GitHub API)")
        print(f"{len(checks) - failed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    sys.exit(main())
