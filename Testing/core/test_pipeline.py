"""segment(): geometry, channels, outputs and cancellation on a network with known output."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepseg.errors import Cancelled, InputError, ModelError
from deepseg.inference.pipeline import segment
from deepseg.io import read_volume, write_volume
from deepseg.progress import CancelToken
from deepseg.volume import Volume


def test_labels_lie_on_the_input_grid_exactly(tmp_path, oblique_volume, threshold_model):
    path = tmp_path / "ct.nii.gz"
    write_volume(oblique_volume, path)
    res = segment(threshold_model, [path], output=tmp_path / "case.seg.nrrd", labelmap=tmp_path / "case.nii.gz")
    expected = (read_volume(path).array > 100).astype(np.uint16)
    np.testing.assert_array_equal(res.labels.array, expected)
    written = read_volume(tmp_path / "case.nii.gz")
    np.testing.assert_array_equal(written.array, expected)
    np.testing.assert_allclose(written.spacing, oblique_volume.spacing, atol=1e-5)
    np.testing.assert_allclose(written.origin, oblique_volume.origin, atol=1e-4)
    np.testing.assert_allclose(written.direction, oblique_volume.direction, atol=1e-6)
    prov = json.loads((tmp_path / "case.json").read_text())
    assert prov["model"]["id"] == "threshold-test" and "infer" in prov["timings_s"]


def test_seg_nrrd_round_trip_keeps_labels_names_codes(tmp_path, oblique_volume, threshold_model):
    from deepseg.export.seg_nrrd import read_seg_nrrd

    res = segment(threshold_model, [oblique_volume], output=tmp_path / "c.seg.nrrd")
    vol, labels = read_seg_nrrd(tmp_path / "c.seg.nrrd")
    np.testing.assert_array_equal(vol.array, res.labels.array)
    assert vol.same_grid(oblique_volume)
    assert [(lab.value, lab.name, lab.color, lab.type.value) for lab in labels] == [(1, "Bright", (220, 40, 40), "10200004")]


def test_second_input_on_other_grid_is_resampled_and_user_told(oblique_volume, threshold_model_factory):
    from deepseg.io import resample_onto

    model = threshold_model_factory(channels=2)
    other = oblique_volume.with_array(oblique_volume.array.copy())
    other.origin = tuple(np.add(other.origin, (1.5, 0, 0)))
    res = segment(model, [oblique_volume, other])
    assert any("resampled" in n for n in res.provenance["notes"])
    assert resample_onto(other, oblique_volume).same_grid(oblique_volume)


@pytest.mark.parametrize("make,match", [
    (lambda v: Volume(v.array[:1], v.spacing, v.origin, v.direction), "2D image"),
    (lambda v: Volume(v.array[0], v.spacing, v.origin, v.direction), "2 dimensions"),
    (lambda v: v.with_array(np.zeros_like(v.array)), "constant"),
    (lambda v: v.with_array(np.where(v.array > 250, np.nan, v.array)), "NaN"),
])
def test_bad_images_are_refused_before_any_work(tmp_path, oblique_volume, threshold_model, make, match):
    with pytest.raises(InputError, match=match):
        segment(threshold_model, [make(oblique_volume)], output=tmp_path / "x.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_wrong_channel_count_names_expected_channels(oblique_volume, threshold_model):
    with pytest.raises(InputError, match=r"takes 1 input channel\(s\) \(ch0\), but 2 were given"):
        segment(threshold_model, [oblique_volume, oblique_volume])


def test_unknown_structure_lists_valid_labels(oblique_volume, threshold_model):
    with pytest.raises(ModelError, match="1=Bright"):
        segment(threshold_model, [oblique_volume], structures=["spleen"])


def test_truncated_file_is_reported_as_corrupt(tmp_path, oblique_volume, threshold_model):
    path = tmp_path / "ct.nii.gz"
    write_volume(oblique_volume, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated or corrupt"):
        segment(threshold_model, [path], output=tmp_path / "o.seg.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_cancel_mid_inference_writes_nothing(tmp_path, oblique_volume, threshold_model):
    token = CancelToken()
    seen = []

    def callback(stage, done, total):
        seen.append(stage)
        if stage == "infer" and done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        segment(threshold_model, [oblique_volume], output=tmp_path / "o.seg.nrrd", labelmap=tmp_path / "o.nii.gz",
                progress_callback=callback, cancel=token)
    assert "infer" in seen and list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_before_inference_and_kept(tmp_path, oblique_volume, threshold_model):
    (tmp_path / "o.nii.gz").write_text("existing result")
    stages = []
    with pytest.raises(InputError, match="already exists"):
        segment(threshold_model, [oblique_volume], output=tmp_path / "o.seg.nrrd", labelmap=tmp_path / "o.nii.gz",
                progress_callback=lambda stage, done, total: stages.append(stage))
    assert stages == []  # refused before loading anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nii.gz"]
    assert (tmp_path / "o.nii.gz").read_text() == "existing result"


def test_postprocessing_options(tmp_path, oblique_volume, threshold_model):
    arr = np.zeros(oblique_volume.shape, np.float32)
    arr[2:8, 2:12, 2:12] = 500  # large blob 6*10*10 voxels
    arr[9:11, 15:17, 20:22] = 500  # small blob 8 voxels
    arr[4, 6, 6] = 0  # a hole
    vol = oblique_volume.with_array(arr)
    voxel_ml = vol.voxel_volume_mm3 / 1000
    plain = segment(threshold_model, [vol]).labels.array
    assert plain.sum() == 600 - 1 + 8
    largest = segment(threshold_model, [vol], keep_largest=True, fill_holes=True).labels.array
    assert largest.sum() == 600
    small = segment(threshold_model, [vol], min_component_ml=9 * voxel_ml).labels.array
    assert small.sum() == 599


def test_failed_write_leaves_no_partial_outputs(tmp_path, oblique_volume, threshold_model):
    """A label value a .seg.nrrd layer cannot hold fails the write: no output at all appears."""
    arr = oblique_volume.array.copy()
    model = threshold_model
    model.card.labels[0] = type(model.card.labels[0])(300, "Bright")
    with pytest.raises(InputError, match="0-255"):
        segment(model, [oblique_volume.with_array(arr)], labelmap=tmp_path / "o.nii.gz", output=tmp_path / "o.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_discard_everything_when_a_later_writer_fails(tmp_path):
    from deepseg.io import AtomicOutputs

    def broken(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        with AtomicOutputs() as out:
            out.add(tmp_path / "first.json", lambda p: p.write_text("{}"))
            out.add(tmp_path / "second.nii.gz", broken)
    assert list(tmp_path.iterdir()) == []


def test_structure_volumes_count_every_voxel_in_chunks(oblique_volume, monkeypatch):
    """``SegmentationResult.volumes`` counts in chunks (ragged last one here) what one bincount counts;
    a label value the result does not list (9) is ignored."""
    from deepseg.inference import pipeline
    from deepseg.inference.pipeline import SegmentationResult
    from deepseg.models.card import LabelInfo

    monkeypatch.setattr(pipeline, "COUNT_CHUNK", 97)
    labels = np.random.default_rng(5).choice(np.array([0, 2, 5, 9], np.uint16), oblique_volume.shape)
    result = SegmentationResult(oblique_volume.with_array(labels), [LabelInfo(2, "two"), LabelInfo(5, "five")])
    ml = oblique_volume.voxel_volume_mm3 / 1000.0
    assert [v["volume_ml"] for v in result.volumes()] == [round(float((labels == v).sum() * ml), 3) for v in (2, 5)]
