"""Module logics on slicer-core: each logic's parameter node is the module's singleton scripted
module node in the scene, and typed parameters (numbers, flags, text, node references) round-trip."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from deepseg_slicer.compat import IN_SLICER

EXTENSION = Path(__file__).resolve().parents[2] / "DeepSegExtension"

pytestmark = pytest.mark.skipif(IN_SLICER, reason="exercises the headless stand-ins; Slicer tests its own wrapper")


def _logic(module, scene, monkeypatch):
    monkeypatch.syspath_prepend(str(EXTENSION / module))
    return getattr(importlib.import_module(f"{module}Lib.Logic"), f"{module}Logic")(scene)


def test_tumor_parameters_round_trip_through_the_scene(scene, monkeypatch):
    logic = _logic("DeepSegTumor", scene, monkeypatch)
    p = logic.getParameterNode()
    assert (p.minLesionSizeMl, p.keepLargest, p.device, p.inputVolume1) == (0.0, False, "auto", None)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "FLAIR")
    p.inputVolume1, p.minLesionSizeMl, p.keepLargest, p.model = volume, 0.25, True, "some-model"
    again = logic.getParameterNode()  # the same singleton node, read back
    assert again.parameterNode is p.parameterNode
    assert scene.GetSingletonNode("DeepSegTumor", "vtkMRMLScriptedModuleNode") is p.parameterNode
    assert (again.inputVolume1, again.minLesionSizeMl, again.keepLargest, again.model) == (volume, 0.25, True, "some-model")
    assert p.parameterNode.GetParameter("minLesionSizeMl") == "0.25"


@pytest.mark.parametrize("module", ["DeepSegOAR", "DeepSegExplain", "DeepSegVolumetry"])
def test_each_module_has_its_own_parameter_node(module, scene, monkeypatch):
    logic = _logic(module, scene, monkeypatch)
    p = logic.getParameterNode()
    assert p.parameterNode.GetSingletonTag() == module
    assert p.parameterNode.GetAttribute("ModuleName") == module
    p.parameterNode.RemoveAttribute("ModuleName")  # what a scene close can do; Slicer's logic restores it
    assert logic.getParameterNode().parameterNode.GetAttribute("ModuleName") == module
