"""DeepSegExplain logic: why did the model draw this segment (Grad-CAM family heat map, computed in a
background process), where is it unsure (uncertainty map), shown as coloured overlays; a
thresholded map can become a segment.

Console use::

    logic = slicer.util.getModuleLogic("DeepSegExplain")   # or DeepSegExplainLogic()
    maps = logic.explain(segNode, "Segment_1", "totalseg-organs", [ctNode], wait=True)
    logic.showOverlay(ctNode, maps["heatmap"], opacity=0.5, threshold=0.3)
"""
from __future__ import annotations

from typing import Optional, Sequence

from deepseg.options import SegmentOptions
from deepseg_slicer import mrml
from deepseg_slicer.channels import assign_nodes, model_inputs, scene_volumes
from deepseg_slicer.logic import DeepSegLogicBase
from deepseg_slicer.models import OAR_GROUPS, TUMOUR_GROUPS, model_choices
from deepseg_slicer.tasks import ExplainRequest, ExplainTask

from .Parameters import DeepSegExplainParameterNode


class DeepSegExplainLogic(DeepSegLogicBase):
    def getParameterNode(self) -> DeepSegExplainParameterNode:
        return DeepSegExplainParameterNode(super().getParameterNode())

    @staticmethod
    def models():
        return model_choices(OAR_GROUPS + TUMOUR_GROUPS)

    @staticmethod
    def modelFor(segmentName: str, choices) -> Optional[str]:
        """The first model whose labels include ``segmentName`` (name or TG-263 name), if any."""
        key = segmentName.lower()
        for choice in choices:
            if any(key in (lab.name.lower(), (lab.tg263 or "").lower()) for lab in choice.labels):
                return choice.id
        return None

    def inputsFor(self, model: str, imageNode) -> list:
        """The volumes to give ``model``: ``imageNode`` for a single-input model; for several inputs,
        ``imageNode`` first and the others chosen by name among the scene's volumes."""
        specs = model_inputs(model)
        if len(specs) == 1:
            return [imageNode]
        others = [n for n in scene_volumes(self.scene) if n is not imageNode]
        return assign_nodes(specs, [imageNode, *others])

    def explain(self, segmentationNode, segmentId: str, model: str, inputNodes: Sequence, *, method: str = "gradcam",
                uncertainty: bool = True, device: str = "auto", colormap: str = "Inferno",
                threshold: Optional[float] = None, wait: bool = False, onProgress=None, onLog=None, onDone=None):
        """Heat map (and uncertainty map) of one segment; with ``wait`` returns
        ``{"heatmap": node, "uncertainty": node or None}``."""
        # mirroring TTA only for the uncertainty map (its members); the heat map explains one prediction
        options = SegmentOptions(device=device, tta=bool(uncertainty), uncertainty=uncertainty)
        request = ExplainRequest(model, list(inputNodes), segmentationNode, segmentId, method=method,
                                 options=options, colormap=colormap, threshold=threshold)
        return self.run(ExplainTask(request, self.scene, **self.task_options(onProgress, onLog, onDone)), wait)

    def showOverlay(self, backgroundNode, mapNode, *, colormap: Optional[str] = None, opacity: float = 0.5,
                    threshold: Optional[float] = None) -> None:
        """Show ``mapNode`` over ``backgroundNode`` in the slice views with a colour map, opacity and
        lower threshold (voxels below it are transparent)."""
        if colormap:
            mapNode.GetDisplayNode().SetAndObserveColorNodeID(mrml.find_color_node(self.scene, colormap).GetID())
        mrml.set_overlay_threshold(mapNode, threshold)
        mrml.show_overlay(self.scene, backgroundNode, mapNode, opacity)

    def thresholdToSegment(self, mapNode, threshold: float, segmentationNode, name: Optional[str] = None) -> str:
        """Add the map's voxels >= ``threshold`` to ``segmentationNode`` as a new segment."""
        return mrml.threshold_to_segment(mapNode, threshold, segmentationNode,
                                         name or f"{mapNode.GetName()} >= {threshold:g}")
