"""Volumetry and contour QA: per-segment measurements, auto-vs-reference comparison and follow-up change."""
from .compare import compare_segmentations
from .followup import followup_change
from .segfile import read_labels_json, read_segmentation
from .table import Measurement, measure_segmentation, measurement_spec, table_json, write_csv, write_json

__all__ = ["read_segmentation", "read_labels_json", "measure_segmentation", "compare_segmentations",
           "followup_change", "measurement_spec", "Measurement", "write_csv", "write_json", "table_json"]
