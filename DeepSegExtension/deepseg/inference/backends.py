"""Inference backends: a network's forward pass in PyTorch, OpenVINO or ONNX Runtime.

``auto`` keeps PyTorch on CUDA/MPS and uses OpenVINO on the CPU when it is installed (about twice as
fast per patch as PyTorch eager for nnU-Net-sized 3D networks on a CPU; ``benchmarks/RESULTS.md``).
A network is exported once per input shape (``torch.export``, then OpenVINO's converter or PyTorch's
ONNX exporter) and kept in the model store under ``compiled/<backend>-<version>/``, named
by the sha256 of the weights, the module's description (layer settings) and the input shape, or by the
identity its model format gives it (``identify``: nnU-Net names a network by its files' bytes).
OpenVINO's compiled-blob cache lives next to it, so a second run pays neither export nor compilation; a
network with an identity is compiled in the background from the start of the run (``precompile``).
A sliding window of many patches runs OpenVINO in throughput mode: one stream per CPU thread, each
computing its own patch single-threaded, with as many patches in flight (``BackendNetwork.streamed``):
no barrier between the threads after every layer, and the Python work between patches (cutting,
weighting, accumulating) overlaps the network.
A network that does not export or compile for an input shape runs that shape in PyTorch after a one-line
notice; its other shapes still convert.
Computation stays float32 on every CPU (OpenVINO would pick bf16 on CPUs that have it).
Explanations need gradients and always run the PyTorch modules; they never come through here.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import hashlib
import importlib.util
import logging
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..io.atomic import write_atomically
from .backend_names import BACKENDS
from .folded_decoder import folded_decoder
from .precompile import (EXPORT_VERSION, backend_dir, compile_openvino, cpu_threads, identity_key, openvino,
                         requested_backend, take)

log = logging.getLogger(__name__)


Runner = Callable[[np.ndarray], np.ndarray]
# compiled networks kept per network in memory (each holds its activations' buffers: GBs for a CT-sized
# input); the least recently used shape is dropped first and comes back from the on-disk cache when needed
MAX_COMPILED_SHAPES = 2


class BackendUse:
    """What one run asked for and what its networks actually ran on (a network that did not convert runs in
    PyTorch): provenance reports ``ran`` and ``fallbacks``, not just the choice. Networks are registered when
    they are put on the backend (``on_backend``), in the thread that set ``using``; they may run in others."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.networks: list["BackendNetwork"] = []

    @property
    def ran(self) -> str:
        """``openvino``, ``torch``, or ``openvino+torch`` when only some networks (or input shapes) converted."""
        engines = set().union(*(n.engines for n in self.networks)) or {self.backend}
        return "+".join(sorted(engines, key=lambda b: b == "torch"))

    @property
    def fallbacks(self) -> dict[str, str]:
        """Network class -> "backend (why)" it did not convert to."""
        return {type(n.net).__name__: f"{n.backend} ({n.failed})" for n in self.networks if n.failed}


_CURRENT: "contextvars.ContextVar[Optional[BackendUse]]" = contextvars.ContextVar("deepseg_inference_backend",
                                                                                    default=None)


@contextlib.contextmanager
def using(backend: str):
    """Run the networks of everything inside on ``backend`` (``segment`` sets its option here; outside,
    e.g. training evaluation and explanations, networks run in PyTorch); yields the run's ``BackendUse``."""
    use = BackendUse(backend)
    token = _CURRENT.set(use)
    try:
        yield use
    finally:
        _CURRENT.reset(token)


def current_backend() -> str:
    use = _CURRENT.get()
    return use.backend if use else "torch"


def installed(backend: str) -> bool:
    """Whether ``backend``'s package (named as the backend) can be imported (PyTorch always can)."""
    return backend == "torch" or importlib.util.find_spec(backend) is not None


def resolve_backend(choice: Optional[str], device: torch.device) -> str:
    """``auto`` -> PyTorch on CUDA/MPS, OpenVINO on the CPU when installed, else PyTorch (the environment
    variable ``DEEPSEG_BACKEND`` can name what ``auto`` means); an explicit choice that cannot run here
    is an ``InputError`` naming the fix."""
    choice = requested_backend(choice)
    if choice not in BACKENDS:
        raise InputError(f"Unknown inference backend {choice!r}.", "Use one of: " + ", ".join(BACKENDS) + ".")
    if choice == "auto":
        return "openvino" if device.type == "cpu" and installed("openvino") else "torch"
    if choice == "torch":
        return choice
    if device.type != "cpu":
        raise InputError(f"The {choice} backend runs on the CPU, but the device is {device}.",
                         "Use --device cpu with it, or --backend torch (or auto) on a GPU.")
    if not installed(choice):
        raise InputError(f"The {choice} backend was requested but the package {choice} is not installed.",
                         f"pip install {choice}, or use --backend torch.")
    return choice


_IDENTITIES: "weakref.WeakKeyDictionary[nn.Module, Callable[[], Optional[str]]]" = weakref.WeakKeyDictionary()


def identify(net: nn.Module, identity: Callable[[], Optional[str]]) -> None:
    """Name ``net`` by what its model format knows it from (``precompile``): its cached files are then found
    by that identity, without hashing its weights, and a compilation ``precompile.start``ed for it is used.
    ``identity`` gives None once it no longer names ``net`` (files changed since): then its weights name it."""
    _IDENTITIES[net] = identity


def weights_sha256(net: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


class BackendNetwork:
    """``net``'s forward pass on ``backend``, called like the module on a CPU float32 batch.

    One compiled network per input shape, made on first use (from the cache when it is there); with
    ``dynamic`` one network serves every spatial shape (halo tiles, whose slabs differ per image)."""

    def __init__(self, net: nn.Module, backend: str, cache: Optional[Path] = None, dynamic: bool = False) -> None:
        self._net = weakref.ref(net)  # weak: ``on_backend``'s per-network table must not keep networks alive
        self.backend = backend
        self.dynamic = dynamic
        self.cache = backend_dir(backend, cache)
        self._runners: dict[tuple, Runner] = {}
        self._weights: Optional[str] = None
        self._lock = threading.Lock()  # one compilation at a time; PyTorch fallback calls one at a time
        # input shape -> why it did not convert: PyTorch runs that shape; other shapes still convert (a
        # compilation can fail for one shape only, e.g. out of memory on the largest scan of a cohort)
        self.failures: dict[tuple, str] = {}
        self.converted = False  # some input shape has been converted

    @property
    def failed(self) -> Optional[str]:
        """Why conversion failed, naming the input shape(s) that PyTorch runs; None if none failed."""
        if not self.failures:
            return None
        shape, why = next(iter(self.failures.items()))
        more = f" and {len(self.failures) - 1} more shape(s)" if len(self.failures) > 1 else ""
        return f"input {'x'.join(map(str, shape))}{more}: {why}"

    @property
    def engines(self) -> set[str]:
        """The engines this network has run on: the backend, PyTorch for shapes that did not convert."""
        return ({self.backend} if self.converted or not self.failures else set()) | \
            ({"torch"} if self.failures else set())

    @property
    def net(self) -> nn.Module:
        net = self._net()
        if net is None:
            raise RuntimeError("the network of this BackendNetwork was freed; wrap the network again")
        return net

    def key(self, shape: tuple) -> str:
        """The cached files' name: by the network's identity (``identify``), else by the sha256 of its
        weights and its description."""
        identity = _IDENTITIES.get(self.net)
        name = identity() if identity is not None else None  # None: its files changed since it was loaded
        if name is not None:
            return identity_key(name, shape)
        if self._weights is None:
            self._weights = weights_sha256(self.net)
        text = "|".join([EXPORT_VERSION, self._weights, repr(self.net), str(tuple(shape)), torch.__version__])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def compile(self, shape: tuple, streams: int = 1) -> Optional[Runner]:
        """The compiled network for input ``shape`` (made or read from the cache once), safe to call from
        ``streams`` threads at once; None if it does not convert (after the one-line notice)."""
        shape = tuple(int(s) for s in shape)
        if self.dynamic:
            shape = (*shape[:2], *[-1] * (len(shape) - 2))
        with self._lock:
            if (shape, streams) in self._runners:  # most recently used last: the least recent is dropped first
                self._runners[shape, streams] = self._runners.pop((shape, streams))
            elif shape not in self.failures:
                # whole-volume inputs (the liver network) would otherwise keep one per scan of a cohort
                while len(self._runners) >= MAX_COMPILED_SHAPES:
                    self._runners.pop(next(iter(self._runners)))
                try:
                    self._runners[shape, streams] = self._compile(shape, streams)
                    self.converted = True
                except Exception as exc:  # any exporter/compiler failure: this shape still runs in PyTorch
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                    self.failures[shape] = why
                    log.warning("%s did not convert to %s for input %s (%s); running it in PyTorch.",
                                type(self.net).__name__, self.backend, "x".join(map(str, shape)), why)
            return self._runners.get((shape, streams))

    def __call__(self, x: torch.Tensor, streams: int = 1) -> torch.Tensor:
        run = self.compile(tuple(x.shape), streams)
        if run is None:
            with self._lock:  # PyTorch uses every thread itself: concurrent calls would only oversubscribe
                return self.net(x)
        return torch.from_numpy(run(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)))

    def streams_for(self, calls: int) -> int:
        """How many of ``calls`` network calls to run at once: one per CPU thread for OpenVINO (each call
        single-threaded, in its own stream), else one."""
        return max(1, min(calls, cpu_threads())) if self.backend == "openvino" else 1

    def streamed(self, streams: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """This network as a callable for ``streams`` threads calling it at once."""
        return lambda x: self(x, streams)

    def _compile(self, shape: tuple, streams: int) -> Runner:
        self.cache.mkdir(parents=True, exist_ok=True)
        stem = self.cache / self.key(shape)
        if self.backend == "openvino":
            return _openvino_runner(self.net, shape, stem, streams)
        return _onnxruntime_runner(self.net, shape, stem)


_WRAPPED: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, BackendNetwork]]" = weakref.WeakKeyDictionary()


def on_backend(net: nn.Module, backend: str, dynamic: bool = False) -> Union[nn.Module, BackendNetwork]:
    """``net`` itself for PyTorch, else its (per-process, reused) ``BackendNetwork``."""
    if backend == "torch":
        return net
    per_net = _WRAPPED.setdefault(net, {})
    if (backend, dynamic) not in per_net:
        per_net[backend, dynamic] = BackendNetwork(net, backend, dynamic=dynamic)
    wrapped = per_net[backend, dynamic]
    use = _CURRENT.get()
    if use is not None and wrapped not in use.networks:
        use.networks.append(wrapped)
    return wrapped


# --- export and compilation ------------------------------------------------------------------------
def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial axes (2 onwards) in two steps: within each slice of the first spatial axis, then
    across the slices. OpenVINO sums a whole-activation reduction along one float32 chain per channel (per
    vector lane); over a patch's million voxels the variance's squares are rounded away once the running sum
    dwarfs them (all 22 norms of a TotalSegmentator-sized net underestimated their variance by 0.1-0.5 %,
    logits 1.8e-3 off, 0.3 % of argmax flipped). Two short chains keep it within float32 rounding, as PyTorch.
    The second step is a sum over a count, not a mean (OpenVINO merges two means back into one reduction); the
    count is summed too, so a network exported for any size (symbolic shapes) still converts."""
    if t.dim() <= 3:
        return t.mean(dim=2, keepdim=True)
    per_slice = t.mean(dim=tuple(range(3, t.dim())), keepdim=True)
    return per_slice.sum(dim=2, keepdim=True) / torch.ones_like(per_slice).sum(dim=2, keepdim=True)


class _ExplicitInstanceNorm(nn.Module):
    """Instance normalisation (instance statistics) written out as ``(x - mean) / sqrt(mean((x - mean)^2) + eps)``
    with the means of ``_spatial_mean``: OpenVINO's own normalisation (MVN, which this pattern became with
    whole-activation means) and reductions are float32 single chains; ``InstanceNorm3d`` itself exports as a
    reshaped batch norm, also reduced in one chain."""

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm) -> None:
        super().__init__()
        self.eps, self.weight, self.bias = norm.eps, norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - _spatial_mean(x)
        y = centred / torch.sqrt(_spatial_mean(centred * centred) + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        return y + self.bias.view(shape) if self.bias is not None else y


def export_ready(net: nn.Module) -> nn.Module:
    """A CPU copy of ``net`` in eval mode for export, its instance norms (those using instance statistics)
    written out and nnU-Net decoders' upsamplings folded into the convolution after them (``folded_decoder``):
    the caller's network keeps its device and every module its own train/eval mode."""
    out = copy.deepcopy(net).cpu().eval()
    # every name a norm is registered under (nnU-Net's blocks hold each one twice: .norm and .all_modules.1)
    swap = [name for name, m in out.named_modules(remove_duplicate=False)
            if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats]
    for name in swap:
        parent, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent), leaf, _ExplicitInstanceNorm(out.get_submodule(name)))
    for name, module in list(out.named_modules()):  # nnU-Net decoders: upsampling folded into the next convolution
        folded = folded_decoder(module)
        if folded is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(out.get_submodule(parent), leaf, folded)
    return out


def exported_program(net: nn.Module, shape: tuple) -> "torch.export.ExportedProgram":
    """``torch.export`` of ``net`` in eval mode for the input ``shape`` (-1: any size along that axis),
    traced with fake tensors: no forward pass is computed, so exporting a CT-sized patch costs seconds."""
    net = export_ready(net)
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # the exporter's own warnings would bury the one-line fallback notice
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = torch.zeros([32 if s < 0 else s for s in shape])
            dynamic = {i: torch.export.Dim.DYNAMIC for i, s in enumerate(shape) if s < 0} or None
            return torch.export.export(net, (example,), dynamic_shapes=(dynamic,) if dynamic else None)
    finally:
        torch_log.setLevel(level)


def openvino_model_file(net: nn.Module, shape: tuple, stem: Path) -> Path:
    """The OpenVINO model (``stem``.xml + .bin, float32 weights) of ``net`` for input ``shape``, exported once."""
    ov = openvino()
    xml = stem.with_suffix(".xml")
    if not xml.is_file():
        model = ov.convert_model(exported_program(net, shape))
        if min(shape) > 0:
            model.reshape({0: list(shape)})

        def save(tmp: Path) -> None:  # the .bin goes first: the .xml's presence means the pair is complete
            ov.save_model(model, str(tmp), compress_to_fp16=False)  # keep float32 weights
            os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))

        write_atomically(xml, save)
    return xml


def _openvino_runner(net: nn.Module, shape: tuple, stem: Path, streams: int = 1) -> Runner:
    xml = openvino_model_file(net, shape, stem)
    threads = cpu_threads()
    compiled = take(xml, streams, threads)  # compiled in the background when the run started (``precompile``)
    if compiled is None:
        compiled = compile_openvino(xml, streams, threads)
    # every request the sliding window holds at once (``in_order``: one per running stream and the output being
    # summed), made now: making one while another computes a patch can wait for that patch (OpenVINO 2026.4: up to
    # 19.1 s, not always; ``benchmarks/ov_profile.py --request-wait``), and costs no memory before its first inference
    requests = [compiled.create_infer_request() for _ in range(streams + 1)]
    free = collections.deque(requests)  # requests whose output nobody holds any more; thread-safe append / pop

    def run(x: np.ndarray) -> np.ndarray:
        """The output is the request's own buffer, not a copy (a CT-sized patch's logits are hundreds of MB: the
        copy into fresh memory took 2.5 s of each stream's 58 s in a profiled 3 mm run): the request goes back to
        ``free`` only when the last array or tensor viewing its output is freed, and a call that finds no free
        request makes another one (a caller holding many outputs costs one buffer each, as copies would). The
        request freed last is used first, so a caller that holds one output at a time uses one buffer."""
        try:
            request = free.pop()
        except IndexError:
            request = compiled.create_infer_request()
            requests.append(request)
        try:  # OpenVINO computes with the GIL released
            output = request.infer({0: x}, share_inputs=True, share_outputs=True)[0].view()
        except BaseException:
            free.append(request)
            raise
        weakref.finalize(output, free.append, request)
        return output

    run.compiled = compiled  # type: ignore[attr-defined]  (tests read its stream count)
    run.requests = requests  # type: ignore[attr-defined]  (tests count them)
    return run


def _onnxruntime_runner(net: nn.Module, shape: tuple, stem: Path) -> Runner:
    import onnxruntime as ort

    path = stem.with_suffix(".onnx")
    if not path.is_file():
        program = exported_program(net, shape)

        def save(tmp: Path) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, optimize=True)
            onnx_program.save(str(tmp))

        write_atomically(path, save)
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run
