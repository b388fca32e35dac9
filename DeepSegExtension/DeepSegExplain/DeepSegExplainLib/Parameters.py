"""DeepSegExplain's parameter node: what the panel shows, saved with the scene.  The ``Choice``
annotations are what Slicer's combo-box connector fills the combo boxes with."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from deepseg.options import EXPLAIN_METHODS
from deepseg_slicer.compat import Choice, WithinRange, parameterNodeWrapper

OVERLAYS = ("heat map", "uncertainty")
COLORMAPS = ("Inferno", "Viridis", "PET-Heat", "Rainbow", "fMRI", "Grey")


@parameterNodeWrapper
class DeepSegExplainParameterNode:
    """``segmentId``: the segment explained; ``overlay``: "heat map" or "uncertainty" (which map the
    slice views show); ``threshold``/``opacity`` apply to the shown map."""

    segmentation: vtkMRMLSegmentationNode
    inputVolume: vtkMRMLScalarVolumeNode
    heatmapVolume: vtkMRMLScalarVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    segmentId: str = ""
    model: str = ""
    method: Annotated[str, Choice(EXPLAIN_METHODS)] = "gradcam"
    computeUncertainty: bool = True
    device: str = "auto"
    overlay: Annotated[str, Choice(OVERLAYS)] = "heat map"
    colormap: Annotated[str, Choice(COLORMAPS)] = "Inferno"
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.3
