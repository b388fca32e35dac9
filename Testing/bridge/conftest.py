"""A real MRML scene from the ``slicer-core`` wheel (Slicer's own MRML, segmentation, terminology,
colour and subject-hierarchy code, without the GUI); every test here skips when it is missing."""
from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML libraries) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the 'slicer' module found has no MRML (install slicer-core)", allow_module_level=True)


@pytest.fixture
def scene():
    """Scene set up as Slicer's application does for the parts the bridge uses: default colour
    tables, subject hierarchy and segmentation logics (terminology
    entries are (de)serialised with the terminology logic's static methods)."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    logics = [app_logic, colors]
    for cls in (slicer.vtkSlicerSubjectHierarchyModuleLogic, slicer.vtkSlicerSegmentationsModuleLogic):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logics.append(logic)
    scene._deepseg_logics = logics  # keep the logics alive as long as the scene
    yield scene
    scene.Clear(1)
