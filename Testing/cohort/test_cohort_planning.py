"""Cohort planning without Dask: which cases a folder/glob/manifest gives, and how workers are sized."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepseg.cohort.cases import find_cases
from deepseg.cohort.plan import MIN_CASE_BYTES, case_bytes_estimate, plan_workers
from deepseg.errors import InputError

GiB = 2**30


def _image(path: Path, size=(8, 9, 10)) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(size[::-1], np.int16)), str(path))
    return path


def test_folder_each_image_file_and_series_folder_is_a_case(tmp_path):
    _image(tmp_path / "b.nii.gz")
    _image(tmp_path / "a.nrrd")
    _image(tmp_path / "c.mha")
    (tmp_path / "dicom_series").mkdir()
    (tmp_path / "dicom_series" / "IM0001").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    _image(tmp_path / "out" / "x.nii.gz")  # the output folder inside the input folder is not a case
    cases = find_cases(tmp_path, exclude=tmp_path / "out")
    assert [c.name for c in cases] == ["a", "b", "c", "dicom_series"]
    assert cases[3].inputs == (str(tmp_path / "dicom_series"),)
    assert all(len(c.inputs) == 1 for c in cases)


def test_nnunet_names_group_channels_in_order(tmp_path):
    for case in ("p1", "p2"):
        for ch in (1, 0):
            _image(tmp_path / f"{case}_{ch:04d}.nii.gz")
    cases = find_cases(tmp_path)
    assert [c.name for c in cases] == ["p1", "p2"]
    assert [Path(p).name for p in cases[0].inputs] == ["p1_0000.nii.gz", "p1_0001.nii.gz"]


def test_nnunet_names_with_a_missing_channel_are_refused(tmp_path):
    _image(tmp_path / "p1_0000.nii.gz")
    _image(tmp_path / "p1_0002.nii.gz")
    with pytest.raises(InputError, match="without gaps"):
        find_cases(tmp_path)


def test_numbered_single_channel_cases_are_not_taken_for_channels(tmp_path):
    """``patient_0001``... are patients for a one-channel model; nnU-Net grouping is for multi-channel ones."""
    for n in (0, 1, 2):
        _image(tmp_path / f"ct_{n:04d}.nii.gz")
    assert [c.name for c in find_cases(tmp_path, channels=1)] == ["ct_0000", "ct_0001", "ct_0002"]
    assert [len(c.inputs) for c in find_cases(tmp_path, channels=3)] == [3]
    with pytest.raises(InputError, match="model takes 2 images"):
        find_cases(tmp_path, channels=2)


def test_an_images_ts_folder_for_a_one_channel_model_names_cases_without_0000(tmp_path):
    for case in ("p1", "p2"):
        _image(tmp_path / f"{case}_0000.nii.gz")
    assert [(c.name, len(c.inputs)) for c in find_cases(tmp_path, channels=1)] == [("p1", 1), ("p2", 1)]


def test_the_channel_count_comes_from_the_model_folder(tmp_path):
    from fixtures.make_nnunet_model import ensure_nnunet_fixture, trainer_folder

    from deepseg.models.card import CARD_FILE, InputSpec, LabelInfo, ModelCard
    from deepseg.models.formats import input_channel_count

    results = ensure_nnunet_fixture(Path(__file__).resolve().parents[1] / "_fixtures")
    assert input_channel_count(trainer_folder(results)) == 2  # the fixture takes CT + T1
    assert input_channel_count(trainer_folder(results).parent) == 2  # a results folder: its 3d_fullres training
    card = ModelCard("two-mr", "Two-contrast U-Net", "monai-unet", [LabelInfo(1, "lesion")],
                     architecture={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                     preprocessing={"normalization": {"method": "zscore"}, "target_spacing": None,
                                    "patch_size": [16] * 3, "overlap": 0.25, "mirror_axes": []},
                     inputs=[InputSpec("T1"), InputSpec("T2")])
    (tmp_path / CARD_FILE).write_text(json.dumps(card.to_json()))
    assert input_channel_count(tmp_path) == 2


def test_cases_with_another_number_of_images_than_the_model_takes_are_refused(tmp_path):
    """A folder of single images (or a one-column manifest) for a two-image model: refused when the cases
    are listed, naming the fix, not after the workers have started, one failed case at a time."""
    _image(tmp_path / "a.nii.gz")
    _image(tmp_path / "b.nrrd")
    with pytest.raises(InputError, match=r"takes 2 image\(s\) per case, but case 'a' has 1 \(2 of 2") as err:
        find_cases(tmp_path, channels=2)
    assert "manifest" in err.value.fix
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case,CT\np1,a.nii.gz\n")
    with pytest.raises(InputError, match="takes 2 image"):
        find_cases(manifest, channels=2)
    manifest.write_text("case,CT,T1\np1,a.nii.gz,b.nrrd\n")
    assert [len(c.inputs) for c in find_cases(manifest, channels=2)] == [2]


def test_glob_and_duplicate_names(tmp_path):
    _image(tmp_path / "x" / "scan.nii.gz")
    _image(tmp_path / "y" / "scan.nii.gz")
    _image(tmp_path / "y" / "other.nrrd")
    assert [c.name for c in find_cases(str(tmp_path / "y" / "*"))] == ["other", "scan"]
    with pytest.raises(InputError, match="Two inputs give the case name 'scan'"):
        find_cases(str(tmp_path / "*" / "scan.nii.gz"))


def test_manifest_relative_and_absolute_paths(tmp_path):
    ct = _image(tmp_path / "imgs" / "ct.nii.gz")
    t1 = _image(tmp_path / "t1.nii.gz")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case,CT,T1\npatient-1,imgs/ct.nii.gz,{t1}\n")
    (case,) = find_cases(manifest)
    assert case.name == "patient-1" and case.inputs == (str(ct), str(t1))
    manifest.write_text("case,CT\n../escape,imgs/ct.nii.gz\n")
    with pytest.raises(InputError, match="cannot be used as a folder name"):
        find_cases(manifest)
    manifest.write_text("name,CT\na,imgs/ct.nii.gz\n")
    with pytest.raises(InputError, match="needs a 'case' column"):
        find_cases(manifest)


def test_nothing_found_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(InputError, match="No cases found"):
        find_cases(tmp_path)
    with pytest.raises(InputError, match="neither a folder"):
        find_cases(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("cores,memory,gpus,case,expect", [
    (2, 24 * GiB, 0, MIN_CASE_BYTES, (2, 1)),       # this machine: two single-thread workers
    (64, 512 * GiB, 0, MIN_CASE_BYTES, (16, 4)),    # big CPU node: 4 threads each, cores-bound
    (64, 64 * GiB, 0, 16 * GiB, (3, 4)),            # whole-body CTs on little memory: memory-bound
    (1, 4 * GiB, 0, 40 * GiB, (1, 1)),              # never fewer than one worker
    (32, 256 * GiB, 4, MIN_CASE_BYTES, (4, 8)),     # one worker per GPU, cores shared out
])
def test_plan_from_cores_memory_and_gpus(cores, memory, gpus, case, expect):
    plan = plan_workers(cores, memory, gpus, case)
    assert (plan.workers, plan.threads) == expect
    assert plan.memory_limit == memory // plan.workers
    assert plan.gpus == tuple(range(gpus))


def test_explicit_plan_wins_and_is_checked():
    plan = plan_workers(2, 24 * GiB, 0, MIN_CASE_BYTES, workers=1, threads=2)
    assert (plan.workers, plan.threads, plan.memory_limit) == (1, 2, 24 * GiB)
    with pytest.raises(InputError, match="at least 1"):
        plan_workers(2, 24 * GiB, workers=0)


def test_case_memory_estimate_reads_headers_only(tmp_path):
    small = _image(tmp_path / "small.nii.gz", (10, 10, 10))
    big = _image(tmp_path / "big.nii.gz", (300, 300, 200))
    assert case_bytes_estimate([(str(small),)]) == MIN_CASE_BYTES
    assert case_bytes_estimate([(str(small),), (str(big), str(big))]) == 2 * 300 * 300 * 200 * 64
    assert case_bytes_estimate([(str(tmp_path / "broken.nii.gz"),)]) == MIN_CASE_BYTES


def test_unreachable_scheduler_is_an_error_naming_the_fix(tmp_path):
    import socket

    import dask

    import deepseg

    _image(tmp_path / "in" / "a.nii.gz")
    model = tmp_path / "model"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))  # an nnU-Net folder; never loaded
    with socket.socket() as s:  # a port on 127.0.0.1 where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="Cannot reach the Dask scheduler") as err, \
            dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        deepseg.batch(model, tmp_path / "in", tmp_path / "out", scheduler=f"tcp://127.0.0.1:{port}")
    assert "dask scheduler" in err.value.fix
    assert json.loads((tmp_path / "out" / "cohort.json").read_text())["status"] == "error"


def test_progress_bar_and_lines(capsys):
    from deepseg.cli.batch import progress_display
    from deepseg.cohort.run import CohortProgress

    progress_display("bar")(CohortProgress(total=10, done=3, failed=1, skipped=2, running=2, eta_s=125.0))
    bar = capsys.readouterr().err
    assert "[############" in bar and "6/10" in bar and "done 3" in bar and "failed 1" in bar
    assert "skipped 2" in bar and "running 2" in bar and "ETA 2m05s" in bar
    lines = progress_display("lines")
    lines(CohortProgress(total=4, done=1))
    lines(CohortProgress(total=4, done=1, running=2))  # unchanged count: no second line
    assert capsys.readouterr().err == "PROGRESS batch 1/4\n"


def test_second_batch_on_the_same_output_folder_is_refused(tmp_path):
    """While a run holds the cohort folder (another process), a second run is refused before any work."""
    import subprocess
    import sys

    import deepseg

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from deepseg.cohort.run import _exclusive; "
                               "from pathlib import Path; lock = _exclusive(Path(sys.argv[1])).__enter__(); "
                               "print('held', flush=True); sys.stdin.read()", str(out)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="Another deepseg batch is writing") as err:
            deepseg.batch(tmp_path / "no-model", tmp_path / "no-inputs", out)
        assert "--output-dir" in err.value.fix
    finally:
        holder.communicate("")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written but the lock


def test_cohort_table_write_failure_keeps_the_last_table_and_no_temporary_file(tmp_path):
    from deepseg.cohort.table import CohortTable

    table = CohortTable(tmp_path, ["a", "b"])
    table.add({"case": "a", "status": "done", "volumes": [{"name": "liver", "volume_ml": 1.5}]})
    table.write()
    before = (tmp_path / "cohort.csv").read_text()
    table.add({"case": "b", "status": "done", "volumes": [{"name": "liver"}]})  # a row the writer cannot use
    with pytest.raises(KeyError):
        table.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv"]
    assert (tmp_path / "cohort.csv").read_text() == before and "liver_mL" in before
