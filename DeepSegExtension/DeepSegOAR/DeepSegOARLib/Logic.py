"""DeepSegOAR logic: organs-at-risk segmentation of a CT/MR volume node in a background process.

Console use (Slicer's Python console)::

    logic = slicer.util.getModuleLogic("DeepSegOAR")   # or DeepSegOARLogic()
    seg = logic.segment(volumeNode, model="totalseg-organs", structures=["liver", "spleen"], wait=True)
"""
from __future__ import annotations

from typing import Optional, Sequence

from deepseg.options import FAST_OVERLAP, SegmentOptions
from deepseg_slicer.logic import DeepSegLogicBase
from deepseg_slicer.models import OAR_GROUPS, model_choices
from deepseg_slicer.tasks import SegmentRequest, SegmentTask

from .Parameters import DeepSegOARParameterNode


class DeepSegOARLogic(DeepSegLogicBase):
    def getParameterNode(self) -> DeepSegOARParameterNode:
        return DeepSegOARParameterNode(super().getParameterNode())

    @staticmethod
    def models():
        """Organ-at-risk (and whole-anatomy) models of the catalog, installed ones first."""
        return model_choices(OAR_GROUPS)

    def segment(self, volumeNode, model: str, *, structures: Optional[Sequence[str]] = None,
                useTG263: bool = False, fast: bool = False, device: str = "auto", backend: str = "auto",
                outputNode=None, allLabels: bool = False, wait: bool = False, onProgress=None, onLog=None,
                onDone=None):
        """Segment ``volumeNode`` with ``model`` (catalog id or model folder).

        ``structures``: names/TG-263 names/label values to keep (default all); ``outputNode``: a
        segmentation node to replace (default: a new one next to the volume); ``allLabels``: a segment
        for every label of the model, also those not found (default: only those found).  With ``wait=True``
        returns the segmentation node (raising the run's error); otherwise returns the running task.
        """
        options = SegmentOptions(device=device, backend=backend, overlap=FAST_OVERLAP if fast else None,
                                 structures=structures, use_tg263=useTG263)
        request = SegmentRequest(model, [volumeNode], options, output_node=outputNode, all_labels=allLabels)
        return self.run(SegmentTask(request, self.scene, **self.task_options(onProgress, onLog, onDone)), wait)
