"""Turn user inputs (paths or volumes) into the model's named channels on one grid."""
from __future__ import annotations

import logging
from typing import Sequence

from ..errors import InputError
from ..models.base import require_channel_count
from ..models.card import ModelCard
from ..volume import Volume, check_image

log = logging.getLogger(__name__)


def load_channels(inputs: Sequence["str | Volume"], card: ModelCard,
                  assume_spacing: "str | Sequence[float] | None" = None) -> tuple[list[Volume], list[str]]:
    """Read, validate and align the inputs; returns the channels and notes for the user.

    The first input defines the output grid.  ``assume_spacing`` is used only for files that store no
    geometry, and noted.  Inputs on other grids are resampled onto it (and the
    user is told); a DICOM input whose modality differs from the model's is refused.
    """
    from ..io import read_volume, resample_onto

    if not inputs:
        raise InputError("No input image was given.", "Pass at least one --input.")
    require_channel_count(card, len(inputs))
    expected = card.inputs
    notes: list[str] = []
    channels: list[Volume] = []
    for spec, item in zip(expected, inputs):
        vol = item if isinstance(item, Volume) else read_volume(item, assume_spacing=assume_spacing)
        if "assumed_spacing" in vol.meta:
            note = (f"Input '{spec.name}' ({item}) stores no geometry; the voxel spacing "
                    f"{vol.meta['assumed_spacing']} mm given with --assume-spacing was assumed.")
            log.warning(note)
            notes.append(note)
        check_image(vol, f"input '{spec.name}'")
        modality = str(vol.meta.get("modality", "")).upper()
        if modality and spec.modality and modality not in {spec.modality.upper(), "OT"}:
            raise InputError(f"Input '{spec.name}' is a {modality} series but model {card.id!r} expects "
                             f"{spec.modality}.", f"Choose a {modality} model or give a {spec.modality} image.")
        if channels and not vol.same_grid(channels[0]):
            note = (f"Input '{spec.name}' lies on a different voxel grid from '{expected[0].name}'; "
                    f"it was resampled (linear) onto the first input's grid.")
            log.warning(note)
            notes.append(note)
            vol = resample_onto(vol, channels[0])
        channels.append(vol)
    return channels, notes
