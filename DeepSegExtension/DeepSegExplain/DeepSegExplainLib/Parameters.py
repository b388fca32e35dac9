"""DeepSegExplain's parameter node: what the panel shows, saved with the scene."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from deepseg_slicer.compat import IN_SLICER, parameterNodeWrapper

if IN_SLICER:
    from slicer.parameterNodeWrapper import WithinRange
else:  # headless stand-in: the range only constrains the GUI
    def WithinRange(low, high):  # noqa: N802
        return (low, high)


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
    method: str = "gradcam"
    computeUncertainty: bool = True
    device: str = "auto"
    overlay: str = "heat map"
    colormap: str = "Inferno"
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.3
