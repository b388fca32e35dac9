"""``deepseg measure`` end to end on small label maps written to disk."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from deepseg.cli import main
from deepseg.io import write_volume
from deepseg.volume import Volume


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(40, 10, (16, 24, 24)).astype(np.int16)
    image[0] = -1000  # air: recognised as CT, unit HU
    seg = np.zeros(image.shape, np.uint8)
    seg[4:10, 5:15, 5:15] = 1
    seg[11:14, 16:20, 16:20] = 2
    seg[11:13, 4:7, 16:19] = 2  # second lesion
    fu = seg.copy()
    fu[fu == 2] = 0
    fu[11:13, 16:19, 16:19] = 2  # 66 -> 18 voxels: -73%
    geo = dict(spacing=(0.8, 0.8, 2.5), origin=(-10.0, 20.0, 5.0))
    write_volume(Volume(image, **geo), tmp_path / "ct.nii.gz")
    write_volume(Volume(seg, **geo), tmp_path / "seg.nii.gz")
    write_volume(Volume(fu, **geo), tmp_path / "fu.nii.gz")
    (tmp_path / "labels.json").write_text(json.dumps({"1": "liver", "2": "liver lesion"}))
    return tmp_path, seg


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_measure_csv_with_units_and_intensity(case, capsys):
    d, seg = case
    rc = main(["measure", "--segmentation", str(d / "seg.nii.gz"), "--labels", str(d / "labels.json"),
               "--image", str(d / "ct.nii.gz"), "--output", str(d / "table.csv"), "--progress", "none"])
    assert rc == 0
    rows = _rows(d / "table.csv")
    assert [r["segment"] for r in rows] == ["liver", "liver lesion"]
    assert {"volume_mL", "surface_area_mm2", "max_diameter_mm", "intensity_mean_HU", "centroid_L_mm"} <= set(rows[0])
    assert float(rows[0]["volume_mL"]) == pytest.approx((seg == 1).sum() * 0.8 * 0.8 * 2.5 / 1000)
    assert rows[1]["component_count"] == "2" and len(rows[1]["component_volumes_mL"].split(";")) == 2
    assert "wrote" in capsys.readouterr().out


def test_measure_reference_and_followup_json(case, capsys):
    d, _ = case
    rc = main(["measure", "--segmentation", str(d / "seg.nii.gz"), "--labels", str(d / "labels.json"),
               "--reference", str(d / "fu.nii.gz"), "--reference-labels", str(d / "labels.json"),
               "--followup", str(d / "fu.nii.gz"), "--followup-labels", str(d / "labels.json"),
               "--targets", "liver lesion", "--output", str(d / "out.json"), "--json", "--progress", "none"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["outputs"]) == {"measurements", "comparison", "followup", "lesions"}
    comparison = {r["segment"]: r for r in result["tables"]["comparison"]["rows"]}
    assert comparison["liver"]["dice"] == 1.0 and 0 < comparison["liver lesion"]["dice"] < 1
    assert result["response"]["category"] == "PR"  # the target lesions shrink by > 65%
    written = json.loads((d / "out_lesions.json").read_text())
    statuses = sorted(r["status"] for r in written["rows"] if r["segment"] == "liver lesion")
    assert statuses == ["disappeared", "matched"]
    assert {c["key"]: c["unit"] for c in written["columns"]}["baseline_volume_mL"] == "mL"


def test_measure_refuses_to_overwrite(case, capsys):
    d, _ = case
    (d / "table.csv").write_text("keep")
    rc = main(["measure", "--segmentation", str(d / "seg.nii.gz"), "--output", str(d / "table.csv"),
               "--progress", "none"])
    assert rc == 2 and (d / "table.csv").read_text() == "keep"
    assert "--overwrite" in capsys.readouterr().err


def test_measure_reads_seg_nrrd_with_its_names(case, capsys):
    """A Slicer .seg.nrrd brings its own segment names; terminology is filled in from the catalogue."""
    from deepseg.export.seg_nrrd import write_seg_nrrd
    from deepseg.io import read_volume
    from deepseg.models.card import LabelInfo

    d, seg = case
    labels = read_volume(d / "seg.nii.gz")
    write_seg_nrrd(d / "case.seg.nrrd", labels, [LabelInfo(1, "liver", (200, 100, 80)), LabelInfo(2, "Tumour")])
    rc = main(["measure", "--segmentation", str(d / "case.seg.nrrd"), "--output", str(d / "t.json"), "--json",
               "--progress", "none"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["tables"]["measurements"]["rows"]
    assert [r["segment"] for r in rows] == ["liver", "Tumour"]
    assert rows[0]["terminology"] == "SCT:10200004 Liver" and rows[1]["terminology"] == ""
    assert rows[1]["voxel_count"] == int((seg == 2).sum())


def test_empty_segment_of_a_seg_nrrd_is_measured_as_zero_with_a_note(case, capsys):
    """A segment the model was asked for but found nothing of (no lesion) keeps its row: volume 0 and a
    note, not a missing row; catalogue labels absent from a label map are still left out by default."""
    from deepseg.export.seg_nrrd import write_seg_nrrd
    from deepseg.io import read_volume
    from deepseg.models.card import LabelInfo

    d, seg = case
    labels = read_volume(d / "seg.nii.gz")
    liver_only = labels.with_array(np.where(labels.array == 1, 1, 0).astype(np.uint8))
    write_seg_nrrd(d / "case.seg.nrrd", liver_only, [LabelInfo(1, "liver"), LabelInfo(2, "liver lesion")])
    rc = main(["measure", "--segmentation", str(d / "case.seg.nrrd"), "--output", str(d / "t.csv"),
               "--progress", "none"])
    out = capsys.readouterr().out
    rows = _rows(d / "t.csv")
    assert rc == 0 and [r["segment"] for r in rows] == ["liver", "liver lesion"]
    assert rows[1]["voxel_count"] == "0" and float(rows[1]["volume_mL"]) == 0.0
    assert "empty" in rows[1]["note"] and rows[0]["note"] == ""
    assert "liver lesion" in out and "0.00 mL" in out
    write_volume(liver_only, d / "liver.nii.gz")
    rc = main(["measure", "--segmentation", str(d / "liver.nii.gz"), "--labels", str(d / "labels.json"),
               "--output", str(d / "c.csv"), "--progress", "none"])
    assert rc == 0 and [r["segment"] for r in _rows(d / "c.csv")] == ["liver"]


def test_measure_refuses_an_existing_side_table_before_measuring(case, capsys):
    """The comparison table written beside the output exists: refused at the start (no progress yet),
    as every output of segment/explain is, and nothing is written."""
    d, _ = case
    (d / "table_comparison.csv").write_text("keep")
    rc = main(["measure", "--segmentation", str(d / "seg.nii.gz"), "--reference", str(d / "fu.nii.gz"),
               "--output", str(d / "table.csv"), "--progress", "lines"])
    err = capsys.readouterr().err
    assert rc == 2 and "table_comparison.csv already exists" in err and "PROGRESS" not in err, err
    assert not (d / "table.csv").exists() and (d / "table_comparison.csv").read_text() == "keep"
