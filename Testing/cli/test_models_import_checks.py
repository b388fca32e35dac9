"""``deepseg models import`` installs only models that load: required files present, every checkpoint
loadable with ``weights_only=True``, the network built.  Also: "did you mean" for model ids, and the
store's one cross-platform lock file (no ``.lock-<id>`` files piling up)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import save_tiny_model

from deepseg.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class _RunsCode:
    """Unpickling this runs a shell command that leaves a marker file: code carried by a checkpoint."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _card_folder(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny")


def _nnunet_folder(tmp_path: Path) -> Path:
    sys.path.insert(0, str(REPO / "Testing" / "fixtures"))
    from make_nnunet_model import ensure_nnunet_fixture, trainer_folder

    return Path(shutil.copytree(trainer_folder(ensure_nnunet_fixture(REPO / "Testing" / "_fixtures")),
                                tmp_path / "nnunet"))


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.rglob("weights.pt")) + sorted(folder.rglob("checkpoint_final.pth"))


def _import(capsys, folder: Path) -> tuple[int, str]:
    code = main(["models", "import", str(folder), "--id", "broken", "--progress", "none"])
    return code, capsys.readouterr().err


def _nothing_installed(home: Path) -> bool:
    models = home / "models"
    return not models.exists() or [p.name for p in models.iterdir()] in ([], [".lock"])


@pytest.mark.parametrize("make", [_card_folder, _nnunet_folder], ids=["card-model", "nnunet"])
def test_import_refuses_a_folder_without_checkpoint(make, home, tmp_path, capsys):
    folder = make(tmp_path)
    for ckpt in _checkpoints(folder):
        ckpt.unlink()
    code, err = _import(capsys, folder)
    assert code == 2 and "Nothing was installed" in err and "Fix:" in err, err
    assert _nothing_installed(home)
    assert main(["segment", "--model", "broken", "--input", "x.nii.gz", "--output", str(tmp_path / "o.nii.gz")]) == 2


@pytest.mark.parametrize("make", [_card_folder, _nnunet_folder], ids=["card-model", "nnunet"])
def test_import_refuses_a_code_carrying_checkpoint_without_running_it(make, home, tmp_path, capsys):
    folder = make(tmp_path)
    marker = tmp_path / "code-ran"
    _RunsCode.marker = str(marker)
    target = _checkpoints(folder)[0]
    original = torch.load(target, weights_only=False)  # our own file, written just above
    original["payload" if isinstance(original, dict) else 0] = _RunsCode()
    torch.save(original, target)
    code, err = _import(capsys, folder)
    assert code == 2 and "refused for safety" in err and "posix.system" in err, err
    assert "weights_only" not in err  # never the unsafe workaround torch suggests
    assert not marker.exists() and _nothing_installed(home)
    torch.load(target, weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.exists()


def test_import_of_a_good_folder_still_installs(home, tmp_path, capsys):
    code = main(["models", "import", str(_card_folder(tmp_path)), "--id", "tiny", "--json", "--progress", "none"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["format"] == "monai-unet" and Path(data["path"], "weights.pt").is_file()


def test_model_id_typo_suggests_the_close_ids(home, tmp_path, capsys):
    code = main(["segment", "--model", "totalseg-organ", "--input", str(tmp_path / "ct.nii.gz"),
                 "--output", str(tmp_path / "o.seg.nrrd"), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'totalseg-organs'" in err, err
    code = main(["segment", "--model", "zzzz-qqqq", "--input", "ct.nii.gz", "--output", str(tmp_path / "o.seg.nrrd")])
    assert code == 2 and "Did you mean" not in capsys.readouterr().err


def test_store_keeps_one_lock_file_and_removes_old_per_id_locks(home, tmp_path, capsys):
    models = home / "models"
    models.mkdir(parents=True)
    for name in (".lock-totalseg-organs", ".lock-tiny"):
        (models / name).write_text("")
    assert main(["models", "import", str(_card_folder(tmp_path)), "--id", "tiny", "--progress", "none"]) == 0
    assert sorted(p.name for p in models.iterdir()) == [".lock", "tiny"]


def test_store_lock_waits_for_another_process(tmp_path, caplog):
    """The lock is a real OS lock (filelock): an install waits while another process holds it."""
    from deepseg.models.store import _lock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
                               "time.sleep(1); lock.release()", str(tmp_path / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with caplog.at_level("WARNING"), _lock(tmp_path):
        assert holder.wait(timeout=1) == 0  # we got the lock only once the holder had let it go
    assert "Waiting for another install" in caplog.text
