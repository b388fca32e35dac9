"""A perceptually ordered colour table for heat and uncertainty overlays.

Slicer ships perceptual tables ("Inferno", "Viridis"); where they are missing (e.g. the MRML
libraries alone) this table stands in.  It is built here, not copied: CIELAB lightness rises
linearly from 12 to 96 while the hue turns from violet through red and orange to pale yellow, so
equal steps in the map look like equal steps in colour and brighter always means "more".
"""
from __future__ import annotations

import numpy as np

HEAT_COLORMAP = "Inferno"
"""Preferred Slicer colour table for heat and uncertainty maps (perceptually uniform)."""

FALLBACK_NAME = "DeepSeg Heat"


def heat_color_table(n: int = 256) -> np.ndarray:
    """``(n, 3)`` sRGB colours in [0, 1], dark violet -> red -> orange -> pale yellow, lightness-linear."""
    from skimage.color import lab2rgb

    t = np.linspace(0.0, 1.0, n)
    lightness = 12.0 + 84.0 * t
    hue = np.deg2rad(300.0 + 160.0 * t)            # 300 (violet) -> 460 = 100 degrees (yellow)
    chroma = 50.0 * np.sin(np.pi * 0.85 * t) + 12.0 * (1 - t)
    lab = np.stack([lightness, chroma * np.cos(hue), chroma * np.sin(hue)], axis=-1)
    return np.clip(lab2rgb(lab[None])[0], 0.0, 1.0)
