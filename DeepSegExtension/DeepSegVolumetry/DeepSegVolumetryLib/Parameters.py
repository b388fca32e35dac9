"""DeepSegVolumetry's parameter node: what the panel shows, saved with the scene."""
from __future__ import annotations

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

from deepseg_slicer.compat import parameterNodeWrapper


@parameterNodeWrapper
class DeepSegVolumetryParameterNode:
    """``mode``: "measure" (one segmentation, optional image for intensities), "compare" (against a
    reference segmentation) or "follow-up" (baseline = ``segmentation``, later = ``followupSegmentation``)."""

    segmentation: vtkMRMLSegmentationNode
    image: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    followupSegmentation: vtkMRMLSegmentationNode
    followupImage: vtkMRMLScalarVolumeNode
    outputTable: vtkMRMLTableNode
    mode: str = "measure"
    toleranceMm: float = 2.0
    register: bool = False
