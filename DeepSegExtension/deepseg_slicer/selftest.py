"""Generated data for the modules' self-tests (run inside Slicer) and the pytest suite: a CT-like
volume with two bright blobs on an oblique anisotropic grid, and a tiny MONAI U-Net model folder
(random but fixed weights, real card and loader), so the whole background path runs without any
download."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from deepseg.volume import Volume

from .compat import ScriptedLoadableModuleTest

TEST_LABELS = [
    {"value": 1, "name": "Liver", "color": [221, 130, 101], "tg263": "Liver",
     "type": {"value": "10200004", "scheme": "SCT", "meaning": "Liver"}},
    {"value": 2, "name": "Spleen", "color": [157, 108, 162], "tg263": "Spleen",
     "type": {"value": "78961009", "scheme": "SCT", "meaning": "Spleen"}},
]


def selftest_scene():
    """The scene a self-test works in, empty: Slicer's ``slicer.mrmlScene`` cleared (as Slicer's module
    template's ``setUp`` does), or a new one on slicer-core."""
    import slicer

    scene = getattr(slicer, "mrmlScene", None)
    if scene is None:
        return slicer.vtkMRMLScene()
    scene.Clear(0)
    return scene


class SelfTestCase(ScriptedLoadableModuleTest):
    """Base of the modules' self-tests: every ``test_*`` method starts from an empty scene
    (``self.scene``), as in Slicer's scripted-module template (``setUp`` + ``runTest``)."""

    def setUp(self) -> None:
        self.scene = selftest_scene()

    def runTest(self) -> None:
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            getattr(self, name)()


def synthetic_ct(shape: Sequence[int] = (16, 40, 48), name: str = "synthetic CT", seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    arr = rng.normal(0, 15, shape) - 100
    arr += 160 * (((k - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((j - shape[1] / 3) / (shape[1] / 5)) ** 2
                  + ((i - shape[2] / 3) / (shape[2] / 5)) ** 2 < 1)
    arr += 260 * (((k - shape[0] / 2) / (shape[0] / 4)) ** 2 + ((j - 2 * shape[1] / 3) / (shape[1] / 7)) ** 2
                  + ((i - 2 * shape[2] / 3) / (shape[2] / 7)) ** 2 < 1)
    a = np.deg2rad(12)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Volume(arr.astype(np.int16), spacing=(0.9, 0.8, 2.5), origin=(-20.0, 15.5, -30.0),
                  direction=direction, name=name)


def make_test_model(folder: "str | Path", inputs: Sequence[dict] = ({"name": "CT", "modality": "CT"},),
                    patch_size: Sequence[int] = (8, 16, 16), seed: int = 0) -> Path:
    """A loadable ``monai-unet`` model folder (``deepseg-card.json`` + ``weights.pt``)."""
    import torch

    from deepseg.models.card_model import build_network, save_card_model, validate_card

    card = {
        "id": "deepseg-selftest", "title": "DeepSeg self-test network (random weights)", "format": "monai-unet",
        "version": "1", "description": "Tiny U-Net with fixed random weights; for testing the plumbing only.",
        "license": "Apache-2.0", "citation": "DeepSeg self-test",
        "inputs": [dict(i) for i in inputs], "labels": TEST_LABELS,
        "architecture": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
        "preprocessing": {"patch_size": list(patch_size), "overlap": 0.25, "target_spacing": None,
                          "normalization": {"method": "ct", "lower": -200, "upper": 300, "mean": 0, "std": 100},
                          "mirror_axes": [0, 1, 2]},
    }
    torch.manual_seed(seed)
    net = build_network(validate_card(card))
    with torch.no_grad():  # bias the output so both labels appear on the synthetic CT
        last = [m for m in net.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))][-1]
        last.weight.mul_(4.0)
    return save_card_model(folder, card, net.state_dict())
