"""DeepSegOAR's parameter node: what the panel shows, saved with the scene."""
from __future__ import annotations

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from deepseg_slicer.compat import parameterNodeWrapper


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
    backend: str = "auto"
    showIn3D: bool = True
