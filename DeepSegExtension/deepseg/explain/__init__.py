"""Explainability for 3D segmentation: attribution heat maps (Grad-CAM, Grad-CAM++, HiResCAM,
decoder layer-sum, occlusion), uncertainty maps with per-structure review scores, and faithfulness scores
that test whether a map points at what the model really uses.

``explain(model, inputs, segment, method=..., layer=..., region=None, progress=None)`` and
``uncertainty_maps(model, inputs, ...)`` are the entry points for the CLI and the Slicer panel.
"""
from __future__ import annotations

from .api import METHODS, ExplanationResult, default_method, explain, list_layers
from .colors import FALLBACK_NAME, HEAT_COLORMAP, heat_color_table
from ..inference.uncertainty import (StructureUncertainty, UncertaintyResult, entropy, fold_disagreement, member_variance,
                          structure_uncertainty, uncertainty_maps)

__all__ = ["explain", "list_layers", "ExplanationResult", "METHODS", "default_method", "uncertainty_maps",
           "UncertaintyResult",
           "StructureUncertainty", "entropy", "member_variance", "fold_disagreement", "structure_uncertainty",
           "HEAT_COLORMAP", "FALLBACK_NAME", "heat_color_table"]
