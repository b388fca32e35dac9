"""Each module's own Slicer self-test (``ScriptedLoadableModuleTest``), run here on slicer-core with
the scene as Slicer's global ``slicer.mrmlScene``: the same logic code paths a user's self-test runs,
starting from a cleared scene as Slicer's module template does (``setUp``)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import slicer

EXTENSION = Path(__file__).resolve().parents[2] / "DeepSegExtension"


@pytest.mark.parametrize("module", ["DeepSegOAR", "DeepSegTumor", "DeepSegExplain", "DeepSegVolumetry"])
def test_module_self_test(module, scene, monkeypatch):
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.syspath_prepend(str(EXTENSION / module))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mod = importlib.import_module(module)
    leftover = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "left over from an earlier test")
    test = getattr(mod, f"{module}Test")("runTest")
    result = test.defaultTestResult()
    test.run(result)
    problems = [text for _, text in result.errors + result.failures]
    assert result.testsRun == 1 and not problems, "\n".join(problems)
    assert not scene.IsNodePresent(leftover), "the self-test did not start from a clean scene (setUp)"
    sys.modules.pop(module, None)
