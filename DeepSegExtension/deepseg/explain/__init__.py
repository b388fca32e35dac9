"""Explainability for 3D segmentation: attribution heat maps (Grad-CAM, Grad-CAM++, HiResCAM,
decoder layer-sum), uncertainty maps with per-structure review scores, and faithfulness scores
that test whether a map points at what the model really uses.

``explain(model, inputs, segment, method=..., layer=..., region=None, progress=None)`` and
``uncertainty_maps(model, inputs, ...)`` are the entry points for the CLI and the Slicer panel.
"""
from __future__ import annotations

from .api import ExplanationResult, explain, list_layers
from .cam import METHODS
from .uncertainty import (StructureUncertainty, UncertaintyResult, entropy, fold_disagreement, member_variance,
                          structure_uncertainty, uncertainty_maps)

HEAT_COLORMAP = "Inferno"
"""Perceptually uniform Slicer colour table for heat and uncertainty overlays."""

__all__ = ["explain", "list_layers", "ExplanationResult", "METHODS", "uncertainty_maps", "UncertaintyResult",
           "StructureUncertainty", "entropy", "member_variance", "fold_disagreement", "structure_uncertainty",
           "HEAT_COLORMAP"]
