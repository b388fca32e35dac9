"""The extension description (DeepSeg.json) and the top-level CMakeLists.txt metadata follow the rules
the Slicer ExtensionsIndex checker enforces, as far as they can be checked offline.

Rules read from Slicer/ExtensionsIndex at commit 07f1d1b2781c7dd9f6e2a9f5521b3ed43631724c
(2026-08-07), ``scripts/check_description_files.py``: the extension name (the .json file name) does
not start with "Slicer"; the git repository name does (or "Slicer-", "Slicer_", "SlicerExtension-",
"SlicerExtension_"); ``scm_url`` is git:// or https://; the category is one of its accepted list
(here: "Segmentation"); the CMake ``project()`` name equals the extension name; ``EXTENSION_ICONURL``
and a non-empty ``EXTENSION_SCREENSHOTURLS`` point at PNG/JPEG/GIF images; a LICENSE file is in the
root; LF line endings; the repository stays under 100 MB.  The index's ``$schema``
(slicer-extension-catalog-entry-schema-v1.0.1, Slicer/Slicer ``Schemas/``) allows only the keys
below and requires ``$schema``, ``category`` and ``scm_url``.  The full checker is run by
``benchmarks/check_extension_index.py``.
"""
from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")
MIN_SCREENSHOT_WIDTH = 400


def cmake_set(name: str) -> str:
    match = re.search(rf'set\s*\({name}\s*"([^"]*)"\s*\)', (ROOT / "CMakeLists.txt").read_text())
    assert match, f"CMakeLists.txt does not set {name}"
    return match.group(1)


def description() -> dict:
    return json.loads((ROOT / "DeepSeg.json").read_text())


def repository() -> tuple[str, str]:
    """(owner, name) of the published repository, from ``scm_url``."""
    parts = urllib.parse.urlsplit(description()["scm_url"]).path.strip("/").removesuffix(".git").split("/")
    return parts[0], parts[1]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_description_file_follows_the_index_rules():
    raw = (ROOT / "DeepSeg.json").read_bytes()
    assert b"\r" not in raw, "the index accepts LF line endings only"
    meta = description()
    assert set(meta) <= SCHEMA_KEYS and {"$schema", "category", "scm_url"} <= set(meta)
    assert "slicer-extension-catalog-entry-schema" in meta["$schema"]
    assert meta["category"] == "Segmentation"
    assert not (ROOT / "DeepSeg.json").stem.lower().startswith("slicer"), "extension names must not start with Slicer"
    assert urllib.parse.urlsplit(meta["scm_url"]).scheme in ("git", "https")
    owner, name = repository()
    assert name.startswith(REPOSITORY_PREFIXES), f"repository name {name!r} must start with 'Slicer'"
    assert "OWNER" not in owner and owner, "placeholder owner in scm_url"
    project = re.search(r"project\s*\(\s*([^\s)]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert project == (ROOT / "DeepSeg.json").stem
    assert (ROOT / "LICENSE").is_file()


def test_homepage_icon_and_screenshots_point_into_the_repository():
    owner, name = repository()
    revision = description().get("scm_revision", "main")
    assert cmake_set("EXTENSION_HOMEPAGE").startswith(f"https://github.com/{owner}/{name}")
    urls = [cmake_set("EXTENSION_ICONURL")] + cmake_set("EXTENSION_SCREENSHOTURLS").split()
    assert len(urls) >= 4, "at least three screenshots"
    prefix = f"https://raw.githubusercontent.com/{owner}/{name}/{revision}/"
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    for url in urls:
        assert url.startswith(prefix), f"{url} is not a raw URL into {owner}/{name} at {revision}"
        path = url[len(prefix):]
        assert (ROOT / path).is_file(), f"{url}: {path} does not exist"
        assert path in tracked, f"{path} is not committed (the published repository would answer 404)"
        width, _ = png_size(ROOT / path)
        if "Screenshots" in path:
            assert width >= MIN_SCREENSHOT_WIDTH, f"{path} is {width} px wide"


def test_readme_embeds_the_listed_screenshots():
    readme = (ROOT / "README.md").read_text()
    embedded = set(re.findall(r"!\[[^\]]*\]\((Resources/Screenshots/[^)\s]+\.png)\)", readme))
    listed = {urllib.parse.urlsplit(u).path.split("/main/", 1)[1] for u in cmake_set("EXTENSION_SCREENSHOTURLS").split()}
    assert len(embedded) >= 3 and embedded <= listed, (embedded, listed)


@pytest.mark.parametrize("path", sorted((ROOT / "Resources" / "Screenshots").glob("*.png")), ids=lambda p: p.name)
def test_every_screenshot_is_listed(path):
    assert f"Resources/Screenshots/{path.name}" in cmake_set("EXTENSION_SCREENSHOTURLS")
