"""The background segmentation path for real: the module logic's task writes the input node, runs
``python -m deepseg segment`` in its own process, parses its progress, and imports the .seg.nrrd
through the bridge; cancel mid-run leaves no node and no process behind."""
from __future__ import annotations

import time

import numpy as np
import psutil
import pytest

from deepseg_slicer import mrml
from deepseg_slicer.selftest import make_test_model, synthetic_ct
from deepseg.options import SegmentOptions
from deepseg_slicer.tasks import SegmentRequest, SegmentTask


@pytest.fixture(scope="session")
def test_model(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "selftest")


@pytest.fixture(scope="session")
def two_channel_model(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model2") / "selftest2",
                           inputs=[{"name": "T1", "modality": "MR", "pattern": "*t1*"},
                                   {"name": "FLAIR", "modality": "MR", "pattern": "*flair*"}])


def _segmentations(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def test_background_run_imports_same_labels_as_in_process(scene, test_model):
    from deepseg.inference.pipeline import segment

    volume = synthetic_ct()
    node = mrml.volume_to_node(volume, scene)
    events, logs, done = [], [], []
    task = SegmentTask(SegmentRequest(str(test_model), [node], SegmentOptions(structures=["Spleen", "Liver"], use_tg263=True)),
                       scene, on_progress=events.append, on_log=logs.append, on_done=done.append, threads=1)
    seg_node = task.start().wait(timeout=600)
    assert done == [task] and task.workdir is None  # temp folder removed
    assert {"load", "infer"} <= {e.stage for e in events}
    assert any(e.stage == "infer" and e.total > 0 and e.done == e.total for e in events)
    assert _segmentations(scene) == [seg_node]
    expected = segment(test_model, [volume], structures=["Spleen", "Liver"])
    labels, infos = mrml.segmentation_to_labels(seg_node, node)
    np.testing.assert_array_equal(labels.array, expected.labels.array)
    assert [(i.value, i.name) for i in infos] == [(2, "Spleen"), (1, "Liver")]  # the order asked for
    assert seg_node.GetNodeReference("referenceImageGeometryRef") is node


def test_multi_input_run_assigns_channels_by_name(scene, two_channel_model):
    from deepseg.inference.pipeline import segment
    from deepseg.models.card_model import read_card
    from deepseg_slicer.channels import assign_channels

    t1 = synthetic_ct(name="patient T1w", seed=1)
    flair = synthetic_ct(name="patient FLAIR", seed=2)
    nodes = {v.name: mrml.volume_to_node(v, scene) for v in (flair, t1)}  # scene order: FLAIR first
    card = read_card(two_channel_model)
    assignment = assign_channels(card.inputs, list(nodes))
    assert assignment == {"T1": "patient T1w", "FLAIR": "patient FLAIR"}
    ordered = [nodes[assignment[spec.name]] for spec in card.inputs]
    seg_node = SegmentTask(SegmentRequest(str(two_channel_model), ordered), scene, threads=1).start().wait(timeout=600)
    labels, _ = mrml.segmentation_to_labels(seg_node, ordered[0])
    np.testing.assert_array_equal(labels.array, segment(two_channel_model, [t1, flair]).labels.array)
    assert not np.array_equal(labels.array, segment(two_channel_model, [flair, t1]).labels.array)


def test_cancel_mid_run_leaves_no_node_and_no_process(scene, test_model):
    node = mrml.volume_to_node(synthetic_ct(shape=(48, 160, 160)), scene)
    seen = []
    task = SegmentTask(SegmentRequest(str(test_model), [node], SegmentOptions(overlap=0.85)), scene,
                       on_progress=seen.append, threads=1)
    task.start()
    pid = task.job.runner.pid
    deadline = time.monotonic() + 300
    while not any(e.stage == "infer" and e.done > 0 for e in seen) and time.monotonic() < deadline:
        assert task.process_events(), "the run ended before it could be cancelled: " + "\n".join(task.job.log[-5:])
        time.sleep(0.05)
    workdir = task.workdir
    children = psutil.Process(pid).children(recursive=True)
    task.cancel()
    assert task.job.state == "cancelled" and task.result is None
    assert _segmentations(scene) == []
    assert not workdir.exists()
    for proc in [psutil.Process(pid) if psutil.pid_exists(pid) else None, *children]:
        if proc is not None and proc.is_running():
            assert proc.status() == psutil.STATUS_ZOMBIE, f"process {proc.pid} survived the cancel"
    with pytest.raises(Exception, match="Cancelled"):
        task.wait()


def test_console_batch_loop_over_a_folder(scene, test_model, tmp_path, monkeypatch):
    """README's console batch example, with slicer.util.loadVolume/saveNode replaced by the storage-node
    calls they make: every case of a folder gets a .seg.nrrd equal to the in-process result."""
    import importlib
    from pathlib import Path

    from deepseg.export.seg_nrrd import read_seg_nrrd
    from deepseg.inference.pipeline import segment
    from deepseg.io import write_volume

    cases = tmp_path / "cases"
    cases.mkdir()
    for n in range(2):
        write_volume(synthetic_ct(shape=(12, 24, 28), seed=n, name=f"case{n}"), cases / f"case{n}.nii.gz")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "DeepSegExtension" / "DeepSegOAR"))
    logic = importlib.import_module("DeepSegOARLib.Logic").DeepSegOARLogic(scene, threads=1)

    for path in sorted(cases.glob("*.nii.gz")):                      # README loop
        volume = mrml.load_volume_file(path, scene)                   # slicer.util.loadVolume(path)
        seg = logic.segment(volume, model=str(test_model), useTG263=True, wait=True)
        mrml.save_node(seg, str(path).replace(".nii.gz", ".seg.nrrd"))  # slicer.util.saveNode(seg, ...)
        scene.RemoveNode(seg)
        scene.RemoveNode(volume)

    for path in sorted(cases.glob("*.nii.gz")):
        labels, infos = read_seg_nrrd(str(path).replace(".nii.gz", ".seg.nrrd"))
        np.testing.assert_array_equal(labels.array, segment(test_model, [path]).labels.array)
        assert [i.name for i in infos] == ["Liver", "Spleen"]  # TG-263 names of the test labels
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


@pytest.mark.parametrize("all_labels, expected", [(False, [1]), (True, [1, 2])])
def test_import_makes_segments_for_found_labels_unless_all_asked(scene, tmp_path, all_labels, expected):
    """A model with two labels whose run found only the first: one segment, or both when asked."""
    from deepseg.export.seg_nrrd import write_seg_nrrd
    from deepseg.models.card import LabelInfo

    volume = synthetic_ct()
    node = mrml.volume_to_node(volume, scene)
    arr = np.zeros(volume.shape, np.uint8)
    arr[4:8, 10:20, 10:20] = 1
    write_seg_nrrd(tmp_path / "result.seg.nrrd", volume.with_array(arr), [LabelInfo(1, "Liver"), LabelInfo(2, "Spleen")])
    task = SegmentTask(SegmentRequest("model", [node], all_labels=all_labels), scene)
    task.workdir = tmp_path
    seg = task.import_outputs().GetSegmentation()
    assert [seg.GetNthSegment(i).GetLabelValue() for i in range(seg.GetNumberOfSegments())] == expected
