"""Inference backends (``deepseg.inference.backends``): OpenVINO and ONNX Runtime agree with PyTorch, ``auto``
picks OpenVINO on the CPU, conversions are cached and reused, and a network that does not convert still runs
(in PyTorch) after a one-line notice, which provenance records. The real models (genuine nnU-Net fixture, also
against nnUNetPredictor; MeshNet model18cls; liver) are checked in test_nnunet.py, test_meshnet.py and
test_liver_model.py."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from deepseg.errors import InputError
from deepseg.inference import backends
from deepseg.inference.backends import BackendNetwork, on_backend, resolve_backend, weights_sha256

CPU = torch.device("cpu")
CONVERTING = ["openvino", "onnxruntime"]  # dependencies (runtime / test extra): missing ones fail, not vanish


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    """A fresh model store per test (conversions go to ``<store>/compiled``), no backend preset."""
    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path / "store"))
    monkeypatch.delenv("DEEPSEG_BACKEND", raising=False)
    return tmp_path / "store"


def small_unet(seed: int = 0, classes: int = 3) -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(seed)
    return PlainConvUNet(1, 3, (8, 16, 32), torch.nn.Conv3d, 3, (1, 2, 2), 1, classes, (1, 1), True,
                         torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, torch.nn.LeakyReLU,
                         {"inplace": True}).eval()


# --- choosing a backend -------------------------------------------------------------------------------
def test_auto_is_openvino_on_the_cpu_and_torch_on_a_gpu():
    assert resolve_backend("auto", CPU) == "openvino"
    assert resolve_backend(None, CPU) == "openvino"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("auto", torch.device("mps")) == "torch"


def test_environment_names_what_auto_means(monkeypatch):
    monkeypatch.setenv("DEEPSEG_BACKEND", "torch")
    assert resolve_backend("auto", CPU) == "torch"
    assert resolve_backend("onnxruntime", CPU) == "onnxruntime"  # an explicit choice wins


def test_the_background_compilation_is_started_only_for_a_likely_openvino_run(monkeypatch):
    """``precompile`` guesses ``resolve_backend``'s choice without PyTorch: OpenVINO (or auto) on the CPU."""
    from deepseg.inference.device import resolve_device
    from deepseg.inference.precompile import likely_openvino

    assert likely_openvino("auto", "cpu") and likely_openvino("openvino", "cpu") and likely_openvino(None, None) \
        == (resolve_backend("auto", resolve_device("auto")) == "openvino")
    assert not likely_openvino("torch", "cpu") and not likely_openvino("onnxruntime", "cpu")
    assert not likely_openvino("auto", "cuda") and not likely_openvino("auto", "mps")
    monkeypatch.setenv("DEEPSEG_BACKEND", "torch")
    assert not likely_openvino("auto", "cpu") and likely_openvino("openvino", "cpu")


@pytest.mark.parametrize("environ", [{}, {"OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "1"},
                                     {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}, {"MKL_NUM_THREADS": "1"}])
def test_the_background_compilation_uses_the_runs_thread_count(environ, tmp_path):
    """``precompile.cpu_threads`` (told before PyTorch is imported) is the count the run's OpenVINO networks
    compile with, or the run does not take the background compilation: not PyTorch's count, which reads
    ``MKL_NUM_THREADS`` over ``OMP_NUM_THREADS`` (Dask's nannies set both to 1 in the process that starts
    them). A fresh interpreter per environment, as a user's run starts."""
    import os
    import subprocess
    import sys

    code = """
from deepseg.inference.precompile import cpu_threads
before = cpu_threads()
from deepseg.inference.device import use_all_cores
use_all_cores()
import torch
from deepseg.inference import backends
conv = torch.nn.Conv3d(1, 2, 3, padding=1).eval()  # held: BackendNetwork refers to it weakly
net = backends.BackendNetwork(conv, "openvino")
run = net.compile((1, 1, 8, 8, 8), net.streams_for(64))
print(before, run.compiled.get_property("INFERENCE_NUM_THREADS"))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **environ, "DEEPSEG_HOME": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1]


def test_impossible_choices_name_the_fix():
    with pytest.raises(InputError, match="Unknown inference backend"):
        resolve_backend("tensorrt", CPU)
    with pytest.raises(InputError, match="runs on the CPU"):
        resolve_backend("openvino", torch.device("cuda"))


def test_options_refuse_an_unknown_backend():
    from deepseg.options import SegmentOptions

    assert SegmentOptions(backend="openvino").to_argv() == ["--backend", "openvino"]
    with pytest.raises(InputError, match="backend"):
        SegmentOptions(backend="gpu-magic")


# --- conversion, cache, fallback ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", CONVERTING)
def test_backend_matches_torch_and_second_run_reuses_the_cache(backend, store, monkeypatch):
    net = small_unet()
    x = torch.randn(2, 1, 16, 32, 32)
    with torch.inference_mode():
        expected = net(x)
    first = BackendNetwork(net, backend)
    y = first(x)
    assert first.failed is None
    assert torch.allclose(y, expected, atol=1e-4), float((y - expected).abs().max())
    files = sorted(p for p in (store / "compiled").rglob("*") if p.is_file())
    assert any(p.suffix in (".xml", ".onnx") for p in files)
    stamps = {p: p.stat().st_mtime_ns for p in files}

    def no_export(*args, **kwargs):
        raise AssertionError("the second run must not export the network again")

    monkeypatch.setattr(backends, "exported_program", no_export)
    second = BackendNetwork(net, backend)  # a new process would start like this
    assert torch.equal(second(x), y)
    assert second.failed is None
    assert {p: p.stat().st_mtime_ns for p in files} == stamps  # nothing rewritten


def test_converted_networks_do_not_outlive_their_model():
    """Loading model after model in one process (a benchmark, a Slicer session, a cohort worker) must not keep
    every earlier network and its compiled copies alive; nor may one network keep a compiled copy per input
    shape (the liver network runs on the whole, differently sized, volume of each scan)."""
    import gc
    import weakref

    net = small_unet()
    wrapped = on_backend(net, "openvino")
    for size in (16, 24, 32):
        wrapped(torch.randn(1, 1, 16, size, size))
    assert len(wrapped._runners) <= backends.MAX_COMPILED_SHAPES
    alive = weakref.ref(net)
    del net, wrapped
    gc.collect()
    assert alive() is None


def test_cache_key_follows_weights_module_and_shape():
    a, b = small_unet(0), small_unet(1)
    assert weights_sha256(a) == weights_sha256(small_unet(0))
    assert weights_sha256(a) != weights_sha256(b)
    ka = BackendNetwork(a, "torch").key((1, 1, 16, 32, 32))
    assert ka != BackendNetwork(b, "torch").key((1, 1, 16, 32, 32))
    assert ka != BackendNetwork(a, "torch").key((2, 1, 16, 32, 32))
    assert ka != BackendNetwork(small_unet(0, classes=4), "torch").key((1, 1, 16, 32, 32))


class DataDependent(torch.nn.Module):
    """Branches on the data for inputs wider than ``from_width`` voxels: ``torch.export`` refuses those shapes."""

    def __init__(self, from_width: int = 0) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)
        self.from_width = from_width

    def forward(self, x):
        y = self.conv(x)
        if x.shape[-1] > self.from_width:
            return y if float(y.mean()) > 0 else -y
        return y


@pytest.mark.parametrize("backend", CONVERTING)
def test_a_network_that_does_not_convert_runs_in_torch_with_a_notice(backend, caplog):
    net = DataDependent().eval()
    x = torch.randn(1, 1, 8, 8, 8)
    with caplog.at_level(logging.WARNING, logger="deepseg.inference.backends"):
        y = on_backend(net, backend)(x)
    assert on_backend(net, backend).failed
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("deepseg")]
    assert len(notices) == 1 and f"did not convert to {backend}" in notices[0] and "\n" not in notices[0]
    with torch.inference_mode():
        assert torch.equal(y, net(x))


@pytest.mark.parametrize("backend", CONVERTING)
def test_a_shape_that_does_not_convert_leaves_the_other_shapes_converted(backend, caplog):
    """A network that fails to convert for one input shape runs only that shape in PyTorch (the notice names
    it); a shape met afterwards still converts, and the run reports both engines."""
    from deepseg.inference.backends import using

    net = DataDependent(from_width=8).eval()
    large, small = torch.randn(1, 1, 8, 8, 12), torch.randn(1, 1, 8, 8, 8)
    with using(backend) as use, caplog.at_level(logging.WARNING, logger="deepseg.inference.backends"):
        wrapped = on_backend(net, backend)
        got_large, got_small = wrapped(large), wrapped(small)
    assert [shape for shape, _ in wrapped._runners] == [(1, 1, 8, 8, 8)]  # the old code never converted it
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("deepseg")]
    assert len(notices) == 1 and "for input 1x1x8x8x12" in notices[0]
    assert list(wrapped.failures) == [(1, 1, 8, 8, 12)] and "1x1x8x8x12" in wrapped.failed
    assert use.ran == f"{backend}+torch" and list(use.fallbacks) == ["DataDependent"]
    with torch.inference_mode():
        assert torch.equal(got_large, net(large))
        torch.testing.assert_close(got_small, net(small), rtol=0, atol=1e-5)


def test_sliding_window_runs_openvino_patches_on_parallel_streams_with_torchs_result(monkeypatch):
    """Many patches: OpenVINO runs one stream per thread (two here), patches in flight at once, and the
    stitched logits equal PyTorch's sliding window (with mirroring and Gaussian weighting)."""
    from deepseg.inference.sliding_window import predict_sliding_window
    from deepseg.models.base import WindowSpec

    net = small_unet(3)
    image = np.random.default_rng(0).normal(size=(1, 24, 56, 48)).astype(np.float32)
    window = WindowSpec((16, 32, 32), 0.5, "gaussian", (0, 1, 2))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the count CPU inference runs with (precompile.cpu_threads)
    expected = predict_sliding_window([net], image, window, 3, device="cpu", mirror=True, backend="torch")
    got = predict_sliding_window([net], image, window, 3, device="cpu", mirror=True, backend="openvino")
    wrapped = on_backend(net, "openvino")
    assert wrapped.failed is None
    # what DeepSeg asks for (the streams OpenVINO grants depend on the machine's cores): one network compiled
    # in throughput mode for two calls at once
    assert [streams for _, streams in wrapped._runners] == [2]
    runner = next(iter(wrapped._runners.values()))
    assert str(runner.compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")
    # the requests made with the network (one per stream and one for the output being summed) were all the
    # window needed: making one mid-run waits for the running patches, and its stream stands idle meanwhile
    assert len(runner.requests) == 3
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_a_background_compilation_for_other_settings_is_dropped_when_the_run_compiles_its_own(store):
    """The run of a small image asks for fewer streams than the background compiled for: it compiles its own and
    the background's compilation is not kept for the life of the process (Slicer's: GBs for a CT-sized net)."""
    import threading

    from deepseg.inference import precompile

    shape = (1, 1, 16, 32, 32)
    xml = backends.openvino_model_file(small_unet(), shape,
                                       precompile.backend_dir("openvino") / precompile.identity_key("files", shape))
    precompile.start(lambda: "files", shape, streams=2, threads=2)
    for thread in threading.enumerate():
        if thread.name == "deepseg-precompile":
            thread.join()
    assert (str(xml), 2, 2) in precompile._PENDING
    assert precompile.take(xml, 1, 2) is None  # one stream wanted: not the background's
    assert not [key for key in precompile._PENDING if key[0] == str(xml)]


def test_openvino_lends_its_output_buffers_and_never_overwrites_one_still_held():
    """An OpenVINO output is the infer request's own buffer (no copy of a CT-sized patch's logits); a request is
    used again only once nothing holds its output, and callers holding more outputs than there are streams get
    new requests instead of waiting (they would wait forever: nobody else frees what they hold)."""
    net = small_unet()
    run = on_backend(net, "openvino").compile((1, 1, 16, 32, 32), streams=1)
    assert len(run.requests) == 2  # made before any call: one per stream and one for the output being summed
    inputs = [np.random.default_rng(seed).normal(size=(1, 1, 16, 32, 32)).astype(np.float32) for seed in range(3)]
    one_at_a_time = set()
    for x in inputs:
        out = run(x)
        one_at_a_time.add(out.ctypes.data)
        del out
    assert len(one_at_a_time) == 1  # the request freed last is used again: the spare's buffer is never touched
    held = [run(x) for x in inputs]  # three outputs held at once, one stream
    assert len(run.requests) == 3
    with torch.inference_mode():
        for x, out in zip(inputs, held):
            torch.testing.assert_close(torch.from_numpy(out), net(torch.from_numpy(x)), rtol=0, atol=1e-4)
    base, owners = held[0], []
    while base is not None:
        owners.append(type(base).__module__)
        base = getattr(base, "base", None)
    assert owners[-1].startswith("openvino"), owners  # a view of OpenVINO's tensor, not a copy
    pointers = {out.ctypes.data for out in held}
    assert len(pointers) == 3
    del held, out
    again = run(inputs[0])
    assert again.ctypes.data in pointers  # a released request (and its buffer) is used again


class Branchy(torch.nn.Module):
    """``net`` behind a data-dependent branch that never changes its result: ``torch.export`` refuses it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        return y if float(y.abs().sum()) >= 0 else -y


@pytest.mark.parametrize("backend", CONVERTING)
def test_provenance_names_the_backend_that_actually_ran(backend, threshold_model, oblique_volume):
    """A converted network reports its backend; one that fell back reports PyTorch, and a note says why."""
    from deepseg.inference.pipeline import segment

    converted = segment(threshold_model, [oblique_volume], device="cpu", backend=backend)
    assert converted.provenance["settings"]["backend"] == backend
    assert not any("did not convert" in n for n in converted.provenance["notes"])
    threshold_model.networks["0"] = Branchy(threshold_model.networks["0"])
    fell_back = segment(threshold_model, [oblique_volume], device="cpu", backend=backend)
    assert fell_back.provenance["settings"]["backend"] == "torch"
    assert [n for n in fell_back.provenance["notes"] if f"Branchy did not convert to {backend}" in n]
    assert np.array_equal(fell_back.labels.array, converted.labels.array)


# --- card-model architectures (the real models: test_nnunet.py, test_meshnet.py, test_liver_model.py) ----
@pytest.mark.parametrize("fmt", ["monai-unet", "monai-vnet", "render-unet"])
def test_card_models_convert_and_agree_with_torch(fmt, caplog):
    """MONAI's UNet and VNet convert to OpenVINO (provenance says so); RenderUNet's point refinement picks a
    data-dependent number of points, which ``torch.export`` refuses, so it runs in PyTorch and provenance says
    that. Either way the probabilities are PyTorch's; the untrained weights make near-ties, so labels are compared
    where PyTorch's two largest probabilities differ by more than float32 kernel differences can move them."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.card_model import CardModel, build_network
    from deepseg.training.shapes import make_case, shapes_card

    arch = {"monai-unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}, "monai-vnet": None,
            "render-unet": {"features": [4, 8, 16, 16], "subdivision_points": 256, "train_points": 128}}[fmt]
    card = shapes_card(fmt, (16, 16, 16), arch)
    torch.manual_seed(3)
    model = CardModel(card, {"0": build_network(card).eval()})
    volume, _ = make_case(np.random.default_rng(5), (20, 24, 22), spacing=(1.2, 0.9, 1.1))
    ov = segment(model, [volume], device="cpu", return_probabilities=True)  # auto
    pt = segment(model, [volume], backend="torch", device="cpu", return_probabilities=True)
    expected = "torch" if fmt == "render-unet" else "openvino"
    assert ov.provenance["settings"]["backend"] == expected and pt.provenance["settings"]["backend"] == "torch"
    assert any("did not convert to openvino" in n for n in ov.provenance["notes"]) == (expected == "torch")
    assert np.abs(ov.probabilities - pt.probabilities).max() <= 1e-3
    top2 = np.sort(pt.probabilities, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-3
    assert clear.mean() > 0.9 and np.array_equal(ov.labels.array[clear], pt.labels.array[clear])


def test_the_least_recently_used_compiled_shape_is_dropped_first():
    """A network that keeps coming back to one input shape (the patch of a sliding window) while other shapes
    pass by (whole volumes, edge slabs) keeps that shape compiled; the one unused longest goes first.
    (The old code dropped the oldest compiled, even when it was the one in use.)"""
    net = small_unet()  # held here: a wrapped network is held weakly
    wrapped = on_backend(net, "openvino")
    shapes = [(1, 1, 16, 16 + 8 * n, 16 + 8 * n) for n in range(backends.MAX_COMPILED_SHAPES + 1)]
    for shape in shapes[:-1]:
        wrapped(torch.randn(shape))
    wrapped(torch.randn(shapes[0]))  # in use again
    wrapped(torch.randn(shapes[-1]))
    kept = [shape for shape, _ in wrapped._runners]
    assert shapes[0] in kept and shapes[-1] in kept and shapes[1] not in kept, kept


def test_instance_norms_are_exported_written_out_with_float32_accurate_statistics(monkeypatch):
    """Export replaces nnU-Net's instance norms (held twice in each block) by the written-out formula: same
    outputs, no batch-norm op left in the exported graph, the caller's network untouched. On a large
    activation OpenVINO's result is as close to float64 as PyTorch's float32: a norm reduced along one float32
    chain (OpenVINO's MVN, or the batch norm InstanceNorm3d exports as) loses the small squares of the variance
    once the running sum dwarfs them (here 1e-5 to 9e-5 relative error with one thread, ~1e-3 and 0.3 % of
    argmax flipped on a TotalSegmentator-sized patch; PyTorch 5e-7)."""
    import copy

    net = small_unet(5)
    x = torch.randn(1, 1, 16, 32, 32)
    ready = backends.export_ready(net)
    with torch.inference_mode():
        torch.testing.assert_close(ready(x), net(x), rtol=0, atol=1e-5)
    ops = {str(n.target) for n in backends.exported_program(net, tuple(x.shape)).graph.nodes
           if n.op == "call_function"}
    assert not any("batch_norm" in op for op in ops), sorted(ops)
    assert len([m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm3d)]) == 5  # the caller's own

    x = torch.randn(1, 1, 48, 96, 96) * 0.5 + 0.3  # 442k voxels per channel in the first stage
    with torch.inference_mode():
        exact = copy.deepcopy(net).double()(x.double())
        torch_error = float((net(x).double() - exact).norm() / exact.norm())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one stream's single thread: the longest chains (throughput mode's case)
    got = on_backend(net, "openvino")(x)
    assert on_backend(net, "openvino").failed is None
    # against PyTorch's own float32 error on this CPU (each CPU's kernels round differently): measured 1.0-1.1x
    # (5.5e-7 to 6.4e-7 against 5.6e-7, three inputs, AVX2); the old export ~160x (8.9e-5)
    error = float((got.double() - exact).norm() / exact.norm())
    assert error < 4 * torch_error, (error, torch_error)


def _unet(dims: int, seed: int, deep_supervision: bool = False) -> torch.nn.Module:
    """A small nnU-Net PlainConvUNet (anisotropic first pooling) with random biases and norm affines, so
    every term of the folded decoder (the transposed convolutions' biases included) is exercised."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(seed)
    conv, norm = (torch.nn.Conv2d, torch.nn.InstanceNorm2d) if dims == 2 else (torch.nn.Conv3d, torch.nn.InstanceNorm3d)
    net = PlainConvUNet(1, 3, (8, 16, 32), conv, 3, (1, (1,) + (2,) * (dims - 1), 2), 2, 3, (2, 1), True, norm,
                        {"eps": 1e-5, "affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True},
                        deep_supervision=deep_supervision).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return net


@pytest.mark.parametrize("dims", [2, 3])
def test_nnunet_decoders_are_exported_with_each_upsampling_folded_into_the_convolution_after_it(dims):
    """The export computes ``conv(cat(up(low), skip))`` as ``up'(low) + conv(skip)`` (one transposed convolution
    of the coarse features, weights multiplied out): fewer multiply-adds than the network itself (the old
    export had exactly as many), the same outputs, as close to float64 as PyTorch's float32, in OpenVINO too."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    net = _unet(dims, 11)
    ready = backends.export_ready(net)
    x = torch.randn(1, 1, *(12, 40, 36)[-dims:])

    def flops(module: torch.nn.Module) -> int:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            module(x)
        return counter.get_total_flops()

    assert flops(ready) < flops(net), (flops(ready), flops(net))  # 0.93 (3D), 0.97 (2D); equal unfolded
    with torch.inference_mode():
        exact = copy.deepcopy(net).double()(x.double())
        torch_error = float((net(x).double() - exact).norm() / exact.norm())
        ready_error = float((ready(x).double() - exact).norm() / exact.norm())
        # the folding alone, computed in float64: no CPU's float32 kernels in the verdict, only the (IEEE)
        # rounding of the folded weights to float32; a wrong tap, bias or padding term is orders larger
        folding_error = float((copy.deepcopy(ready).double()(x.double()) - exact).norm() / exact.norm())
    assert folding_error < 1e-7, folding_error  # measured 2.2e-8 to 2.9e-8 (2D, 3D; seeds 11-13)
    assert ready_error < 2 * torch_error + 1e-7, (ready_error, torch_error)
    got = on_backend(net, "openvino")(x)
    assert on_backend(net, "openvino").failed is None
    # against PyTorch's own float32 error on this CPU, as above: measured 1.0-1.2x (seeds 11-13, AVX2)
    error = float((got.double() - exact).norm() / exact.norm())
    assert error < 4 * torch_error, (error, torch_error)


def test_decoders_that_cannot_be_folded_are_exported_as_they_are():
    """Deep supervision (every stage's output is used) and upsamplings whose kernels overlap keep the decoder."""
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

    assert type(backends.export_ready(_unet(3, 1, deep_supervision=True)).decoder) is UNetDecoder
    net = _unet(3, 2)
    up = net.decoder.transpconvs[0]
    net.decoder.transpconvs[0] = torch.nn.ConvTranspose3d(up.in_channels, up.out_channels, 4, 2, padding=1)
    assert type(backends.export_ready(net).decoder) is UNetDecoder
    assert type(backends.export_ready(_unet(3, 2)).decoder) is not UNetDecoder


def test_export_leaves_each_module_of_the_callers_network_in_its_own_mode():
    """The export runs in eval mode, then gives every module of the caller's network its own mode back:
    a frozen batch norm in a network being trained, Monte Carlo dropout in one in eval mode.
    (The old code reset them all to the top module's mode.)"""
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.BatchNorm3d(2),
                              torch.nn.Dropout3d(0.5), torch.nn.Conv3d(2, 2, 1))
    for top, other in ((True, 1), (False, 2)):
        net.train(top)
        net[other].train(not top)
        before = [m.training for m in net.modules()]
        backends.exported_program(net, (1, 1, 8, 8, 8))
        assert [m.training for m in net.modules()] == before


def test_openvino_is_used_without_its_usage_telemetry():
    """Importing openvino and converting a network must not send usage events to Google Analytics (its
    ``openvino-telemetry`` dependency does so from a forked copy of the process unless it is kept out):
    openvino's converter runs on its own no-op stand-in. A fresh interpreter, as a user's run starts."""
    import subprocess
    import sys

    code = """
import sys, torch
from deepseg.inference import backends
net = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
y = backends.BackendNetwork(net, "openvino")(torch.randn(1, 1, 8, 8, 8))
from openvino.tools.ovc import convert_impl, telemetry_utils
assert y.shape == (1, 2, 8, 8, 8)
print(sys.modules.get("openvino_telemetry"), telemetry_utils.tm.__name__, convert_impl.tm.__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["None", "openvino.tools.ovc.telemetry_stub", "openvino.tools.ovc.telemetry_stub"]
