"""First-use dependency check: which requirements are unmet, and install only after the user agreed."""
from __future__ import annotations

import importlib.metadata

from deepseg_slicer import dependencies


def _requirements(tmp_path, lines):
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unmet_requirements_by_installed_version(tmp_path):
    numpy_version = importlib.metadata.version("numpy")
    path = _requirements(tmp_path, ["# comment", "", f"numpy>={numpy_version}", f"numpy<{numpy_version}",
                                    "deepseg-surely-not-installed>=1", 'scipy>=1 ; python_version < "3"'])
    assert dependencies.read_requirements(path)[0] == f"numpy>={numpy_version}"
    assert dependencies.unmet(dependencies.read_requirements(path)) == [f"numpy<{numpy_version}",
                                                                        "deepseg-surely-not-installed>=1"]


def test_shipped_requirements_are_met_in_the_test_environment():
    from deepseg.resources import resource_path

    assert dependencies.plan(resource_path("requirements.txt")).empty


def test_slicer_requirements_match_the_package_dependencies():
    """Slicer installs Resources/requirements.txt; it must list exactly pyproject's runtime dependencies."""
    import tomllib
    from pathlib import Path

    from deepseg.resources import resource_path

    repo = Path(__file__).resolve().parents[2]
    declared = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(dependencies.read_requirements(resource_path("requirements.txt"))) == sorted(declared)


def test_ensure_asks_first_and_installs_only_what_is_missing(tmp_path):
    path = _requirements(tmp_path, ["numpy>=1", "deepseg-surely-not-installed>=1"])
    asked, installed = [], []
    declined = dependencies.ensure(path, confirm=lambda text: asked.append(text) or False,
                                   install_packages=installed.append, install_torch=lambda: True)
    assert declined is False and installed == [] and "deepseg-surely-not-installed>=1" in asked[0]
    assert "numpy" not in asked[0]
    agreed = dependencies.ensure(path, confirm=lambda text: True, install_packages=installed.append,
                                 install_torch=lambda: True)
    assert agreed is True and installed == [["deepseg-surely-not-installed>=1"]]
