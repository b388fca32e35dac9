"""A re-run skips a finished case only when its outputs are all still there (one local worker, a tiny
untrained card model: what is checked is the bookkeeping, not the segmentation)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import save_tiny_model  # noqa: E402


def _status(out: Path) -> dict:
    with open(out / "cohort.csv", newline="") as fh:
        return {r["case"]: r["status"] for r in csv.DictReader(fh)}


def test_a_case_whose_output_was_deleted_is_made_again(tmp_path):
    from distributed import LocalCluster

    import deepseg
    from deepseg.io import write_volume
    from deepseg.volume import Volume

    model = save_tiny_model(tmp_path / "model")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("a", "b"):
        arr = np.random.default_rng(len(name)).normal(0, 10, (12, 20, 24)).astype(np.float32)
        write_volume(Volume(arr, (1.0, 1.0, 2.0)), cohort / f"{name}.nii.gz")
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:  # one worker start for both runs
        kw = dict(scheduler=cluster.scheduler_address, device="cpu", labelmap=True)
        deepseg.batch(model, cohort, out, **kw)
        assert _status(out) == {"a": "done", "b": "done"}
        (out / "a" / "a_labels.nii.gz").unlink()  # the user deleted one output of case a

        deepseg.batch(model, cohort, out, **kw)
    assert _status(out) == {"a": "done", "b": "skipped"}
    assert (out / "a" / "a_labels.nii.gz").is_file()
