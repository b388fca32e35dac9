"""Where the compiled TotalSegmentator-sized network spends its time in OpenVINO, layer by layer.

The network of ``realistic_cpu.py`` (genuine nnU-Net v2 plans, features 32-320, 25 outputs, random weights) is
exported exactly as DeepSeg exports it (``backends.openvino_model_file``) and compiled with DeepSeg's
throughput-mode properties (``precompile.openvino_properties``) with ``--streams`` streams (default ONE: one
sliding-window stream's view; 2 is what the sliding window runs here) of ``--threads`` threads, with OpenVINO's
per-layer performance counters on. One random patch of the planned size per stream runs ``--reps`` times; each layer's time is its minimum over the repeats (the machine is shared:
the minimum is the least disturbed), summed by layer type. Convolution FLOPs come from the compiled graph's
shapes (2 x multiply-adds), so the convolutions' GFLOPS and the share of time outside them are printed too.

``--ab`` compiles a second copy with other properties or another export (``KEY=VALUE`` properties, e.g.
``CPU_DENORMALS_OPTIMIZATION=YES``, or an export recipe of before: ``norms=whole-mean``, instance norms with
whole-activation means, the pattern OpenVINO fuses into its MVN layer, before EXPORT_VERSION 3;
``decoder=unfolded``, nnU-Net's decoder as it is, before EXPORT_VERSION 4) and times both interleaved: process CPU
seconds per patch (less sensitive to other programs than wall time) and wall. ``--torch`` also compares each
output with PyTorch float32's on the same patch (relative difference, share of voxels whose argmax differs).
``--request-wait`` times, instead, making an infer request of the compiled network while it is idle and while
another request computes a patch, and the memory requests take (the reason ``backends._openvino_runner`` makes its
requests up front).

    python benchmarks/ov_profile.py [--spacing 3] [--patch 256 80 112] [--reps 3] [--threads 1] [--streams 1]
                                    [--ab KEY=VALUE ...] [--torch]
    python benchmarks/ov_profile.py --request-wait [--spacing 1.5] [--streams 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_cpu import WORK, build_model  # noqa: E402

CONVOLUTIONS = ("Convolution", "Deconvolution", "ConvolutionBackpropData")


def conv_flops(compiled) -> dict[str, float]:
    """FLOPs (2 x multiply-adds) of every convolution node of the compiled graph, by node name."""
    flops = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        kind = op.get_rt_info()["layerType"].astype(str)
        if kind not in CONVOLUTIONS:
            continue
        data, weights = (list(op.input(i).get_partial_shape().to_shape()) for i in range(2))
        out = list(op.get_output_partial_shape(0).to_shape())
        if kind == "Convolution":  # weights [O, I, k...]: every output voxel sums I x k^3 products
            flops[op.get_friendly_name()] = 2.0 * math.prod(out) * math.prod(weights[1:])
        else:  # transposed: weights [I, O, k...]: every input voxel feeds O x k^3 outputs
            flops[op.get_friendly_name()] = 2.0 * math.prod(data[2:]) * math.prod(weights)
    return flops


def compile_variant(net, shape: tuple, spec: dict, threads: int, cache: Path, streams: int = 1):
    """DeepSeg's export and one-stream properties, plus ``spec``: compile properties, or ``norms=whole-mean`` /
    ``decoder=unfolded`` (an export recipe of before)."""
    from deepseg.inference import backends, precompile

    spec = dict(spec)
    norms, decoder = spec.pop("norms", "split"), spec.pop("decoder", "folded")
    mean, fold = backends._spatial_mean, backends.folded_decoder
    if norms == "whole-mean":
        backends._spatial_mean = lambda t: t.mean(dim=tuple(range(2, t.dim())), keepdim=True)
    if decoder == "unfolded":
        backends.folded_decoder = lambda module: None
    try:
        stem = cache / f"v{precompile.EXPORT_VERSION}_{norms}_{decoder}_{'x'.join(map(str, shape[2:]))}"
        xml = backends.openvino_model_file(net, shape, stem)
    finally:
        backends._spatial_mean, backends.folded_decoder = mean, fold
    props = {**precompile.openvino_properties(2, threads), "NUM_STREAMS": streams,
             "INFERENCE_NUM_THREADS": threads * streams, "PERF_COUNT": True, **spec}
    return precompile.openvino().Core().compile_model(str(xml), "CPU", props)


def request_wait(compiled, shape: tuple) -> None:
    """Seconds to make an infer request with nothing running, and one second into another request's patch (once
    with one request warmed up, once with three, two streams' worth); and the resident memory requests cost
    before and at their first inference."""
    import psutil

    rss = lambda: psutil.Process().memory_info().rss / 2**20  # noqa: E731
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    def made_during_a_patch(busy) -> str:
        t0 = time.perf_counter()
        busy.start_async({0: x})
        time.sleep(1.0)
        t1 = time.perf_counter()
        made = compiled.create_infer_request()
        waited = time.perf_counter() - t1
        busy.wait()
        return made, f"{waited:.1f} s when asked 1.0 s into a patch that took {time.perf_counter() - t0:.1f} s"

    before = rss()
    t0 = time.perf_counter()
    busy = compiled.create_infer_request()
    idle = time.perf_counter() - t0
    spares = [compiled.create_infer_request() for _ in range(2)]
    made = rss()
    busy.infer({0: x})  # the first inference allocates the stream's memory: not part of what is timed
    first = rss()
    _, one_warm = made_during_a_patch(busy)
    for request in spares:
        request.infer({0: x})
    _, all_warm = made_during_a_patch(busy)
    print(f"making an infer request: {idle:.3f} s idle; {one_warm} (one request warmed up); {all_warm} (three "
          f"warmed up); load average {os.getloadavg()[0]:.1f}")
    print(f"resident memory: +{made - before:.0f} MiB for making three requests, +{first - made:.0f} MiB at the "
          f"first one's first inference")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spacing", type=float, default=3.0, choices=[3.0, 1.5])
    ap.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), help="default: the planned patch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads per stream")
    ap.add_argument("--streams", type=int, default=1,
                    help="streams, each computing its own copy of the patch at once (the sliding window's 2)")
    ap.add_argument("--ab", nargs="*", default=[], metavar="KEY=VALUE",
                    help="time a second compiled copy with these properties (or norms=whole-mean, "
                         "decoder=unfolded), interleaved")
    ap.add_argument("--torch", action="store_true", help="also compare the outputs with PyTorch float32's")
    ap.add_argument("--request-wait", action="store_true",
                    help="time making an infer request while idle and while a patch is computed, nothing else")
    args = ap.parse_args()
    import torch

    from deepseg.models.nnunet import load_nnunet_folder

    torch.set_num_threads(args.threads)
    model = load_nnunet_folder(build_model(args.spacing), folds=[0])
    shape = (1, 1, *(args.patch or model.window.patch_size))
    cache = WORK / "homes" / "ov_profile"
    cache.mkdir(parents=True, exist_ok=True)
    variants = {"DeepSeg": {}}
    if args.ab:
        variants[" ".join(args.ab)] = dict(kv.split("=", 1) for kv in args.ab)
    net = model.fold_networks()[0]
    compiled = {name: compile_variant(net, shape, spec, args.threads, cache, args.streams)
                for name, spec in variants.items()}
    if args.request_wait:
        request_wait(compiled["DeepSeg"], shape)
        return
    requests = {name: [c.create_infer_request() for _ in range(args.streams)] for name, c in compiled.items()}
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    cpu, wall = collections.defaultdict(list), collections.defaultdict(list)
    layers = {name: collections.defaultdict(list) for name in variants}
    outputs = {}
    for rep in range(args.reps):
        order = list(requests) if rep % 2 == 0 else list(reversed(requests))
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            for request in requests[name]:
                request.start_async({0: x})
            for request in requests[name]:
                request.wait()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append((time.process_time() - c0) / args.streams)
            outputs[name] = np.array(requests[name][0].get_output_tensor(0).data)
            for p in requests[name][0].get_profiling_info():
                layers[name][p.node_name, p.node_type, p.exec_type].append(p.real_time.total_seconds())
    print(f"## OpenVINO per-layer profile\n\nCommand: `python benchmarks/ov_profile.py {' '.join(sys.argv[1:])}`; "
          f"{args.spacing} mm network, one {'x'.join(map(str, shape[2:]))} patch per stream, {args.streams} "
          f"stream(s) x {args.threads} thread(s) at once, {args.reps} reps, load average {os.getloadavg()[0]:.1f} at the end.\n")
    for name in variants:
        flops = conv_flops(compiled[name])
        by_type: dict = collections.defaultdict(lambda: [0.0, 0, 0.0])
        for (node, kind, impl), times in layers[name].items():
            row = by_type[kind, impl]
            row[0] += min(times)
            row[1] += 1
            row[2] += flops.get(node, 0.0)
        total = sum(r[0] for r in by_type.values())
        conv_s = sum(r[0] for (kind, _), r in by_type.items() if kind in CONVOLUTIONS)
        print(f"### {name}\n\nPer patch: process CPU {min(cpu[name]):.2f} s min / {np.median(cpu[name]):.2f} median; "
              f"wall of the {args.streams} stream(s) {min(wall[name]):.2f} / {np.median(wall[name]):.2f} s. "
              f"Per-layer (first stream): sum of minima {total:.2f} s; "
              f"convolutions {sum(flops.values()) / 1e9:.0f} GFLOP, {100 * conv_s / total:.1f} % of the time "
              f"({sum(flops.values()) / 1e9 / conv_s:.0f} GFLOPS); **outside convolutions {total - conv_s:.2f} s "
              f"({100 * (total - conv_s) / total:.1f} %)**.\n\n| layer type (implementation) | layers | s | share | "
              "GFLOP | GFLOPS |\n|---|---|---|---|---|---|")
        for (kind, impl), (sec, count, fl) in sorted(by_type.items(), key=lambda kv: -kv[1][0]):
            if sec < 5e-4:
                continue
            rate = f"{fl / 1e9:.0f} | {fl / 1e9 / sec:.0f}" if fl else "- | -"
            print(f"| {kind} ({impl}) | {count} | {sec:.3f} | {100 * sec / total:.1f} % | {rate} |")
        print()
    if args.torch:
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        for name, out in outputs.items():
            print(f"`{name}` vs PyTorch float32: relative difference {np.linalg.norm(out - ref) / np.linalg.norm(ref):.1e}, "
                  f"argmax differs in {100 * float((out.argmax(1) != ref.argmax(1)).mean()):.4f} % of voxels.\n")
    for name in variants:
        print(f"`{name}` per rep: CPU s {', '.join(f'{t:.2f}' for t in cpu[name])}; wall s "
              f"{', '.join(f'{t:.2f}' for t in wall[name])}.\n")
    if args.ab:
        a, b = list(variants)
        diff = np.linalg.norm(outputs[b] - outputs[a]) / np.linalg.norm(outputs[a])
        flips = 100 * float((outputs[b].argmax(1) != outputs[a].argmax(1)).mean())
        print(f"A/B, interleaved, {args.reps} reps: `{b}` / DeepSeg = {min(cpu[b]) / min(cpu[a]):.3f} (CPU, min), "
              f"{np.median(cpu[b]) / np.median(cpu[a]):.3f} (CPU, median), {min(wall[b]) / min(wall[a]):.3f} (wall, "
              f"min); output relative difference {diff:.1e}, argmax differs in {flips:.4f} % of voxels.\n")


if __name__ == "__main__":
    main()
