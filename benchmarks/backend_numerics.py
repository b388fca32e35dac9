"""Where OpenVINO's float32 result departs from PyTorch's, stage by stage, on the TotalSegmentator-sized nnU-Net.

One crop of the 1.5 mm benchmark input (``realistic_cpu.py``'s model and data; random weights), preprocessed
by DeepSeg, runs through the network in float64 (the reference), in PyTorch float32, and in OpenVINO as
DeepSeg compiles it for a sliding window (two single-threaded streams). Every encoder and decoder stage's
output and the logits are compared with float64: relative RMS error ``||a - ref|| / ||ref||`` and the share of
voxels whose argmax differs. ``--norms whole-mean`` exports the instance norms with whole-activation means
(the pattern OpenVINO fuses into its MVN operation; DeepSeg's export until EXPORT_VERSION 3) to compare. The
decoder's stage outputs are read from the folded steps when DeepSeg exports it folded (``folded_decoder``).

    python benchmarks/backend_numerics.py [--crop 128 80 112] [--norms split|whole-mean]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_cpu import WORK, build_model  # noqa: E402

from deepseg.inference.folded_decoder import FoldedUNetDecoder  # noqa: E402


class StageOutputs(nn.Module):
    """A PlainConvUNet returning every encoder stage's output, every decoder stage's output and the logits."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor) -> tuple:
        skips = []
        for stage in self.unet.encoder.stages:
            x = stage(x)
            skips.append(x)
        dec, outs, low = self.unet.decoder, list(skips), skips[-1]
        if isinstance(dec, FoldedUNetDecoder):  # as exported (backends.export_ready): the same stage outputs
            for i, step in enumerate(dec.steps):
                low = step(low, skips[-(i + 2)])
                outs.append(low)
            return (*outs, dec.head(low))
        for i, stage in enumerate(dec.stages):
            low = stage(torch.cat((dec.transpconvs[i](low), skips[-(i + 2)]), 1))
            outs.append(low)
        return (*outs, dec.seg_layers[-1](low))


def crop_input(model, crop: list[int]) -> np.ndarray:
    """The centre ``crop`` (z y x) of the 1.5 mm benchmark input, preprocessed as DeepSeg does."""
    import SimpleITK as sitk

    from deepseg.io.convert import volume_from_sitk

    image = next((WORK / "inputs").glob("box*_1p5mm_0000.nii.gz"))  # written by realistic_cpu.py --only 1.5mm
    prepared = model.prepare([volume_from_sitk(sitk.ReadImage(str(image)))]).image
    start = [(n - c) // 2 for n, c in zip(prepared.shape[1:], crop)]
    return np.ascontiguousarray(prepared[None, :, start[0]:start[0] + crop[0], start[1]:start[1] + crop[1],
                                         start[2]:start[2] + crop[2]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, nargs=3, default=[128, 80, 112], metavar=("Z", "Y", "X"))
    ap.add_argument("--norms", choices=["split", "whole-mean"], default="split")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from deepseg.inference import backends
    from deepseg.models.nnunet.model import load_nnunet_folder

    if args.norms == "whole-mean":
        backends._spatial_mean = lambda t: t.mean(dim=tuple(range(2, t.dim())), keepdim=True)
    model = load_nnunet_folder(build_model(1.5), folds=[0])
    net = StageOutputs(copy.deepcopy(model.fold_networks()[0])).eval()
    for m in net.modules():  # the stage outputs are kept: no activation may overwrite its input
        if hasattr(m, "inplace"):
            m.inplace = False
    x = crop_input(model, args.crop)
    names = [f"encoder {i}" for i in range(len(net.unet.encoder.stages))] + \
            [f"decoder {i}" for i in range(len(net.unet.decoder.stages))] + ["logits"]
    outs = {}
    for name, dtype in (("float64", torch.float64), ("PyTorch float32", torch.float32)):
        t0 = time.perf_counter()
        with torch.inference_mode():
            outs[name] = [o.double().numpy() for o in copy.deepcopy(net).to(dtype)(torch.from_numpy(x).to(dtype))]
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        run = backends.BackendNetwork(net, "openvino", cache=Path(cache)).compile(x.shape, streams=2)
        t0 = time.perf_counter()
        result = run.compiled.create_infer_request().infer({0: x})
        outs["OpenVINO"] = [np.asarray(result[i], dtype=np.float64) for i in range(len(names))]
        print(f"<!-- OpenVINO: {time.perf_counter() - t0:.0f} s -->", flush=True)
    print(f"Crop {'x'.join(map(str, args.crop))} (z y x) of the 1.5 mm input, instance norms exported with "
          f"`{args.norms}` means; relative RMS error vs float64:\n")
    print("| stage output | PyTorch float32 | OpenVINO (2 single-thread streams) |\n|---|---|---|")
    ref = outs["float64"]
    for i, name in enumerate(names):
        cells = [f"{np.linalg.norm(outs[e][i] - ref[i]) / np.linalg.norm(ref[i]):.2e}"
                 for e in ("PyTorch float32", "OpenVINO")]
        print(f"| {name} ({ref[i].shape[1]} channels) | " + " | ".join(cells) + " |")
    top = ref[-1][0].argmax(0)
    gap = np.diff(np.sort(ref[-1][0], axis=0)[-2:], axis=0)[0]
    print(f"\nfloat64 top-2 logit gap: median {np.median(gap):.3f}; below 1e-3 in {100 * (gap < 1e-3).mean():.2f} % "
          "of the voxels.\n\nargmax differs from float64's: " + ", ".join(
              f"{e} {100 * (outs[e][-1][0].argmax(0) != top).mean():.3f} %" for e in ("PyTorch float32", "OpenVINO"))
          + f"; OpenVINO vs PyTorch float32 {100 * (outs['OpenVINO'][-1][0].argmax(0) != outs['PyTorch float32'][-1][0].argmax(0)).mean():.3f} %.")


if __name__ == "__main__":
    main()
