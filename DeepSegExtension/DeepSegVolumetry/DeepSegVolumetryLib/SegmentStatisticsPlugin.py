"""DeepSeg measurements as a Segment Statistics plugin (registered when Slicer has started), so the
same volumes, diameters and HU statistics appear in Slicer's Segment Statistics module."""
from __future__ import annotations

import slicer
from SegmentStatisticsPlugins import SegmentStatisticsPluginBase

from deepseg.measure import measurement_spec

from .Logic import DeepSegVolumetryLogic

SKIPPED = {"label_value", "segment", "terminology", "note"}  # identity columns Segment Statistics shows itself
DEFAULT_KEYS = ["volume_mL", "max_diameter_mm", "axial_long_diameter_mm", "axial_short_diameter_mm",
                "sphericity", "component_count"]


class DeepSegSegmentStatisticsPlugin(SegmentStatisticsPluginBase):
    """Keys and units come from ``deepseg.measure.measurement_spec``."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "DeepSeg"
        # intensity columns carry their unit in the key: HU on CT, "au" on other images
        self.spec = {m.key: m for unit in ("HU", "au") for m in measurement_spec(unit) if m.key not in SKIPPED}
        self.keys = list(self.spec)
        self.defaultKeys = [k for k in DEFAULT_KEYS if k in self.spec]

    def computeStatistics(self, segmentID: str) -> dict:
        requested = self.getRequestedKeys()
        if not requested:
            return {}
        parameters = self.getParameterNode()
        segmentation = slicer.mrmlScene.GetNodeByID(parameters.GetParameter("Segmentation"))
        image = slicer.mrmlScene.GetNodeByID(parameters.GetParameter("ScalarVolume") or "")
        row = DeepSegVolumetryLogic.segmentStatistics(segmentation, segmentID, image)
        return {key: row[key] for key in requested if key in row and row[key] is not None
                and not isinstance(row[key], list)}

    def getMeasurementInfo(self, key: str):
        m = self.spec.get(key)
        return None if m is None else self.createMeasurementInfo(name=m.name, description=m.description, units=m.unit)


def register() -> None:
    """Add the plugin to Segment Statistics (called once Slicer has started)."""
    from SegmentStatistics import SegmentStatisticsLogic

    SegmentStatisticsLogic.registerPlugin(DeepSegSegmentStatisticsPlugin())
