"""Helpers of the CLI tests."""
from __future__ import annotations

from pathlib import Path


def save_tiny_model(folder: Path, structure: str = "target", patch: int = 16) -> Path:
    """An untrained MONAI U-Net card model (seeded weights) with one ``structure``, saved to ``folder``."""
    import torch

    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.card_model import build_network, save_card_model

    card = ModelCard("tiny-unet", "Tiny test U-Net", "monai-unet", [LabelInfo(1, structure)],
                     architecture={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                     preprocessing={"normalization": {"method": "zscore"}, "target_spacing": None,
                                    "patch_size": [patch] * 3, "overlap": 0.25, "mirror_axes": []},
                     license="Apache-2.0")
    torch.manual_seed(0)
    return save_card_model(folder, card, build_network(card).state_dict())
