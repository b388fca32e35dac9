"""Multi-input models: volume nodes are assigned to the model's named inputs from their names as
documented in ``deepseg_slicer.channels`` (most specific pattern first, each node used once)."""
from __future__ import annotations

from deepseg.models.card import InputSpec
from deepseg_slicer.channels import assign_channels, matches
from deepseg_slicer import mrml

BRATS = [InputSpec("FLAIR", "MR", "*flair*"), InputSpec("T1", "MR", "*t1*"),
         InputSpec("T1c", "MR", "*t1c*|*t1ce*|*gad*|*post*"), InputSpec("T2", "MR", "*t2*")]


def test_assignment_from_scene_node_names(scene, oblique_volume):
    names = ["Case7 T2w", "Case7_T1ce", "case7_flair", "Case7 T1 pre", "Case7 ADC"]
    for n in names:
        mrml.volume_to_node(oblique_volume.with_array(oblique_volume.array.copy(), name=n), scene)
    scene_names = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetName()
                   for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    assert assign_channels(BRATS, scene_names) == {
        "FLAIR": "case7_flair", "T1": "Case7 T1 pre", "T1c": "Case7_T1ce", "T2": "Case7 T2w"}


def test_missing_input_stays_unassigned_and_nodes_are_used_once():
    got = assign_channels(BRATS, ["T1", "T1 gad"])
    assert got == {"FLAIR": None, "T1": "T1", "T1c": "T1 gad", "T2": None}
    assert matches(BRATS[2], "POST-contrast") and not matches(BRATS[0], "t2")


def test_single_input_model_takes_first_volume():
    assert assign_channels([InputSpec("CT", "CT", "*ct*")], ["abdomen", "abdomen 2"]) == {"CT": "abdomen"}
    assert assign_channels([InputSpec("CT", "CT", "*ct*")], []) == {"CT": None}


def test_explain_and_tumor_logics_pick_inputs_by_name(scene, oblique_volume, tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    from deepseg_slicer.selftest import make_test_model

    model = str(make_test_model(tmp_path / "m", inputs=[{"name": "T1", "modality": "MR", "pattern": "*t1*"},
                                                         {"name": "FLAIR", "modality": "MR", "pattern": "*flair*"}]))
    flair = mrml.volume_to_node(oblique_volume.with_array(oblique_volume.array, name="pt FLAIR"), scene)
    t1 = mrml.volume_to_node(oblique_volume.with_array(oblique_volume.array, name="pt T1"), scene)
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "t1 labels")  # never an input
    root = Path(__file__).resolve().parents[2] / "DeepSegExtension"
    for module in ("DeepSegExplain", "DeepSegTumor"):
        monkeypatch.syspath_prepend(str(root / module))
    explain = importlib.import_module("DeepSegExplainLib.Logic").DeepSegExplainLogic(scene)
    tumor = importlib.import_module("DeepSegTumorLib.Logic").DeepSegTumorLogic(scene)
    assert explain.inputsFor(model, flair) == [t1, flair]
    assert tumor.assignInputs(model) == [t1, flair]
    assert tumor.assignInputs(model, [flair]) == [None, flair]
