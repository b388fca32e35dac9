"""DeepSegVolumetry's parameter node: what the panel shows, saved with the scene.  The ``Choice``
annotation is what Slicer's combo-box connector fills the mode combo box with."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

from deepseg_slicer.compat import Choice, WithinRange, parameterNodeWrapper

MODES = ("measure", "compare", "follow-up")


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
    mode: Annotated[str, Choice(MODES)] = "measure"
    toleranceMm: Annotated[float, WithinRange(0.0, 50.0)] = 2.0
    register: bool = False
