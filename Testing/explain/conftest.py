"""Fixtures for the explanation tests: the trained cue network and a test case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.cue_unet import load_cue_unet, make_cue_case

from deepseg.volume import Volume


@pytest.fixture(scope="session")
def cue_net() -> torch.nn.Module:
    """The cue network with its shipped weights (Testing/fixtures/cue_unet.pt): the same on every machine."""
    return load_cue_unet()


@pytest.fixture(scope="session")
def cue_case():
    """A test case with the cue present: (Volume, block mask)."""
    img, lab = make_cue_case(np.random.default_rng(123), cue=True)
    return Volume(img, spacing=(1.0, 1.0, 1.0), name="cue"), lab.astype(bool)
