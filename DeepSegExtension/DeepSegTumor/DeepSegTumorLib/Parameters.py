"""DeepSegTumor's parameter node: what the panel shows, saved with the scene."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from deepseg.inference.backend_names import BACKENDS
from deepseg_slicer.compat import Choice, WithinRange, parameterNodeWrapper


@parameterNodeWrapper
class DeepSegTumorParameterNode:
    """``inputVolume1..4``: volumes for the model's named inputs, in the model's order;
    ``minLesionSizeMl``: components smaller than this are removed (0: keep all)."""

    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    inputVolume4: vtkMRMLScalarVolumeNode
    roi: vtkMRMLMarkupsROINode
    outputSegmentation: vtkMRMLSegmentationNode
    model: str = ""
    useROI: bool = False
    minLesionSizeMl: Annotated[float, WithinRange(0.0, 1000.0)] = 0.0
    keepLargest: bool = False
    fastMode: bool = False
    device: str = "auto"
    backend: Annotated[str, Choice(BACKENDS)] = "auto"
    showIn3D: bool = True
