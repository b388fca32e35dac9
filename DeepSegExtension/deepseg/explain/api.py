"""``explain()``: why did the model draw this structure?  A [0, 1] heat map on the input grid.

Runs the model once (the ordinary ``segment`` pipeline) to get the predicted structure, picks the
stage whose networks decide it (a cascade's lesion stage for lesions), maps the target region into
that stage's network space (``Stage.network_coordinates``), computes the attribution patch by patch
along inference's sliding window on the input that stage already ran on, and maps the result back
with ``Stage.to_input_grid``.  Occlusion (``occlusion.py``) needs none of that: it re-runs the model
on the input with blocks removed.

Each model format has a default method, chosen by measured faithfulness (deletion of the top 5 %
against the random and structure-distance baselines, ``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..models.base import SegmentationModel, Stage, WindowSpec
from ..models.loaders import as_model
from ..options import EXPLAIN_METHODS as METHODS
from ..options import PERTURBATION_METHODS, SegmentOptions
from ..progress import CancelToken, Progress, ProgressCallback
from ..volume import Volume
from .cam import cam_network_space
from .grid import region_to_network
from .layers import LayerInfo, default_layers, probe_layers, resolve_layers


@dataclass
class ExplanationResult:
    """``heatmap``: float32 Volume on the first input's grid, in [0, 1]; ``labels``: the prediction
    explained; ``region``: the target region (input grid); ``info``: method, layers, timings...;
    ``uncertainty``: the prediction's ``UncertaintyResult`` when the options asked for it."""

    heatmap: Volume
    labels: Volume
    region: np.ndarray
    info: dict = field(default_factory=dict)
    uncertainty: Optional[object] = None


def _region_mask(region: "str | Path | Volume | np.ndarray", reference: Volume, value: int) -> np.ndarray:
    """A user region (label map / .seg.nrrd / array) as a boolean mask on ``reference``'s grid.  A
    multi-label map that contains the explained label's value selects that value, else all non-zero."""
    if isinstance(region, np.ndarray):
        arr = region
        if arr.shape != reference.shape:
            raise InputError(f"The region array has shape {arr.shape}, the image {reference.shape}.",
                             "Give a region on the input image's grid.")
    else:
        if not isinstance(region, Volume):
            from ..io import full_suffix, read_volume

            if full_suffix(Path(region)).lower() == ".seg.nrrd":
                from ..export.seg_nrrd import read_seg_nrrd

                region = read_seg_nrrd(region)[0]
            else:
                region = read_volume(region)
        if not region.same_grid(reference):
            from ..io import resample_onto

            region = resample_onto(region, reference, nearest=True)
        arr = region.array
    arr = np.asarray(arr)
    mask = arr == value if np.any(arr == value) and value != 0 else arr != 0
    if not mask.any():
        raise InputError("The explanation region is empty.", "Give a region with at least one non-zero voxel.")
    return mask


MAX_PATCH_VOXELS = 128 ** 3
HALO_TILE = 32


def explain_window(stage: Stage) -> WindowSpec:
    """The windows the explanation runs on: the stage's own, except for tile-exact whole-volume
    networks (MeshNet: a ``halo`` = receptive-field radius and a window too large to back-propagate
    through), which get small tiles with that halo, so the gradients of each tile are exact."""
    w, halo = stage.window, getattr(stage, "halo", None)
    if isinstance(halo, int) and halo > 0 and int(np.prod(w.patch_size)) > MAX_PATCH_VOXELS \
            and not any(w.output_margin):
        return WindowSpec((HALO_TILE + 2 * halo,) * 3, overlap=0.0, blend="constant", mirror_axes=w.mirror_axes,
                          output_margin=(halo,) * 3)
    return w


# format -> default method, from the faithfulness measurements in benchmarks/RESULTS.md (else Grad-CAM):
# brainchop MeshNet: occlusion's top 5 % deletes 4.3x / 5.1x more Dice than the random / distance baselines (imputed
# removal); pyliverlesionseg: occlusion's top 5 % deletes 0.056 against 0.002 (random) and 0.006 (distance);
# nnU-Net: Grad-CAM deletes more than occlusion at 5 % (0.88 vs 0.16 on the fixture)
DEFAULT_METHODS: dict[str, str] = {"brainchop-meshnet": "occlusion", "pyliverlesionseg": "occlusion"}


def default_method(model: SegmentationModel) -> str:
    """The explanation method ``explain`` uses for ``model`` when none is given."""
    return DEFAULT_METHODS.get(model.card.format, "gradcam")


def list_layers(model: "str | Path | SegmentationModel") -> list[LayerInfo]:
    """Every layer name ``--layer`` accepts for this model (probe pass on one patch)."""
    model = as_model(model)
    return probe_layers(model.fold_networks()[0], explain_window(model).patch_size, len(model.card.inputs))[0]


def explain(
    model: "str | Path | SegmentationModel",
    inputs: Sequence["str | Path | Volume"],
    segment: "str | int",
    *,
    method: Optional[str] = None,
    layer: "str | Sequence[str] | None" = None,
    region: "str | Path | Volume | np.ndarray | None" = None,
    options: Optional[SegmentOptions] = None,
    progress: "Progress | ProgressCallback | None" = None,
    cancel: Optional[CancelToken] = None,
    **option_values,
) -> ExplanationResult:
    """Attribution map of ``segment`` (label name, TG-263 name or value) for ``inputs``.

    ``method``: gradcam, gradcam++, hirescam, layer-sum or occlusion (default: ``default_method``);
    ``layer``: module name(s) to take a gradient map from (default per architecture, see ``list_layers``); ``region``: explain this region
    instead of the predicted segment.  Run options (``device``, ``tta``, ``folds``, ``overlap``,
    ``uncertainty``...) as in ``deepseg.segment``: the prediction explained is the one ``segment``
    gives with them, and its uncertainty maps come from that same run.
    """
    from ..inference.channels import load_channels
    from ..inference.device import resolve_device
    from ..inference.pipeline import segment as run_segment

    if method is not None and method not in METHODS:
        raise InputError(f"Unknown explanation method {method!r}.", "Choose one of: " + ", ".join(METHODS) + ".")
    if not isinstance(progress, Progress):
        progress = Progress(progress, cancel or CancelToken())
    opts = SegmentOptions.build(options, **option_values)
    model = as_model(model, opts.folds)
    method = method or default_method(model)
    label = model.card.label(segment)
    stage = model.stage_of(label.value)
    dev = resolve_device(opts.device)
    overlap = opts.overlap
    t0 = time.perf_counter()

    channels, _ = load_channels(list(inputs), model.card)
    reference = channels[0]
    seg = run_segment(model, channels, options=opts.replace(overwrite=False, device=str(dev),
                                                            uncertainty=bool(opts.uncertainty)),
                      progress_callback=progress.callback, cancel=progress.cancel)
    t_segment = time.perf_counter() - t0
    if region is None:
        mask = seg.labels.array == label.value
        if not mask.any():
            raise InputError(f"The model predicted no '{label.name}' voxels in this image, so there is nothing "
                             "to explain.", "Pass --region with the region to explain instead.")
    else:
        mask = _region_mask(region, reference, label.value)

    progress.stage("explain")
    if method in PERTURBATION_METHODS:
        from .occlusion import occlusion_map

        heat = occlusion_map(model, channels, mask, model.class_channel(label.value), device=dev, tta=opts.tta,
                             overlap=overlap, progress=progress)
        details = {"layers": [], "removal": "impute", "raw_peak": float(heat.max())}
    else:
        heat, details = _cam_map(model, seg.run, stage, mask, label.value, method, layer, opts, dev, progress)
    peak = float(heat.max())
    if peak > 0:
        heat = heat / peak
    progress.finish()
    info = {
        "model": model.card.id, "segment": label.name, "value": label.value, "method": method, **details,
        "region": "predicted segment" if region is None else "user region", "region_voxels": int(mask.sum()),
        "all_zero": peak <= 0, "device": str(dev),
        "seconds": {"segment": round(t_segment, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    return ExplanationResult(reference.with_array(heat.astype(np.float32), name=f"{label.name} {method}"),
                             seg.labels, mask, info, seg.uncertainty)


def _cam_map(model: SegmentationModel, run, stage, mask: np.ndarray, value: int, method: str, layer,
             opts: SegmentOptions, dev, progress: Progress) -> tuple[np.ndarray, dict]:
    """A gradient map (``cam.py``) on the input grid in [0, 1], and what it was computed from."""
    prepared = run.prepared[model.stages.index(stage)]  # what the stage ran on: never prepared again
    region_net = region_to_network(stage, prepared, mask)
    if not region_net.any():
        raise InputError("The explanation region lies outside the part of the image the model sees.",
                         "Choose a region inside the image's field of view.")
    window = explain_window(stage)
    networks = stage.fold_networks(opts.folds if stage is model else None)
    candidates, _ = probe_layers(networks[0], window.patch_size, prepared.image.shape[0], dev)
    if layer:
        layers = resolve_layers(networks[0], candidates, [layer] if isinstance(layer, str) else list(layer))
    else:
        layers = default_layers(networks[0], candidates, method)
    heat_net = cam_network_space(networks, prepared.image, window, stage.class_channel(value),
                                 stage.num_classes, region_net, layers, method, device=dev, overlap=opts.overlap,
                                 progress=progress)
    peak = float(heat_net.max())
    heat = np.clip(stage.to_input_grid(heat_net[None] / peak, prepared)[0], 0, 1) if peak > 0 \
        else np.zeros(mask.shape)
    return heat, {"layers": layers, "network_region_voxels": int(region_net.sum()), "stage": stage.name,
                  "raw_peak": peak, "patch": list(window.patch_size)}
