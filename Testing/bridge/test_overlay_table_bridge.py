"""Explanation maps as coloured foreground overlays, thresholded maps back into segments, and
measurement rows as a table node written by Slicer's table storage node."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from deepseg.errors import InputError
from deepseg_slicer import mrml


@pytest.fixture
def heat(oblique_volume):
    k, j, i = np.indices(oblique_volume.shape)
    arr = np.exp(-((k - 6) ** 2 / 8 + (j - 10) ** 2 / 20 + (i - 12) ** 2 / 30)).astype(np.float32)
    return oblique_volume.with_array(arr, name="gradcam")


def test_heatmap_node_colour_window_threshold_and_overlay(scene, heat, oblique_volume):
    source = mrml.volume_to_node(oblique_volume, scene)
    node = mrml.heatmap_to_node(heat, scene, colormap="Rainbow", threshold=0.3, source_node=source)
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() == "Rainbow"
    assert not display.GetAutoWindowLevel()
    assert display.GetWindow() == pytest.approx(float(heat.array.max() - heat.array.min()), rel=1e-5)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.3)
    assert mrml.volume_from_node(node).same_grid(oblique_volume, tol=1e-9)
    mrml.set_overlay_threshold(node, None)
    assert not display.GetApplyThreshold()
    composites = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    mrml.show_overlay(scene, source, node, opacity=0.4)
    for c in composites:
        assert (c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) == (source.GetID(), node.GetID())
        assert c.GetForegroundOpacity() == pytest.approx(0.4)
    with pytest.raises(InputError, match="No colour map"):
        mrml.heatmap_to_node(heat, scene, colormap="NoSuchMap")


def test_default_heat_colours_are_perceptual_even_without_slicer_colour_files(scene, heat):
    node = mrml.heatmap_to_node(heat, scene)  # "Inferno", or the stand-in on slicer-core
    color = node.GetDisplayNode().GetColorNode()
    assert color.GetName() in ("Inferno", "DeepSeg Heat")
    lut = color.GetLookupTable()
    lightness = [sum(lut.GetTableValue(i)[:3]) for i in range(0, 256, 32)]
    assert lightness == sorted(lightness)  # brighter always means more
    assert mrml.heatmap_to_node(heat, scene).GetDisplayNode().GetColorNode() is color  # added once


def test_threshold_to_segment_counts_match(scene, heat):
    node = mrml.heatmap_to_node(heat, scene)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    sid = mrml.threshold_to_segment(node, 0.5, seg, "Grad-CAM >= 0.5")
    labels, infos = mrml.segmentation_to_labels(seg, node)
    assert infos[0].name == "Grad-CAM >= 0.5" and seg.GetSegmentation().GetSegment(sid) is not None
    assert int((labels.array > 0).sum()) == int((heat.array >= 0.5).sum()) > 0
    with pytest.raises(InputError, match="reaches"):
        mrml.threshold_to_segment(node, 5.0, seg, "empty")


def test_table_from_rows_and_csv(scene, tmp_path):
    rows = [{"Segment": "Liver", "Volume [mL]": 1510.25, "Voxels": 120, "Note": None},
            {"Segment": "Kidney_L", "Volume [mL]": 160.5, "Voxels": 12, "Note": "touches border"},
            {"Segment": "Lesion", "Voxels": 3}]
    node = mrml.table_from_rows(rows, scene, units={"Volume [mL]": "mL"})
    table = node.GetTable()
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == ["Segment", "Volume [mL]", "Voxels", "Note"]
    assert table.GetNumberOfRows() == 3
    assert table.GetColumnByName("Volume [mL]").GetDataTypeAsString() == "double"
    assert np.isnan(table.GetValueByName(2, "Volume [mL]").ToDouble())
    assert table.GetValueByName(1, "Note").ToString() == "touches border"
    assert node.GetColumnUnitLabel("Volume [mL]") == "mL"
    path = mrml.write_table_csv(node, tmp_path / "measurements.csv")
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["Segment"] for r in read] == ["Liver", "Kidney_L", "Lesion"]
    assert float(read[0]["Volume [mL]"]) == pytest.approx(1510.25) and read[1]["Voxels"] == "12"
    again = mrml.table_from_rows(rows[:1], scene, node=node)
    assert again is node and node.GetTable().GetNumberOfRows() == 1
