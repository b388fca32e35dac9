"""Fixtures for the explanation tests: the trained cue network and a test case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import FIXTURES, _unet, make_cue_case, train_cue_unet

from deepseg.volume import Volume


@pytest.fixture(scope="session")
def cue_net() -> torch.nn.Module:
    """The trained cue network (trained once, cached under Testing/_fixtures/explain)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / "cue_unet.pt"
    net = _unet()
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count: train the same weights on every machine
    try:
        net = train_cue_unet()
    finally:
        torch.set_num_threads(threads)
    torch.save(net.state_dict(), path)
    return net


@pytest.fixture(scope="session")
def cue_case():
    """A test case with the cue present: (Volume, block mask)."""
    img, lab = make_cue_case(np.random.default_rng(123), cue=True)
    return Volume(img, spacing=(1.0, 1.0, 1.0), name="cue"), lab.astype(bool)
