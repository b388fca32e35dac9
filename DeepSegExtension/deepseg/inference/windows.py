"""``WindowSpec``: how a model's networks are run over a volume (patch, overlap, blending, mirroring).

The engine's one description of windows: models declare theirs, the sliding window and the explainer
read it.  No torch here, so declaring a model never imports it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError

CHOICES = {"blend": ("gaussian", "constant"), "accumulate": ("float32", "float16")}


@dataclass
class WindowSpec:
    """How networks are run over a volume.

    ``output_margin``: voxels a valid-convolution network loses on each side (input patch =
    ``patch_size``, output = ``patch_size - 2*margin``); ``blend``: "gaussian" (nnU-Net) or
    "constant" (plain average; with a margin this is tiling with a halo); ``accumulate``: "float32", or
    "float16" for nnU-Net's numerics (Gaussian, weighted sums and each fold's quotient kept in half precision,
    folds averaged in half precision), which gives nnUNetPredictor's logits rather than more exact ones.
    """

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    blend: str = "gaussian"
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    output_margin: tuple[int, int, int] = (0, 0, 0)
    accumulate: str = "float32"

    def __post_init__(self) -> None:
        """Refuse an unknown blend or accumulation where a model declares its window,
        not as a bare KeyError deep inside the sliding window."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ModelError(f"Unknown window {name} {value!r}: it must be one of "
                                 f"{', '.join(repr(a) for a in allowed)}.",
                                 f"Give the WindowSpec {name} one of these values.")
