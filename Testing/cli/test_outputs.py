"""Outputs are claimed before any work: a read-only folder or a second run writing the same output is
refused at the start (before the model is loaded), writing errors surface as themselves, and usage
errors exit with 2.  Read-only file systems are real ones (a tmpfs mounted read-only; needs root, as
CI has, else the test skips)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepseg.cli import main
from deepseg.errors import InputError
from deepseg.io import AtomicOutputs, write_volume
from deepseg.io.atomic import lock_path
from deepseg.volume import Volume


@pytest.fixture
def image(tmp_path) -> Path:
    arr = np.random.default_rng(0).normal(0, 10, (12, 20, 24)).astype(np.float32)
    path = tmp_path / "ct.nii.gz"
    write_volume(Volume(arr, (1.0, 1.0, 2.0)), path)
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """A real file system of its own (tmpfs) that a test can turn read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): no real read-only file system to test on")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def _remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


def _segment(model_folder, image, out_dir, capsys, *extra) -> tuple[int, str]:
    code = main(["segment", "--model", str(model_folder), "--input", str(image), "--output",
                 str(out_dir / "o.seg.nrrd"), "--labelmap", str(out_dir / "o.nii.gz"), "--device", "cpu",
                 "--progress", "lines", *extra])
    return code, capsys.readouterr().err


def test_read_only_output_folder_is_refused_before_loading_anything(model_folder, image, tmpfs, capsys):
    _remount_read_only(tmpfs)
    code, err = _segment(model_folder, image, tmpfs, capsys)
    assert code == 2 and "[Errno 30] Read-only file system" in err and "Fix:" in err, err
    assert "PROGRESS" not in err  # not even the "load" stage started
    assert list(tmpfs.iterdir()) == []


def test_write_error_surfaces_as_itself_when_cleanup_fails_too(tmpfs):
    """The file system turns read-only between two outputs: the writer's own Errno 30 comes out, not the
    failure to delete the first temporary file (which the read-only file system also refuses)."""
    def second(path: Path) -> None:
        _remount_read_only(tmpfs)
        path.write_text("never")

    with pytest.raises(OSError) as caught:
        with AtomicOutputs().reserve(tmpfs / "a.json", tmpfs / "b.json") as out:
            out.add(tmpfs / "a.json", lambda p: p.write_text("{}"))
            out.add(tmpfs / "b.json", second)
    assert caught.value.errno == 30 and caught.value.filename.endswith(".partial.json")
    assert not (tmpfs / "a.json").exists() and not (tmpfs / "b.json").exists()


def test_cli_prints_an_os_error_itself_with_exit_1(model_folder, image, tmpfs, capsys, monkeypatch):
    """A disk that turns read-only mid-run: the CLI prints the system's error (no traceback), exits 1,
    and no output appears."""
    def go_read_only(stage, done, total):
        if stage == "write" and total == 0:
            _remount_read_only(tmpfs)

    from deepseg.cli import segment as segment_cli

    monkeypatch.setattr(segment_cli, "progress_callback", lambda mode: go_read_only)
    code, err = _segment(model_folder, image, tmpfs, capsys)
    assert code == 1 and err.startswith("deepseg: error: [Errno 30] Read-only file system"), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmpfs.iterdir() if not p.name.startswith(".")) == []


def test_second_run_on_the_same_output_is_refused_at_its_start(model_folder, image, tmp_path, capsys):
    """While a first run is inferring, a second run writing the same outputs is refused before it loads
    anything; the first run then finishes and writes its outputs."""
    out = tmp_path / "out"
    out.mkdir()
    second: dict = {}

    def during_first(stage, done, total):
        if stage == "infer" and not second:
            stages = []
            try:
                from deepseg import segment

                segment(model_folder, [image], output=out / "o.seg.nrrd", device="cpu",
                        progress_callback=lambda s, d, t: stages.append(s))
            except InputError as exc:
                second.update(error=str(exc), stages=stages)

    from deepseg import segment

    result = segment(model_folder, [image], output=out / "o.seg.nrrd", labelmap=out / "o.nii.gz", device="cpu",
                     progress_callback=during_first)
    assert "being written by another DeepSeg run" in second["error"] and "Fix:" in second["error"]
    assert second["stages"] == []  # refused before loading the model
    assert set(result.outputs) == {"segmentation", "labelmap", "provenance"}
    assert sorted(p.name for p in out.iterdir()) == ["o.json", "o.nii.gz", "o.seg.nrrd"]  # no claim left


def test_second_process_is_refused_while_the_first_holds_the_output(model_folder, image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from deepseg.io import AtomicOutputs; "
                               "AtomicOutputs().reserve(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
                               str(out / "o.seg.nrrd")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = _segment(model_folder, image, out, capsys)
        assert code == 2 and f"process {holder.pid}" in err and "another DeepSeg run" in err, err
        assert "PROGRESS" not in err
    finally:
        holder.communicate("")
    assert not (out / "o.seg.nrrd").exists()


def test_claim_left_by_a_dead_process_is_taken_over(model_folder, image, tmp_path, capsys):
    """A run killed with SIGKILL leaves its claim; the next run sees its process is gone and proceeds."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os, sys; from deepseg.io import AtomicOutputs; "
                           "AtomicOutputs().reserve(sys.argv[1]); os._exit(0)", str(out / "o.seg.nrrd")])
    assert dead.returncode == 0 and lock_path((out / "o.seg.nrrd").resolve()).exists()
    code, err = _segment(model_folder, image, out, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["o.json", "o.nii.gz", "o.seg.nrrd"]


@pytest.mark.parametrize("argv, message", [
    (["segment", "--model", "m", "--input", "ct.nii.gz"], "give --output and/or --labelmap"),
    (["segment", "--model", "m", "--input", "ct.nii.gz", "--output", "o.nii.gz", "--overlap", "2"], "overlap"),
    (["segment", "--model", "m", "--input", "ct.nii.gz", "--output", "o.nii.gz", "--assume-spacing", "0"],
     "positive numbers"),
])
def test_usage_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_kept_and_no_claim_left(model_folder, image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "o.nii.gz").write_text("existing")
    code, err = _segment(model_folder, image, out, capsys)
    assert code == 2 and "already exists" in err
    assert sorted(p.name for p in out.iterdir()) == ["o.nii.gz"] and (out / "o.nii.gz").read_text() == "existing"


@pytest.mark.parametrize("option, name", [("--output", "o.png"), ("--labelmap", "o.tif"), ("--output", "o.vtk")])
def test_a_file_type_no_writer_takes_is_refused_before_the_model_runs(model_folder, image, tmp_path, capsys,
                                                                       option, name):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["segment", "--model", str(model_folder), "--input", str(image), option, str(out / name),
                 "--device", "cpu", "--progress", "lines"])
    err = capsys.readouterr().err
    assert code == 2 and f"{out / name}" in err and "no writer" in err and ".nii.gz" in err, err
    assert "PROGRESS" not in err  # refused before the "load" stage
    assert list(out.iterdir()) == []  # no claim, no sidecar left


@pytest.mark.parametrize("existing", ["heat.nii.gz", "unc.nii.gz"])
def test_explain_refuses_an_existing_output_before_any_work(model_folder, image, tmp_path, capsys, existing):
    """``deepseg explain`` claims its outputs at the start, as ``segment`` does: an existing heat map or
    uncertainty map (without --overwrite) is refused before the model is loaded, not after the run."""
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_text("existing")
    code = main(["explain", "--model", str(model_folder), "--input", str(image), "--segment", "target",
                 "--output", str(out / "heat.nii.gz"), "--uncertainty", str(out / "unc.nii.gz"), "--device", "cpu",
                 "--progress", "lines"])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--overwrite" in err, err
    assert "PROGRESS" not in err  # refused before loading the model
    assert sorted(p.name for p in out.iterdir()) == [existing] and (out / existing).read_text() == "existing"


def test_explain_writes_both_maps_and_leaves_no_claim(model_folder, image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["explain", "--model", str(model_folder), "--input", str(image), "--segment", "target",
                 "--output", str(out / "heat.nii.gz"), "--uncertainty", str(out / "unc.nii.gz"), "--device", "cpu",
                 "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["heat.nii.gz", "unc.nii.gz"]


def test_export_refuses_an_existing_output_before_reading_anything(tmp_path, capsys):
    """``deepseg export`` claims its DICOM outputs first: with an existing RT-STRUCT the refusal comes
    before the (here missing) segmentation and reference series are read."""
    (tmp_path / "rt.dcm").write_text("keep")
    code = main(["export", "--segmentation", str(tmp_path / "missing.seg.nrrd"), "--reference-dicom",
                 str(tmp_path / "no_series"), "--dicom-seg", str(tmp_path / "seg.dcm"), "--rtstruct",
                 str(tmp_path / "rt.dcm")])
    err = capsys.readouterr().err
    assert code == 2 and "rt.dcm already exists" in err and "--overwrite" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rt.dcm"] and (tmp_path / "rt.dcm").read_text() == "keep"
