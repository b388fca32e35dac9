"""Folds are chosen by name everywhere: nnU-Net results folders holding only ``fold_all``, only ``fold_3``,
or ``fold_0`` + ``fold_3`` (choosing ``3``) segment, explain and give uncertainty maps.

The layouts are copies of the genuine nnU-Net fixture (``Testing/fixtures/make_nnunet_model.py``) with
its fold folders renamed: ``fold_all`` and ``fold_3`` hold the fixture's fold 0 and fold 1 networks.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case, trainer_folder, write_case

from deepseg.cli import main
from deepseg.errors import ModelError
from deepseg.models.base import fold_name, select_folds

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures"
LAYOUTS = {"all_only": {"fold_all": "fold_0"}, "3_only": {"fold_3": "fold_1"},
           "0_and_3": {"fold_0": "fold_0", "fold_3": "fold_1"}}


def test_select_folds_uses_names_and_explains_refusals():
    assert fold_name(3) == fold_name("3") == fold_name("fold_3") == "3" and fold_name("all") == "all"
    assert select_folds(["0", "3"], None) == ["0", "3"]
    assert select_folds(["0", "3"], [3]) == ["3"] and select_folds(["all"], ["all"]) == ["all"]
    assert select_folds(["0", "3"], ["3", 0, "fold_3"]) == ["3", "0"]  # request order, no repeats
    with pytest.raises(ModelError) as err:
        select_folds(["all"], [0], "Model 'x'")  # a position is not a name: fold 0 does not exist here
    assert "fold_0" in err.value.problem and "all" in err.value.problem and "--folds all" in err.value.fix


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Trainer folders with renamed fold folders (JSON copied, checkpoints symlinked)."""
    src = trainer_folder(ensure_nnunet_fixture(FIXTURES))
    root = tmp_path_factory.mktemp("fold_layouts")
    out = {}
    for name, folds in LAYOUTS.items():
        dst = root / name / src.name
        dst.mkdir(parents=True)
        for f in ("dataset.json", "plans.json"):
            shutil.copy(src / f, dst / f)
        for new, old in folds.items():
            (dst / new).mkdir()
            os.symlink(src / old / "checkpoint_final.pth", dst / new / "checkpoint_final.pth")
        out[name] = dst
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fold_case")
    return write_case(folder, "case_000", make_case(777, size_ijk=(48, 20, 48)))[:2]


def _inputs(case):
    return [a for path in case for a in ("--input", str(path))]


@pytest.mark.parametrize("layout,folds,expect", [("all_only", None, ["all"]), ("3_only", None, ["3"]),
                                                 ("0_and_3", "3", ["3"])])
def test_segment_and_explain_with_uncertainty_on_every_fold_layout(layouts, case, layout, folds, expect, tmp_path,
                                                                   capsys):
    from deepseg.explain import explain, uncertainty_maps
    from deepseg.io import read_volume
    from deepseg.models.loaders import load_model

    model_dir = layouts[layout]
    assert load_model(model_dir, folds=folds and [folds]).fold_names == expect
    fold_args = ["--folds", folds] if folds else []
    code = main(["segment", "--model", str(model_dir), *_inputs(case), "--labelmap", str(tmp_path / "l.nii.gz"),
                 "--uncertainty", str(tmp_path / "u.nii.gz"), "--tta", *fold_args, "--device", "cpu",
                 "--progress", "none", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uncertainty"]["folds"] == 1 and summary["uncertainty"]["measure"] == "variance"
    labels = read_volume(tmp_path / "l.nii.gz").array
    assert (labels == 1).any() and (labels == 2).any()

    code = main(["explain", "--model", str(model_dir), *_inputs(case), "--segment", "spleen",
                 "--output", str(tmp_path / "h.nii.gz"), "--uncertainty", str(tmp_path / "eu.nii.gz"),
                 *fold_args, "--device", "cpu", "--progress", "none", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uncertainty"]["folds"] == 1 and not summary["all_zero"]
    heat = read_volume(tmp_path / "h.nii.gz")
    assert heat.array.max() == pytest.approx(1.0) and heat.array[labels == 2].mean() > heat.array.mean()

    model = load_model(model_dir)  # every fold loaded; the run chooses by name
    res = explain(model, case, "liver", folds=folds and [folds], device="cpu")
    assert res.heatmap.array.max() == pytest.approx(1.0)
    unc = uncertainty_maps(model, case, folds=folds and [int(folds)], tta=False, device="cpu")
    assert unc.info["folds"] == 1 and np.array_equal(unc.labels.array, res.labels.array)


def test_named_fold_choice_runs_that_fold(layouts, case):
    """``--folds 3`` out of fold_0 + fold_3 runs exactly fold_3's network (same probabilities as a folder
    holding only fold_3), and a fold that is not there is refused naming the ones that are."""
    from deepseg.inference.pipeline import segment

    chosen = segment(layouts["0_and_3"], case, folds=["3"], device="cpu", return_probabilities=True)
    alone = segment(layouts["3_only"], case, device="cpu", return_probabilities=True)
    both = segment(layouts["0_and_3"], case, device="cpu", return_probabilities=True)
    np.testing.assert_allclose(chosen.probabilities, alone.probabilities, atol=1e-6)
    assert np.abs(both.probabilities - alone.probabilities).max() > 1e-3  # the ensemble of two differs
    with pytest.raises(ModelError) as err:
        segment(layouts["all_only"], case, folds=[0], device="cpu")
    assert "fold_0" in err.value.problem and "available folds: all" in err.value.problem
