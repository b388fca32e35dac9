"""DeepSegTumor logic: tumour/lesion segmentation from one to four volumes (e.g. FLAIR, T1, T1c, T2),
optionally inside a markups ROI, with lesion post-processing and a lesion summary.

Console use::

    logic = slicer.util.getModuleLogic("DeepSegTumor")   # or DeepSegTumorLogic()
    inputs = logic.assignInputs("brainchop-mindgrab")      # nodes chosen by name patterns
    seg = logic.segment(inputs, "brainchop-mindgrab", minLesionSizeMl=0.1, wait=True)
    print(logic.summarize(seg, inputs[0]))
"""
from __future__ import annotations

from typing import Optional, Sequence

from deepseg.models.card import InputSpec
from deepseg_slicer import mrml
from deepseg_slicer.channels import assign_nodes, model_inputs, scene_volumes
from deepseg_slicer.logic import DeepSegLogicBase
from deepseg_slicer.models import TUMOUR_GROUPS, model_choices
from deepseg.options import FAST_OVERLAP, SegmentOptions
from deepseg_slicer.tasks import SegmentRequest, SegmentTask

from .Parameters import DeepSegTumorParameterNode

MAX_INPUTS = 4


class DeepSegTumorLogic(DeepSegLogicBase):
    def getParameterNode(self) -> DeepSegTumorParameterNode:
        return DeepSegTumorParameterNode(super().getParameterNode())

    @staticmethod
    def models():
        """Tumour/lesion (and brain) models of the catalog, installed ones first."""
        return model_choices(TUMOUR_GROUPS)

    def assignInputs(self, model: "str | Sequence[InputSpec]", volumeNodes: Optional[Sequence] = None) -> list:
        """Volume nodes for the model's inputs chosen by their names (see ``deepseg_slicer.channels``);
        None where nothing matched.  ``volumeNodes`` defaults to every scalar volume in the scene."""
        specs = model_inputs(model) if isinstance(model, str) else list(model)
        return assign_nodes(specs, scene_volumes(self.scene) if volumeNodes is None else volumeNodes)

    def segment(self, inputNodes: Sequence, model: str, *, roiNode=None, minLesionSizeMl: float = 0.0,
                keepLargest: bool = False, fast: bool = False, device: str = "auto", backend: str = "auto",
                outputNode=None,
                wait: bool = False, onProgress=None, onLog=None, onDone=None):
        """Segment with ``model`` from ``inputNodes`` (one per model input, in its order).

        ``roiNode`` restricts inference to the ROI's box; ``minLesionSizeMl`` removes smaller
        components; ``keepLargest`` keeps only the largest component of each structure.
        """
        options = SegmentOptions(device=device, backend=backend, overlap=FAST_OVERLAP if fast else None, keep_largest=keepLargest,
                                 min_component_ml=minLesionSizeMl)
        request = SegmentRequest(model, list(inputNodes), options, output_node=outputNode, roi_node=roiNode)
        return self.run(SegmentTask(request, self.scene, **self.task_options(onProgress, onLog, onDone)), wait)

    @staticmethod
    def summarize(segmentationNode, referenceNode=None) -> list[dict]:
        """Per segment: lesion (connected component) count, total and per-lesion volumes in mL."""
        from deepseg.measure import measure_segmentation

        labels, label_info = mrml.segmentation_to_labels(segmentationNode, referenceNode)
        rows, _ = measure_segmentation(labels, label_info)
        return [{"segment": r["segment"], "lesions": int(r["component_count"]), "volume_mL": float(r["volume_mL"]),
                 "lesion_volumes_mL": list(r["component_volumes_mL"] or [])} for r in rows]

    @staticmethod
    def summaryText(rows: Sequence[dict]) -> str:
        lines = []
        for r in rows:
            each = ", ".join(f"{v:.2f}" for v in r["lesion_volumes_mL"][:10])
            more = " ..." if len(r["lesion_volumes_mL"]) > 10 else ""
            lines.append(f"{r['segment']}: {r['lesions']} lesion(s), {r['volume_mL']:.2f} mL"
                         + (f" ({each}{more} mL)" if each else ""))
        return "\n".join(lines)
