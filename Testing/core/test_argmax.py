"""``inference.argmax.argmax_channels``: the label step's argmax equals ``np.argmax`` over the channels."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.inference import argmax as argmax_module
from deepseg.inference.argmax import argmax_channels


@pytest.mark.parametrize("shape", [(18, 20, 23, 9), (3, 7, 5), (2, 1, 1, 1), (25, 4, 33, 6)])
def test_equals_numpy_argmax_with_ties_and_on_strided_views(shape, monkeypatch):
    monkeypatch.setattr(argmax_module, "CHUNK_VOXELS", 97)  # many chunks, ragged last one
    rng = np.random.default_rng(len(shape) + shape[0])
    p = rng.integers(0, 4, shape).astype(np.float32)  # many ties: the first maximal channel must win
    views = [p, p.transpose(0, *range(p.ndim - 1, 0, -1)), p[:, ::-1], np.asfortranarray(p)]
    for v in views:
        got = argmax_channels(v)
        assert got.shape == v.shape[1:]
        np.testing.assert_array_equal(got, np.argmax(v, axis=0))


def test_many_channels_and_empty_volumes():
    p = np.random.default_rng(1).normal(size=(300, 4, 5)).astype(np.float32)
    got = argmax_channels(p)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argmax(p, axis=0))
    assert argmax_channels(np.zeros((3, 0, 4), np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match="channels"):
        argmax_channels(np.zeros(5))
