"""What the DeepSeg Segment Statistics plugin computes for one segment (the Slicer-only plugin class
only forwards to this logic call), checked against direct counts."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from deepseg.models.card import LabelInfo
from deepseg_slicer import mrml

EXTENSION = Path(__file__).resolve().parents[2] / "DeepSegExtension"


def test_segment_statistics_of_one_segment(scene, oblique_volume, monkeypatch):
    monkeypatch.syspath_prepend(str(EXTENSION / "DeepSegVolumetry"))
    logic = importlib.import_module("DeepSegVolumetryLib.Logic").DeepSegVolumetryLogic(scene)
    arr = np.zeros(oblique_volume.shape, np.uint16)
    arr[2:5, 3:8, 4:9] = 1
    arr[7:10, 12:16, 14:20] = 2
    arr[7:9, 2:4, 2:4] = 2  # a second lesion of label 2
    image = mrml.volume_to_node(oblique_volume, scene)
    seg = mrml.labels_to_segmentation(oblique_volume.with_array(arr), [LabelInfo(1, "Node"), LabelInfo(2, "Lesion")],
                                      scene, source_node=image)
    row = logic.segmentStatistics(seg, "Segment_2", image)
    assert row["segment"] == "Lesion"
    assert row["voxel_count"] == int((arr == 2).sum())
    assert abs(row["volume_mL"] - (arr == 2).sum() * oblique_volume.voxel_volume_mm3 / 1000) < 1e-9
    assert row["component_count"] == ndimage.label(arr == 2, np.ones((3, 3, 3)))[1] == 2
    mean = row.get("intensity_mean_HU", row.get("intensity_mean_au"))  # unit from the image's modality
    assert abs(mean - float(oblique_volume.array[arr == 2].mean())) < 1e-3
