"""DeepSegVolumetry logic: measurement tables of segmentation nodes (deepseg.measure), comparison
with a reference segmentation, baseline vs follow-up change; table nodes and CSV export.

Console use::

    logic = slicer.util.getModuleLogic("DeepSegVolumetry")   # or DeepSegVolumetryLogic()
    table = logic.measure(segNode, ctNode)                   # volumes, diameters, HU statistics...
    logic.exportCsv(table, "/tmp/measurements.csv")
"""
from __future__ import annotations

from typing import Optional, Sequence

from deepseg_slicer import mrml
from deepseg_slicer.logic import DeepSegLogicBase

from .Parameters import DeepSegVolumetryParameterNode


def table_rows(rows: Sequence[dict], spec) -> tuple[list[dict], dict]:
    """Rows keyed by column title ("Volume [mL]"), lists joined with ";", and the unit of each title."""
    titles = {m.key: f"{m.name} [{m.unit}]" if m.unit else m.name for m in spec}
    out = []
    for row in rows:
        cells = {}
        for m in spec:
            value = row.get(m.key)
            cells[titles[m.key]] = ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value) \
                if isinstance(value, (list, tuple)) else value
        out.append(cells)
    return out, {titles[m.key]: m.unit for m in spec if m.unit}


class DeepSegVolumetryLogic(DeepSegLogicBase):
    def getParameterNode(self) -> DeepSegVolumetryParameterNode:
        return DeepSegVolumetryParameterNode(super().getParameterNode())

    def _table(self, rows, spec, tableNode, name):
        cells, units = table_rows(rows, spec)
        return mrml.table_from_rows(cells, self.scene, node=tableNode, name=name, units=units)

    def measure(self, segmentationNode, imageNode=None, tableNode=None, modality: Optional[str] = None):
        """Per-segment measurements (shape; intensity statistics when ``imageNode`` is given, on its grid)."""
        from deepseg.measure import measure_segmentation

        labels, label_info = mrml.segmentation_to_labels(segmentationNode, imageNode)
        image = mrml.volume_from_node(imageNode) if imageNode is not None else None
        rows, spec = measure_segmentation(labels, label_info, image, modality)
        return self._table(rows, spec, tableNode, f"{segmentationNode.GetName()} measurements")

    def compare(self, segmentationNode, referenceNode, imageNode=None, tableNode=None, toleranceMm: float = 2.0):
        """Overlap and surface distances of each segment against the paired reference segment."""
        from deepseg.measure.compare import compare_segmentations
        from deepseg.measure.grid import resample_labels

        test, test_info = mrml.segmentation_to_labels(segmentationNode, imageNode)
        reference, reference_info = mrml.segmentation_to_labels(referenceNode, imageNode)
        rows, spec = compare_segmentations(test, resample_labels(reference, test), test_info, reference_info,
                                           tolerance_mm=toleranceMm)
        return self._table(rows, spec, tableNode, f"{segmentationNode.GetName()} vs {referenceNode.GetName()}")

    def followup(self, baselineNode, followupNode, baselineImage=None, followupImage=None, tableNode=None,
                 register: bool = False):
        """Structure volume change and volumetric response; returns (table node, response dict)."""
        from deepseg.measure.followup import STRUCTURE_CHANGE, followup_change

        baseline, baseline_info = mrml.segmentation_to_labels(baselineNode, baselineImage)
        later, later_info = mrml.segmentation_to_labels(followupNode, followupImage)
        result = followup_change(baseline, later, baseline_info, later_info,
                                 baseline_image=mrml.volume_from_node(baselineImage) if baselineImage else None,
                                 followup_image=mrml.volume_from_node(followupImage) if followupImage else None,
                                 register=register)
        table = self._table(result["structures"], STRUCTURE_CHANGE, tableNode,
                            f"{baselineNode.GetName()} -> {followupNode.GetName()}")
        return table, result["response"]

    @staticmethod
    def segmentStatistics(segmentationNode, segmentId: str, imageNode=None) -> dict:
        """All measurements of one segment, keyed by measurement key (the Segment Statistics plugin)."""
        from deepseg.measure import measure_segmentation

        labels, label_info = mrml.segmentation_to_labels(segmentationNode, imageNode, [segmentId])
        image = mrml.volume_from_node(imageNode) if imageNode is not None else None
        rows, _ = measure_segmentation(labels, label_info, image)
        return rows[0]

    @staticmethod
    def exportCsv(tableNode, path: str):
        """Write the table as CSV (Slicer's table storage node)."""
        return mrml.write_table_csv(tableNode, path)
