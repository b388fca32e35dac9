"""``deepseg batch`` on real Dask clusters (127.0.0.1 only) with the genuine nnU-Net fixture.

* a LocalCluster of 2 worker processes over a folder of 5 good cases + 1 corrupt one, with one worker
  killed mid-run: the cohort completes, the killed case is retried, nothing is duplicated or partial,
  each worker process loads the model once, and label maps equal a sequential ``segment`` run;
* Ctrl-C (SIGINT) on the CLI keeps finished cases, and the same command resumes, skipping them;
* a second client on a scheduler the test started, reached by ``--scheduler``; changed settings are
  refused until ``--overwrite``.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case, trainer_folder, write_case

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures"
GOOD = ["c1", "c2", "c3", "c4", "c5"]
FAST = ["--folds", "0", "--threads-per-worker", "1"]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return trainer_folder(ensure_nnunet_fixture(FIXTURES))


def _write_cohort(folder: Path, scale: int = 1) -> Path:
    """Five small cases (various sizes, spacings, orientations) in nnU-Net naming, and a corrupt one;
    ``scale`` multiplies the in-plane size (more background, so more windows and a longer run)."""
    a = np.deg2rad(15)
    oblique = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    layouts = [((48, 20, 48), (0.8, 2.5, 0.8), None), ((40, 16, 44), (1.0, 3.0, 0.9), oblique),
               ((52, 24, 40), (0.7, 2.0, 1.0), None), ((44, 18, 52), (0.9, 2.8, 0.75), oblique),
               ((40, 22, 40), (0.8, 2.5, 0.8), np.diag([1.0, -1.0, -1.0]))]
    for i, (name, (size, spacing, direction)) in enumerate(zip(GOOD, layouts)):
        size = (size[0] * scale, size[1], size[2] * scale)
        write_case(folder, name, make_case(500 + i, size_ijk=size, spacing=spacing, direction=direction))
    broken = write_case(folder, "broken", make_case(599, size_ijk=(40, 16, 40)))[0]
    broken.write_bytes(np.random.default_rng(0).bytes(broken.stat().st_size))  # a corrupt file (not a NIfTI)
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return _write_cohort(tmp_path_factory.mktemp("cohort"))


def _rows(out: Path) -> list[dict]:
    with open(out / "cohort.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_complete(out: Path, cases) -> None:
    """Every listed case folder holds the full set of outputs, and nothing half-written is anywhere."""
    for case in cases:
        files = sorted(p.name for p in (out / case).iterdir())
        optional = [f for f in (f"{case}_labels.nii.gz", f"{case}_measurements.csv") if (out / case / f).exists()]
        assert files == sorted([f"{case}.seg.nrrd", f"{case}.json", "batch.json"] + optional)
    leftovers = [p for p in out.rglob("*") if "partial" in p.name]
    assert not leftovers and not (out / ".partial").exists()


def test_local_cluster_completes_when_a_worker_is_killed(model_dir, cohort, tmp_path):
    import psutil
    from distributed import Client

    import deepseg
    from deepseg.io import read_volume

    out = tmp_path / "out"
    killed: dict = {}

    def kill_a_busy_worker():
        """Once a case has finished, kill (SIGKILL) a worker process that is processing another case."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            try:
                address = json.loads((out / "cohort.json").read_text())["scheduler"]
                if (out / "cohort.csv").exists() and len(_rows(out)) >= 1:
                    with Client(address, timeout="10s") as client:
                        busy = {w: keys for w, keys in client.processing().items() if keys}
                        if busy:
                            worker, keys = next(iter(busy.items()))
                            pid = client.run(os.getpid, workers=[worker])[worker]
                            psutil.Process(pid).kill()
                            killed.update(worker=worker, pid=pid, keys=[str(k) for k in keys])
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_a_busy_worker, daemon=True)
    environ = dict(os.environ)
    watcher.start()
    result = deepseg.batch(model_dir, cohort, out, workers=2, threads_per_worker=1, folds=[0], retries=2,
                           labelmap=True)
    watcher.join(timeout=5)
    # the workers' nannies set OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ... here; the run puts them back
    assert dict(os.environ) == environ
    assert killed, "the test never found a worker busy with a case to kill"

    rows = _rows(out)
    assert sorted(r["case"] for r in rows) == sorted(GOOD + ["broken"])  # each case once
    status = {r["case"]: r for r in rows}
    assert [c for c in GOOD if status[c]["status"] == "done"] == GOOD
    assert status["broken"]["status"] == "failed"
    assert "corrupt" in status["broken"]["error"] and status["broken"]["fix"]
    assert result.counts == {"done": 5, "failed": 1, "skipped": 0}
    retried = [r["case"] for r in rows if int(r["attempts"]) > 1]
    assert retried and all(any(f"-{c}-1" in k for k in killed["keys"]) for c in retried)
    assert all(float(status[c]["liver_mL"]) > 0 and float(status[c]["spleen_mL"]) > 0 for c in GOOD)
    _assert_complete(out, GOOD)
    assert not (out / "broken").exists()

    # each worker process loaded the model once, however many cases it ran; the killed one was replaced
    provenance = json.loads((out / "cohort.json").read_text())
    workers = provenance["workers"]
    assert provenance["status"] == "finished" and provenance["counts"] == result.counts
    assert all(w["model_loads"] == 1 for w in workers.values())
    assert max(w["cases"] for w in workers.values()) >= 2

    # the same label maps as a sequential run in this process (different thread count included)
    for case in GOOD[:2]:
        inputs = [cohort / f"{case}_0000.nii.gz", cohort / f"{case}_0001.nii.gz"]
        sequential = deepseg.segment(model_dir, inputs, folds=[0])
        batched = read_volume(out / case / f"{case}_labels.nii.gz")
        assert np.array_equal(batched.array, sequential.labels.array)
        assert batched.same_grid(sequential.labels, tol=0.0)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepseg", "batch", *args]


def test_ctrl_c_keeps_finished_cases_and_the_same_command_resumes(model_dir, tmp_path):
    import psutil

    # cases 4x larger in-plane than the shared cohort (about 16x the windows), so that on a quiet machine the
    # rest of the cohort still takes many seconds when the interrupt is sent after the first finished case
    cohort = _write_cohort(tmp_path / "cohort", scale=4)
    out = tmp_path / "out"
    command = _cli("--model", str(model_dir), "--inputs", str(cohort), "--output-dir", str(out), "--workers", "2",
                   *FAST, "--progress", "lines")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "cohort.csv").exists() and any(r["status"] == "done" for r in _rows(out)):
            break
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in err
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "workers left running"

    first = {r["case"]: r for r in _rows(out)}
    finished = [c for c, r in first.items() if r["status"] == "done"]
    assert finished and len(first) < 6, "the interrupt should land mid-run"
    _assert_complete(out, finished)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(finished)
    assert json.loads((out / "cohort.json").read_text())["status"] == "cancelled"
    stamps = {c: (out / c / f"{c}.seg.nrrd").stat().st_mtime_ns for c in finished}

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stderr  # the corrupt case fails, and says so
    assert "FAILED broken" in again.stdout
    rows = {r["case"]: r for r in _rows(out)}
    assert sorted(rows) == sorted(GOOD + ["broken"])
    assert all(rows[c]["status"] == "skipped" for c in finished)
    assert all(rows[c]["status"] == "done" for c in GOOD if c not in finished)
    assert all(rows[c]["liver_mL"] == first[c]["liver_mL"] for c in finished)  # volumes carried over
    assert {c: (out / c / f"{c}.seg.nrrd").stat().st_mtime_ns for c in finished} == stamps
    _assert_complete(out, GOOD)


def test_second_client_on_a_running_scheduler(model_dir, cohort, tmp_path, request):
    from distributed import Client, LocalCluster

    from deepseg.cohort.run import _restore_environ

    request.addfinalizer(lambda environ=dict(os.environ): _restore_environ(environ))  # this test's own nannies

    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case,CT,T1\n" + "".join(f"{c},{cohort / f'{c}_0000.nii.gz'},{cohort / f'{c}_0001.nii.gz'}\n"
                                                 for c in GOOD[:2]))
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
        base = _cli("--model", str(model_dir), "--inputs", str(manifest), "--output-dir", str(out),
                    "--scheduler", cluster.scheduler_address, *FAST, "--measure", "--progress", "none", "--json")
        run = subprocess.run(base, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["counts"] == {"done": 2, "failed": 0, "skipped": 0}
        provenance = json.loads((out / "cohort.json").read_text())
        assert provenance["scheduler"] == cluster.scheduler_address and provenance["plan"] is None
        assert set(provenance["workers"]) <= workers
        _assert_complete(out, GOOD[:2])
        with open(out / "c1" / "c1_measurements.csv", newline="") as fh:  # --measure: the table of `deepseg measure`
            table = {r["segment"]: r for r in csv.DictReader(fh)}
        assert float(table["liver"]["volume_mL"]) == pytest.approx(float(_rows(out)[0]["liver_mL"]), rel=1e-3)
        # the run's model cache left the shared workers with the client
        plugins = client.run(lambda dask_worker: list(dask_worker.plugins))
        assert not [p for names in plugins.values() for p in names if p.startswith("deepseg-model")]

        changed = subprocess.run(base + ["--keep-largest"], capture_output=True, text=True, timeout=600)
        assert changed.returncode == 1
        rows = _rows(out)
        assert all(r["status"] == "failed" and "other inputs or settings" in r["error"] and "--overwrite" in r["fix"]
                   for r in rows)
        replaced = subprocess.run(base + ["--keep-largest", "--overwrite"], capture_output=True, text=True, timeout=600)
        assert replaced.returncode == 0, replaced.stderr
        assert [r["status"] for r in _rows(out)] == ["done"] * 2
        _assert_complete(out, GOOD[:2])

        # --export: DICOM SEG + RT-STRUCT for a DICOM-series case; a NIfTI case is refused with the fix
        from core.test_export_dicom import _write_series

        from deepseg.io import read_volume

        series = tmp_path / "ct_series"
        series.mkdir()
        _write_series(series, read_volume(cohort / "c3_0000.nii.gz"))
        dicom_manifest = tmp_path / "dicom.csv"
        dicom_manifest.write_text(f"case,CT,T1\nd3,{series},{cohort / 'c3_0001.nii.gz'}\n"
                                  f"c4,{cohort / 'c4_0000.nii.gz'},{cohort / 'c4_0001.nii.gz'}\n")
        exported = subprocess.run(_cli("--model", str(model_dir), "--inputs", str(dicom_manifest), "--output-dir",
                                       str(tmp_path / "dicom_out"), "--scheduler", cluster.scheduler_address, *FAST,
                                       "--export", "dicom-seg,rtstruct", "--progress", "none"),
                                  capture_output=True, text=True, timeout=600)
        assert exported.returncode == 1, exported.stderr
        rows = {r["case"]: r for r in _rows(tmp_path / "dicom_out")}
        assert rows["d3"]["status"] == "done" and rows["c4"]["status"] == "failed"
        assert "needs a DICOM series" in rows["c4"]["error"]
        import pydicom

        assert pydicom.dcmread(tmp_path / "dicom_out" / "d3" / "d3_seg.dcm").Modality == "SEG"
        assert pydicom.dcmread(tmp_path / "dicom_out" / "d3" / "d3_rtstruct.dcm").Modality == "RTSTRUCT"
