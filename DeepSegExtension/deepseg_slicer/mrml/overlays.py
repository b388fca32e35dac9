"""Explanation and uncertainty maps as coloured foreground overlays in the slice views."""
from __future__ import annotations

from typing import Optional

import numpy as np

from deepseg.errors import InputError
from deepseg.volume import Volume

from .volumes import place_next_to, volume_to_node


def heatmap_to_node(heatmap: Volume, scene, *, node=None, name: Optional[str] = None,
                    colormap: str = "Inferno", value_range: Optional[tuple[float, float]] = None,
                    threshold: Optional[float] = None, source_node=None):
    """A float map (Grad-CAM, uncertainty) as a scalar volume shown through ``colormap``, with the
    window spanning ``value_range`` (default: the map's min..max) and voxels under ``threshold``
    hidden, ready to be the foreground layer over its image."""
    node = volume_to_node(heatmap.with_array(heatmap.array.astype(np.float32)), scene, node=node,
                          name=name or heatmap.name or "DeepSeg heat map")
    display = node.GetDisplayNode()
    color = find_color_node(scene, colormap)
    display.SetAndObserveColorNodeID(color.GetID())
    lo, hi = value_range or (float(heatmap.array.min()), float(heatmap.array.max()))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(lo, hi if hi > lo else lo + 1e-6)
    set_overlay_threshold(node, threshold)
    if source_node is not None:
        place_next_to(node, source_node)
    return node


def set_overlay_threshold(node, threshold: Optional[float]) -> None:
    """Hide voxels below ``threshold`` (None shows all)."""
    display = node.GetDisplayNode()
    if threshold is None:
        display.ApplyThresholdOff()
        return
    display.SetApplyThreshold(1)
    display.SetThreshold(float(threshold), float(max(threshold, node.GetImageData().GetScalarRange()[1])))


def find_color_node(scene, name: str):
    """Colour node by name ("Inferno", "PET-Heat", "Rainbow"...) or ID; clear error otherwise.
    "Inferno" falls back to DeepSeg's lightness-linear heat table where the scene has no Inferno
    (Slicer's MRML libraries without the application's colour files)."""
    node = scene.GetNodeByID(name) or _color_node_named(scene, name)
    if node is None and name == "Inferno":
        node = heat_color_node(scene)
    if node is None:
        names = sorted({n.GetName() for n in scene.GetNodesByClass("vtkMRMLColorNode")})
        raise InputError(f"No colour map named {name!r} in the scene.", "Use one of: " + ", ".join(names[:20]) + ".")
    return node


def _color_node_named(scene, name: str):
    for candidate in scene.GetNodesByClass("vtkMRMLColorNode"):
        if candidate.GetName() == name:
            return candidate
    return None


def heat_color_node(scene):
    """Slicer's perceptual "Inferno" table, else DeepSeg's stand-in (``deepseg.explain.colors``),
    added to the scene once."""
    import slicer

    from deepseg.explain.colors import FALLBACK_NAME, HEAT_COLORMAP, heat_color_table

    node = _color_node_named(scene, HEAT_COLORMAP) or _color_node_named(scene, FALLBACK_NAME)
    if node is not None:
        return node
    table = heat_color_table()
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(FALLBACK_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(len(table))
    for i, (r, g, b) in enumerate(table):
        node.SetColor(i, str(i), float(r), float(g), float(b), 1.0)
    return scene.AddNode(node)


def show_overlay(scene, background_node, foreground_node, opacity: float = 0.5) -> None:
    """Background image + foreground map in every slice view (``slicer.util.setSliceViewerLayers``)."""
    for composite in scene.GetNodesByClass("vtkMRMLSliceCompositeNode"):
        composite.SetBackgroundVolumeID(background_node.GetID() if background_node else None)
        composite.SetForegroundVolumeID(foreground_node.GetID() if foreground_node else None)
        composite.SetForegroundOpacity(float(opacity))
