"""``segment()``: the one entry point used by the CLI, the Python API and the Slicer modules.

load inputs -> model.prepare -> sliding-window logits -> restore to the input grid -> labels ->
model refinement -> optional clean-up -> atomic outputs (.seg.nrrd, label map, provenance JSON).
"""
from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..version import __version__
from ..errors import InputError
from ..io import AtomicOutputs
from ..models.base import SegmentationModel
from ..models.card import LabelInfo
from ..models.loaders import as_model
from ..options import SegmentOptions
from ..progress import CancelToken, Progress, ProgressCallback
from ..volume import Volume
from .channels import load_channels
from .stages import ModelRun, run_stages

log = logging.getLogger(__name__)

# the file types each output is written as (``write_segmentation``, ``io.write_volume``)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mgz")
SEGMENTATION_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")  # a label map as MGZ: not offered
COUNT_CHUNK = 1 << 20  # voxels per bincount in ``SegmentationResult.volumes``


@dataclass
class SegmentationResult:
    labels: Volume                      # uint16 label map on the first input's grid
    label_info: list[LabelInfo]         # one entry per output structure (value, name, colour, codes)
    probabilities: Optional[np.ndarray] = None  # (K, k, j, i) float32 if requested, K = classes incl. background
    provenance: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # kind -> written path
    uncertainty: Optional[object] = None  # inference.uncertainty.UncertaintyResult when requested
    run: Optional[ModelRun] = None  # every stage's network-space input, for explain to reuse

    def volumes(self, use_tg263: bool = False) -> list[dict]:
        """``{value, name, volume_ml}`` per output structure (what ``segment`` prints and ``batch`` tabulates)."""
        top = max((lab.value for lab in self.label_info), default=0)
        counts = np.zeros(top + 1, dtype=np.int64)
        flat = self.labels.array.ravel()
        for start in range(0, flat.size, COUNT_CHUNK):  # bincount widens to int64: 134 MB fresh memory for 256^3
            counts += np.bincount(flat[start:start + COUNT_CHUNK], minlength=top + 1)[:top + 1]
        ml = self.labels.voxel_volume_mm3 / 1000.0
        return [{"value": lab.value, "name": lab.display_name(use_tg263),
                 "volume_ml": round(float(counts[lab.value] * ml), 3)} for lab in self.label_info]



def software_versions(extra: Sequence[str] = ()) -> dict:
    """Versions of deepseg, Python and the libraries a result depends on (for provenance)."""
    import importlib.metadata as md

    out = {"deepseg": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "SimpleITK", "monai", "nnunetv2", "openvino", "onnxruntime", *extra):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _select_structures(model: SegmentationModel, structures: Optional[Sequence["str | int"]]) -> list[LabelInfo]:
    if not structures:
        return list(model.card.labels)
    return [model.card.label(s) for s in structures]  # raises ModelError naming valid labels


def segment(
    model: "str | Path | SegmentationModel",
    inputs: Sequence["str | Path | Volume"],
    *,
    output: "str | Path | None" = None,
    labelmap: "str | Path | None" = None,
    provenance_path: "str | Path | None" = None,
    options: Optional[SegmentOptions] = None,
    return_probabilities: bool = False,
    progress_callback: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    **option_values,
) -> SegmentationResult:
    """Segment ``inputs`` (one per model channel: paths or ``Volume``s) with ``model`` (id, folder or
    loaded model).  Writes ``output`` (.seg.nrrd or NIfTI), ``labelmap`` and a provenance JSON next to
    ``output`` only when everything succeeded; returns the result in memory either way.

    Run options come as ``options`` (a ``SegmentOptions``) and/or as keywords of the same names
    (``device``, ``tta``, ``folds``, ``overlap``, ``keep_largest``, ``min_component_ml``, ``fill_holes``,
    ``structures``, ``use_tg263``, ``uncertainty``, ``overwrite``); keywords override ``options``.
    ``uncertainty`` (True, or a path to write the map to) runs the ensemble member by member (folds x
    mirrorings) to get uncertainty maps and a per-structure review ranking from the same single run."""
    opts = SegmentOptions.build(options, **option_values)
    targets = output_paths(opts, output, labelmap, provenance_path)

    progress = Progress(progress_callback, cancel or CancelToken())
    started = time.time()
    # outputs claimed before any work: existing, unwritable or concurrently written ones are refused now
    with AtomicOutputs(opts.overwrite).reserve(*targets.values()) as out:
        for kind, path in targets.items():  # a file type no writer takes is refused before the model runs
            if kind != "provenance":
                _check_suffix(path, SEGMENTATION_SUFFIXES if kind == "segmentation" else IMAGE_SUFFIXES, kind)
        progress.stage("load")
        model, model_ref, folds = load(model, opts)
        channels, notes = load_channels([i if isinstance(i, Volume) else str(i) for i in inputs], model.card,
                                        opts.assume_spacing)
        prediction = run_model(model, channels, opts, folds, progress, probabilities=return_probabilities)
        labels, selected = postprocess(model, prediction.labels, channels[0], opts)
        label_volume = channels[0].with_array(labels, name=f"{channels[0].name}_segmentation")
        provenance = describe_run(model, model_ref, inputs, channels, opts, prediction, selected, notes, started)
        result = SegmentationResult(label_volume, selected, prediction.probabilities if return_probabilities else None,
                                    provenance, uncertainty=prediction.uncertainty, run=prediction.run)
        if targets:
            progress.stage("write")
            provenance["timings_s"] = {k: round(v, 3) for k, v in progress.timings.items()}
            write_outputs(result, targets, opts, progress, out)
    progress.finish()
    provenance["timings_s"] = {k: round(v, 3) for k, v in progress.timings.items()}
    return result


@dataclass
class Prediction:
    """What the model run gives: class probabilities (None when not asked for and the model labels
    without them) and labels on the input grid (refined by the model), every stage's network-space input
    (``run``), and the uncertainty maps when asked for."""

    probabilities: Optional[np.ndarray]
    labels: np.ndarray
    device: str
    run: ModelRun
    uncertainty: Optional[object] = None
    backend: str = "torch"  # the inference backend(s) the networks ran on ("auto" resolved, fallbacks counted)
    fallbacks: dict = field(default_factory=dict)  # network class -> "backend (why)" it did not convert to


def output_paths(opts: SegmentOptions, output=None, labelmap=None, provenance_path=None) -> dict[str, Path]:
    """The files a run writes, by kind; the provenance JSON goes next to the first of them by default."""
    unc = None if isinstance(opts.uncertainty, bool) else opts.uncertainty
    targets = {k: Path(v) for k, v in (("segmentation", output), ("labelmap", labelmap), ("uncertainty", unc)) if v}
    if targets:
        targets["provenance"] = Path(provenance_path) if provenance_path else _sidecar(next(iter(targets.values())))
    return targets


def load(model: "str | Path | SegmentationModel", opts: SegmentOptions):
    """The model (loaded by id or folder with the chosen folds) and the folds still to select at run time."""
    if isinstance(model, SegmentationModel):
        return model, model.card.id, opts.folds
    precompile_cached(model, opts)
    return as_model(model, opts.folds), str(model), None  # the loader already selected the folds


def precompile_cached(model: "str | Path", opts: SegmentOptions) -> None:
    """Start compiling the model's cached OpenVINO networks in the background (``inference.precompile``) when
    the run will likely use OpenVINO, before the model is loaded; a failure here never fails the run (the
    loader reports what is wrong with the model, the backend compiles what was not compiled here)."""
    from ..models.formats import compiled_inputs
    from ..models.store import resolve
    from .precompile import cpu_threads, likely_openvino, start

    try:
        if likely_openvino(opts.backend, opts.device):
            threads = cpu_threads()  # a CT has more patches than threads: one stream per thread
            for identity, shape in compiled_inputs(resolve(model), opts.folds):
                start(identity, shape, threads, threads)
    except Exception as exc:  # noqa: BLE001 - any failure: the model loads and compiles as without this
        log.debug("no background compilation for %s (%s)", model, exc)


def run_model(model: SegmentationModel, channels: Sequence[Volume], opts: SegmentOptions,
              folds: Optional[Sequence] = None, progress: Optional[Progress] = None,
              probabilities: bool = True) -> Prediction:
    """Preprocess, sliding-window inference (folds x mirrorings), restore to the input grid, labels.
    With ``opts.uncertainty`` the ensemble runs member by member to also measure its disagreement.
    ``probabilities=False``: the caller needs only the labels, so models that can skip the input-grid
    probability map do (``SegmentationModel.restore_labels``)."""
    from .backends import resolve_backend, using
    from .device import resolve_device

    progress = progress or Progress()
    dev = resolve_device(opts.device)
    backend = resolve_backend(opts.backend, dev)
    with using(backend) as use:
        if opts.uncertainty:
            from .uncertainty import uncertainty_maps

            unc = uncertainty_maps(model, channels, tta=opts.tta, folds=folds, device=dev, overlap=opts.overlap,
                                   progress=progress)
            progress.stage("postprocess")
            return Prediction(unc.probabilities, unc.labels.array, str(dev), unc.run, unc, use.ran,
                              use.fallbacks)
        run = run_stages(model, channels, device=dev, tta=opts.tta, overlap=opts.overlap, folds=folds,
                         progress=progress, probabilities=probabilities)
    return Prediction(run.probabilities, run.labels, str(dev), run, backend=use.ran, fallbacks=use.fallbacks)


def postprocess(model: SegmentationModel, labels: np.ndarray, reference: Volume,
                opts: SegmentOptions) -> tuple[np.ndarray, list[LabelInfo]]:
    """Clean-up (largest component, small components, holes) and the structures kept: uint16 labels."""
    from .postprocess import postprocess_labels

    selected = _select_structures(model, opts.structures)
    labels = postprocess_labels(labels, reference.spacing, keep_largest=opts.keep_largest,
                                min_component_ml=opts.min_component_ml, fill_holes=opts.fill_holes)
    if opts.structures:
        keep = np.zeros(int(max(lab.value for lab in model.card.labels)) + 1, dtype=bool)
        keep[[lab.value for lab in selected]] = True
        labels = np.where(keep[labels], labels, 0)
    return labels.astype(np.uint16, copy=False), selected  # postprocess_labels returned a copy


def describe_run(model: SegmentationModel, model_ref: str, inputs: Sequence, channels: Sequence[Volume],
                 opts: SegmentOptions, prediction: Prediction, selected: Sequence[LabelInfo],
                 notes: list, started: float) -> dict:
    """The provenance record: model, inputs, settings, software, notes (and the uncertainty summary)."""
    card = model.card
    settings = {k: v for k, v in opts.settings().items() if k != "overwrite"}
    provenance = {
        "model": {"ref": model_ref, "id": card.id, "version": card.version, "format": card.format,
                  "title": card.title, "license": card.license, "citation": card.citation},
        "inputs": [{"name": spec.name, "source": str(src) if not isinstance(src, Volume) else src.name,
                    "shape_kji": list(ch.shape), "spacing": list(ch.spacing)}
                   for spec, src, ch in zip(card.inputs, inputs, channels)],
        "settings": {**settings, "device": prediction.device, "backend": prediction.backend,
                     "structures": [lab.name for lab in selected]},
        "notes": notes + [f"{name} did not convert to {why}; it ran in PyTorch."
                          for name, why in prediction.fallbacks.items()],
        "software": software_versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    }
    if prediction.uncertainty is not None:
        from .uncertainty import uncertainty_summary

        provenance["uncertainty"] = uncertainty_summary(prediction.uncertainty)
    return provenance


def write_outputs(result: SegmentationResult, targets: dict[str, Path], opts: SegmentOptions,
                  progress: Progress, out: AtomicOutputs) -> None:
    """Write every target into ``out`` (claimed at the start of the run): nothing appears unless every file
    was written and the run was not cancelled, when ``out``'s ``with`` block ends."""
    from ..io import write_volume

    writers = {
        "segmentation": lambda p: write_segmentation(p, result.labels, result.label_info, opts.use_tg263),
        "labelmap": lambda p: write_volume(result.labels, p),
        "uncertainty": lambda p: write_volume(result.uncertainty.maps[result.uncertainty.primary], p),
        "provenance": lambda p: Path(p).write_text(json.dumps(result.provenance, indent=2)),
    }
    for kind, path in targets.items():
        result.outputs[kind] = out.add(path, writers[kind])
    progress.cancel.raise_if_cancelled()


def _sidecar(path: Path) -> Path:
    from ..io import full_suffix

    return path.with_name(path.name[: -len(full_suffix(path))] + ".json") if full_suffix(path) else path.with_suffix(".json")


def write_segmentation(path: "str | Path", labels: Volume, label_info: Sequence[LabelInfo], use_tg263: bool = False) -> None:
    """A segmentation in the format the path asks for: ``.seg.nrrd`` (Slicer) or a label-map image."""
    from ..export.seg_nrrd import write_seg_nrrd
    from ..io import full_suffix, write_volume

    _check_suffix(Path(path), SEGMENTATION_SUFFIXES, "segmentation")
    if full_suffix(Path(path)).lower() == ".seg.nrrd":
        write_seg_nrrd(path, labels, label_info, use_tg263)
    else:
        write_volume(labels, path)


def _check_suffix(path: Path, allowed: tuple[str, ...], kind: str) -> None:
    from ..io import full_suffix

    if full_suffix(path).lower() not in allowed:
        raise InputError(f"Cannot write a {kind} to {path}: DeepSeg has no writer for that file type.",
                         "Use one of " + ", ".join(allowed) + ".")
