"""Explanation maps in a real MRML scene: perceptual colour table, foreground-ready, thresholdable."""
from __future__ import annotations

import numpy as np


def test_heatmap_overlay_with_perceptual_colours_and_threshold_segment(scene):
    from deepseg.volume import Volume
    from deepseg_slicer import mrml

    heat = np.zeros((6, 8, 10), np.float32)
    heat[2:4, 3:6, 4:8] = np.linspace(0.5, 1.0, 24).reshape(2, 3, 4)
    vol = Volume(heat, spacing=(0.8, 0.9, 2.0), origin=(1.0, -2.0, 3.0), name="liver gradcam")
    color = mrml.heat_color_node(scene)
    assert mrml.heat_color_node(scene).GetID() == color.GetID()  # the table is added to the scene once, then reused
    node = mrml.heatmap_to_node(vol, scene, colormap=color.GetName(), value_range=(0.0, 1.0))
    assert node.GetDisplayNode().GetColorNodeID() == color.GetID()
    lut = color.GetLookupTable()
    lightness = [sum(lut.GetTableValue(i)[:3]) for i in (0, 128, 255)]
    assert lightness[0] < lightness[1] < lightness[2]  # brighter means more attribution
    assert np.allclose(mrml.volume_from_node(node).array, heat)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segment_id = mrml.threshold_to_segment(node, 0.75, seg, "attributed")
    labels, _ = mrml.segmentation_to_labels(seg, node, [segment_id])
    assert (labels.array > 0).sum() == (heat >= 0.75).sum()
