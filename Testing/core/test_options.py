"""``SegmentOptions``: one declaration serves the Python API, the CLI parsers and the Slicer command lines."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deepseg.cli import build_parser, main
from deepseg.errors import InputError
from deepseg.options import EXPLAIN_OPTIONS, SegmentOptions
from deepseg_slicer.commands import run_args

# every option away from its default, so a flag that is lost or mis-parsed shows up
NON_DEFAULT = SegmentOptions(device="cpu", backend="openvino", tta=True, folds=[0, "all"], overlap=0.3,
                             keep_largest=True,
                             min_component_ml=0.25, fill_holes=True, structures=["Liver", "2"], use_tg263=True,
                             uncertainty="unc.nii.gz", overwrite=True, assume_spacing=(0.5, 0.5, 2.0))


def _parse(subcommand: str, argv: list[str]):
    return build_parser().parse_args([subcommand, *argv])


def test_every_field_differs_from_its_default_in_the_round_trip_case():
    for f in dataclasses.fields(SegmentOptions):
        assert getattr(NON_DEFAULT, f.name) != f.default, f"{f.name}: give it a non-default value in NON_DEFAULT"


def test_segment_command_line_round_trip():
    argv = run_args("m", ["a.nii.gz"], NON_DEFAULT) + ["--output", "o.seg.nrrd"]
    args = _parse("segment", argv)
    assert SegmentOptions.from_args(args) == NON_DEFAULT
    assert args.model == "m" and args.input == ["a.nii.gz"] and args.progress == "lines"
    defaults = _parse("segment", ["--model", "m", "--input", "a", "--output", "o.seg.nrrd"])
    assert SegmentOptions.from_args(defaults) == SegmentOptions()
    assert SegmentOptions().to_argv() == []


def test_explain_takes_the_run_options_it_uses():
    argv = run_args("m", ["a.nii.gz"], NON_DEFAULT, EXPLAIN_OPTIONS) + ["--segment", "Liver", "--output", "h.nrrd"]
    got = SegmentOptions.from_args(_parse("explain", argv))
    assert got == SegmentOptions(**{n: getattr(NON_DEFAULT, n) for n in EXPLAIN_OPTIONS})
    assert "--keep-largest" not in argv and "--folds" in argv and "--tta" in argv


def test_bare_uncertainty_flag_means_compute_without_writing():
    args = _parse("segment", ["--model", "m", "--input", "a", "--output", "o", "--uncertainty"])
    assert SegmentOptions.from_args(args).uncertainty is True
    assert SegmentOptions(uncertainty=True).to_argv() == ["--uncertainty"]


def test_folds_are_names_and_lists_become_tuples():
    assert SegmentOptions.from_args(_parse("segment", ["--model", "m", "--input", "a", "--folds", "3,all"])).folds \
        == (3, "all")
    assert SegmentOptions(folds=2).folds == (2,) and SegmentOptions(structures="Liver").structures == ("Liver",)
    assert SegmentOptions(structures=[]).structures is None


def test_keywords_build_options_and_unknown_names_are_refused():
    base = SegmentOptions(device="cpu", tta=True)
    assert SegmentOptions.build(base, tta=False) == SegmentOptions(device="cpu")
    with pytest.raises(TypeError, match="keep_larges.*valid:.*keep_largest"):
        SegmentOptions.build(keep_larges=True)


@pytest.mark.parametrize("kw,match", [({"overlap": 1.0}, "overlap"), ({"overlap": -0.1}, "overlap"),
                                      ({"min_component_ml": -1}, "minimum component")])
def test_invalid_values_are_refused_with_the_fix(kw, match):
    with pytest.raises(InputError, match=match):
        SegmentOptions(**kw)


def test_cli_reports_invalid_overlap(capsys):
    assert main(["segment", "--model", "m", "--input", "a", "--output", "o.seg.nrrd", "--overlap", "1.5"]) == 2
    assert "overlap 1.5 is outside [0, 1)" in capsys.readouterr().err


def test_api_options_object_and_keywords_give_the_same_run(tmp_path, oblique_volume, threshold_model):
    from deepseg.inference.pipeline import segment

    opts = SegmentOptions(device="cpu", keep_largest=True, fill_holes=True, structures=["Bright"])
    a = segment(threshold_model, [oblique_volume], options=opts, output=tmp_path / "a.seg.nrrd")
    b = segment(threshold_model, [oblique_volume], device="cpu", keep_largest=True, fill_holes=True,
                structures=["Bright"])
    np.testing.assert_array_equal(a.labels.array, b.labels.array)
    settings = json.loads((tmp_path / "a.json").read_text())["settings"]
    assert settings["keep_largest"] is True and settings["fill_holes"] is True and settings["structures"] == ["Bright"]
    with pytest.raises(TypeError, match="unknown segment option"):
        segment(threshold_model, [oblique_volume], keep_larges=True)


def test_a_new_option_is_one_field(capsys):
    """What another option (e.g. a precision choice) costs: one field; flag, parsing, checks and argv follow."""
    import argparse

    from deepseg.options import _option

    @dataclasses.dataclass(frozen=True)
    class WithPrecision(SegmentOptions):
        precision: str = _option("fp32", choices=("fp32", "bf16"), help="compute precision")

    parser = argparse.ArgumentParser()
    WithPrecision.add_arguments(parser)
    chosen = WithPrecision.from_args(parser.parse_args(["--precision", "bf16", "--tta"]))
    assert chosen == WithPrecision(precision="bf16", tta=True) and chosen.to_argv() == ["--tta", "--precision", "bf16"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp8"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(InputError, match="Choose one of: fp32, bf16"):
        WithPrecision(precision="fp8")
    assert WithPrecision(precision="bf16").settings()["precision"] == "bf16"
