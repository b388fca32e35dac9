"""Output claims (``deepseg.io.atomic``): one winner, also when two runs take over the same stale claim."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from deepseg.errors import InputError
from deepseg.io import atomic
from deepseg.io.atomic import AtomicOutputs, lock_path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_two_runs_taking_over_one_stale_claim_leave_one_owner(tmp_path, monkeypatch):
    """Run B reads a claim left by a dead process; before B acts on it, run A takes the claim over and
    makes its own.  B must then be refused, not delete A's fresh claim and proceed next to A.

    The interleaving is forced by wrapping ``_alive`` (B's check of the dead owner): the wrapper runs A's
    whole claim first, then answers with the real ``_alive``."""
    final = (tmp_path / "o.seg.nrrd").resolve()
    lock = lock_path(final)
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier"}))
    real_alive = atomic._alive
    first_run = AtomicOutputs(overwrite=False)
    calls = []

    def b_pauses_while_a_takes_over(pid):
        calls.append(pid)
        if len(calls) == 1:  # B has read the stale claim: A runs now, start to end of its claim
            first_run.reserve(final)
        return real_alive(pid)

    monkeypatch.setattr(atomic, "_alive", b_pauses_while_a_takes_over)
    with pytest.raises(InputError, match="being written by another DeepSeg run"):
        AtomicOutputs(overwrite=False).reserve(final)
    assert lock.exists() and first_run._locks == {final: lock}  # A still holds its claim
    first_run.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no claim or take-over file left


def test_stale_claim_is_taken_over_and_released(tmp_path):
    final = (tmp_path / "o.nii.gz").resolve()
    lock_path(final).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with AtomicOutputs(overwrite=False).reserve(final) as out:
        owner = json.loads(lock_path(final).read_text())
        out.add(final, lambda p: p.write_text("x"))
    assert owner["pid"] == os.getpid() and final.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nii.gz"]


@pytest.mark.parametrize("name, instead", [("o.mhd", "o.mha"), ("labels.nhdr", "labels.nrrd")])
def test_detached_header_outputs_are_refused_at_the_claim(tmp_path, name, instead):
    """A .mhd/.nhdr header keeps its voxels in a second file that SimpleITK names after the temporary
    header (``.o.mhd.<id>.partial.zraw``): renaming the header into place would leave the data under a
    hidden "partial" name, never cleaned up or replaced.  Such outputs are refused before any work."""
    with pytest.raises(InputError, match="second file") as err:
        AtomicOutputs().reserve(tmp_path / name)
    assert instead in err.value.fix
    assert list(tmp_path.iterdir()) == []


def _folder_in_its_place(final, _tmp):
    final.unlink()
    final.mkdir()
    (final / "kept.txt").write_text("a file in the folder")


def _temporary_deleted(_final, tmp):
    tmp.unlink()


@pytest.mark.parametrize("break_second", [_folder_in_its_place, _temporary_deleted])
@pytest.mark.parametrize("first_existed", [True, False])
def test_a_failed_rename_leaves_every_earlier_output_as_it_was(tmp_path, first_existed, break_second):
    """Two outputs of one job; after both are written, the second one's rename is made to fail for real:
    a folder takes its place (another program, between the claim and the end of the run: EISDIR), or its
    temporary file is deleted (a cleaner removing hidden files: ENOENT).  The first output, already
    renamed, must be taken back: its earlier file restored (or no file, if it had none), the second's
    earlier content untouched, no temporary, second-name or claim file left, and the error names the
    output that could not be moved."""
    first, second = (tmp_path / "labels.nii.gz").resolve(), (tmp_path / "unc.nii.gz").resolve()
    if first_existed:
        first.write_text("earlier labels")
    second.write_text("earlier uncertainty")
    out = AtomicOutputs(overwrite=True).reserve(first, second)
    out.add(first, lambda p: p.write_text("new labels"))
    out.add(second, lambda p: p.write_text("new uncertainty"))
    break_second(second, next(tmp_path.glob(".unc.nii.gz.*.partial.nii.gz")))
    with pytest.raises(InputError, match="Could not move output .*unc.nii.gz") as err:
        out.commit()
    assert "every earlier file is unchanged" in err.value.problem
    assert (first.read_text() == "earlier labels") if first_existed else not first.exists()
    if second.is_dir():
        assert [p.name for p in second.iterdir()] == ["kept.txt"]
    else:
        assert second.read_text() == "earlier uncertainty"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "unc.nii.gz"][1 - first_existed:]


def test_a_commit_replaces_earlier_files_and_leaves_nothing_else(tmp_path):
    first, second = (tmp_path / "labels.nii.gz").resolve(), (tmp_path / "unc.nii.gz").resolve()
    first.write_text("earlier labels")
    with AtomicOutputs(overwrite=True).reserve(first, second) as out:
        out.add(first, lambda p: p.write_text("new labels"))
        out.add(second, lambda p: p.write_text("new uncertainty"))
    assert (first.read_text(), second.read_text()) == ("new labels", "new uncertainty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "unc.nii.gz"]


def test_an_output_that_is_a_folder_is_refused_at_the_claim(tmp_path):
    """With --overwrite, a folder at the output path used to pass the claim and fail only at the end of
    the run, when the result could not be renamed onto it."""
    (tmp_path / "labels.nii.gz").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        AtomicOutputs(overwrite=True).reserve(tmp_path / "labels.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]
