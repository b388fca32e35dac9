"""DeepSegOAR's parameter node: what the panel shows, saved with the scene."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from deepseg.inference.backend_names import BACKENDS
from deepseg_slicer.compat import Choice, parameterNodeWrapper


@parameterNodeWrapper
class DeepSegOARParameterNode:
    """``model``: catalog id; ``structures``: comma-separated label names to keep (empty: all);
    ``device``: auto, cpu, cuda:N or mps; ``backend``: auto, torch, openvino or onnxruntime."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    model: str = ""
    structures: str = ""
    useTG263: bool = True
    fastMode: bool = False
    device: str = "auto"
    backend: Annotated[str, Choice(BACKENDS)] = "auto"
    showIn3D: bool = True
