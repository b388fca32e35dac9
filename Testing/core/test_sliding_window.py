"""Sliding-window engine: tiling, stitching, mirroring, fold averaging and the out-of-memory retry."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from deepseg.errors import ModelError
from deepseg.inference.sliding_window import predict_sliding_window, window_starts
from deepseg.models.base import WindowSpec
from deepseg.progress import Progress


@pytest.mark.parametrize("size,tile,overlap", [(10, 4, 0.5), (33, 16, 0.5), (16, 16, 0.5), (7, 16, 0.5), (100, 32, 0.25)])
def test_windows_cover_the_axis_with_the_requested_overlap(size, tile, overlap):
    starts = window_starts(size, tile, overlap)
    assert starts[0] == 0 and (size <= tile or starts[-1] + tile == size)
    steps = np.diff(starts)
    assert np.all(steps <= tile * (1 - overlap) + 1e-9) and np.all(steps > 0)


def _pointwise_net(channels: int = 2, classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(channels, classes, 1).eval()


@pytest.mark.parametrize("field, value, allowed", [("accumulate", "half", "'float32', 'float16'"),
                                                   ("blend", "gausian", "'gaussian', 'constant'")])
def test_an_unknown_blend_or_accumulation_is_refused_when_the_window_is_declared(field, value, allowed):
    with pytest.raises(ModelError, match=f"Unknown window {field} '{value}': it must be one of {allowed}"):
        WindowSpec((4, 4, 4), **{field: value})


def test_stitched_windows_equal_one_whole_volume_pass():
    """A point-wise network gives the same logits wherever a voxel falls in a window, so the
    weighted stitching must reproduce the whole-volume output exactly (odd sizes, padding)."""
    net = _pointwise_net()
    image = np.random.default_rng(1).normal(size=(2, 11, 23, 17)).astype(np.float32)
    whole = net(torch.from_numpy(image)[None])[0].detach()
    for blend in ("gaussian", "constant"):
        out = predict_sliding_window([net], image, WindowSpec((4, 8, 8), 0.5, blend), 3, device="cpu")
        torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-5)


def test_folds_are_averaged_and_mirroring_is_undone():
    nets = [_pointwise_net(seed=s) for s in (0, 1)]
    image = np.random.default_rng(2).normal(size=(2, 9, 12, 10)).astype(np.float32)
    x = torch.from_numpy(image)[None]
    expected = (nets[0](x) + nets[1](x))[0].detach() / 2
    out = predict_sliding_window(nets, image, WindowSpec((8, 8, 8)), 3, device="cpu", mirror=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


class _MemoryLimited(torch.nn.Module):
    """Stands for a GPU with room for one patch: raises PyTorch's out-of-memory error for larger batches."""

    def __init__(self, net):
        super().__init__()
        self.net, self.batches = net, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated limit)")
        return self.net(x)


def test_out_of_memory_retries_with_smaller_batches_and_says_so(caplog):
    net = _pointwise_net()
    limited = _MemoryLimited(net)
    image = np.random.default_rng(3).normal(size=(2, 12, 12, 12)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        out = predict_sliding_window([limited], image, WindowSpec((4, 4, 4)), 3, device="cpu", batch_size=4)
    reference = predict_sliding_window([net], image, WindowSpec((4, 4, 4)), 3, device="cpu", batch_size=1)
    torch.testing.assert_close(out, reference)
    assert limited.batches[:2] == [4, 2] and set(limited.batches[2:]) == {1}
    assert "retrying with 1 patch" in caplog.text


def test_valid_convolution_margin_tiles_match_whole_volume():
    """A network that loses ``m`` voxels per side (valid convolutions) tiled with ``output_margin``
    gives the whole-volume result on the zero-padded image."""
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 3).eval()  # valid 3x3x3: margin 1
    image = np.random.default_rng(4).normal(size=(1, 10, 13, 11)).astype(np.float32)
    padded = torch.nn.functional.pad(torch.from_numpy(image)[None], (1, 1, 1, 1, 1, 1))
    whole = net(padded)[0].detach()
    out = predict_sliding_window([net], image, WindowSpec((6, 6, 6), 0.5, "constant", (), (1, 1, 1)), 2, device="cpu")
    torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-5)


def _three_conv_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.Conv3d(4, 2, 1)).eval()


def test_progress_moves_per_layer_inside_one_big_patch_and_cancel_stops_it():
    """One patch covers the image (as for the liver network): progress is reported after every
    convolution (3 layers; the 4 mirrorings of this small patch go through in one call), not once at the
    end, and a cancel stops the patch midway."""
    from deepseg.errors import Cancelled
    from deepseg.progress import CancelToken

    image = np.random.default_rng(0).normal(size=(1, 8, 8, 8)).astype(np.float32)
    window = WindowSpec((8, 8, 8), 0.5, "gaussian", mirror_axes=(0, 1))
    seen = []
    predict_sliding_window([_three_conv_net()], image, window, 2, device="cpu", mirror=True,
                           progress=Progress(lambda stage, done, total: seen.append((done, total))))
    assert seen == [(n, 3) for n in range(1, 4)]

    token, layers = CancelToken(), []
    net = _three_conv_net()
    net[3].register_forward_hook(lambda *_: layers.append("last conv ran"))

    def cancel_after_first_layer(stage, done, total):
        if done == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        predict_sliding_window([net], image, window, 2, device="cpu",
                               progress=Progress(cancel_after_first_layer, token))
    assert layers == []  # stopped inside the patch (at the next layer's check), before the last convolution
    assert len(net[0]._forward_hooks) == 0  # the progress hooks were removed


def test_progress_counts_patches_when_there_are_many():
    image = np.random.default_rng(0).normal(size=(1, 16, 16, 16)).astype(np.float32)
    seen = []
    predict_sliding_window([_three_conv_net()], image, WindowSpec((4, 4, 4), 0.0, "constant"), 2, device="cpu",
                           progress=Progress(lambda stage, done, total: seen.append((done, total))))
    assert seen == [(n, 64) for n in range(1, 65)]


def test_mirrorings_in_one_batch_equal_one_call_each():
    """All mirrorings of a patch go through the network in one call when small enough; with a
    3x3x3 network (flips change its output) that must give the per-mirroring mean exactly."""
    from deepseg.inference.sliding_window import _mirrored_logits, mirror_combinations

    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3)).eval()
    x = torch.randn(2, 2, 6, 8, 7)
    flips = mirror_combinations((0, 1, 2))
    calls = []

    def forward(n, t):
        calls.append(t.shape[0])
        return n(t)

    with torch.inference_mode():
        together = _mirrored_logits(net, x, flips, forward, together=True)
        separate = _mirrored_logits(net, x, flips, forward, together=False)
        unflipped = net(x)
    assert calls == [16] + [2] * 8
    torch.testing.assert_close(together, separate, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together, unflipped, atol=1e-3)  # the mirrorings really differ


def test_in_order_runs_jobs_concurrently_keeps_their_order_and_stops_early():
    """``in_order`` (patches in flight on several OpenVINO streams): results in item order although later
    jobs finish first, never more than ``workers`` running, errors reach the caller, and closing it early
    (Cancel) drops the queued jobs."""
    import threading
    import time

    from deepseg.inference.sliding_window import in_order

    running, most, lock = [0], [0], threading.Lock()
    both = threading.Barrier(2, timeout=10)  # the first two jobs only finish when they run at the same time

    def job(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if i < 2:
            both.wait()
        time.sleep(0.01 * (5 - i % 5))  # later items finish sooner
        with lock:
            running[0] -= 1
        return i * i

    assert list(in_order(job, range(12), 2)) == [i * i for i in range(12)]
    assert most[0] == 2
    assert list(in_order(lambda i: -i, range(3), 1)) == [0, -1, -2]

    def failing(i):
        if i == 3:
            raise ValueError("patch 3 failed")
        return i

    with pytest.raises(ValueError, match="patch 3"):
        list(in_order(failing, range(8), 2))

    started = []

    def slow(i):
        started.append(i)
        time.sleep(0.05)
        return i

    results = in_order(slow, range(50), 2)
    assert next(results) == 0
    results.close()  # what a Cancel during accumulation does
    assert len(started) <= 4  # the running and the one queued job, not the other 46


@pytest.mark.parametrize("tile", [(16, 32, 32), (24, 80, 80), (7, 9, 5), (1, 64, 48)])
def test_gaussian_weights_equal_nnunets_3d_filtered_impulse(tile):
    """The separable construction gives exactly nnU-Net's map: a 3-D Gaussian-filtered centred impulse
    (sigma = tile / 8), scaled to a peak of 10, zeros replaced by the smallest positive weight."""
    from scipy.ndimage import gaussian_filter

    from deepseg.inference.sliding_window import blend_weights

    impulse = np.zeros(tile)
    impulse[tuple(t // 2 for t in tile)] = 1.0
    g = gaussian_filter(impulse, [t / 8 for t in tile], mode="constant", cval=0)
    g = g / g.max() * 10.0
    g[g == 0] = g[g > 0].min()
    np.testing.assert_array_equal(blend_weights(tile, "gaussian", torch.device("cpu")).numpy(), g.astype(np.float32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_add_weighted_into_a_window_of_the_sums_equals_pytorchs_in_place_add(dtype, monkeypatch):
    """``add_weighted`` is ``+= logits * weights`` bit for bit: float32 products; a half-precision total plus
    them is summed in float32 and rounded to half as PyTorch's mixed in-place add (nnUNetPredictor's
    accumulation) does, also on a strided window of the sums and with slabs that do not divide the window
    (a float32 total is a plain float32 sum)."""
    from deepseg.inference import sliding_window
    from deepseg.inference.sliding_window import add_weighted

    gen = torch.Generator().manual_seed(0)
    sums = (torch.randn(4, 12, 10, 14, generator=gen) * 300).to(dtype)  # large values: half rounding matters
    logits = torch.randn(4, 8, 6, 9, generator=gen) * 7
    weights = torch.rand(8, 6, 9, generator=gen) * 10 + 1e-3
    window = (slice(None), slice(2, 10), slice(3, 9), slice(5, 14))
    expected = sums.clone()
    expected[window] += logits * weights
    for slab in (1, 54 * 3, 1 << 16):  # one row, three rows (8 = 3 + 3 + 2), all at once
        got = sums.clone()
        monkeypatch.setattr(sliding_window, "SLAB_VALUES", slab)
        add_weighted(got[window], logits, weights)
        assert got.dtype == dtype
        assert torch.equal(got, expected)
