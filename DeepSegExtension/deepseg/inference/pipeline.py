"""``segment()``: the one entry point used by the CLI, the Python API and the Slicer modules.

load inputs -> model.prepare -> sliding-window logits -> restore to the input grid -> labels ->
model refinement -> optional clean-up -> atomic outputs (.seg.nrrd, label map, provenance JSON).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..models.base import SegmentationModel
from ..models.card import LabelInfo
from ..progress import CancelToken, Progress, ProgressCallback
from ..volume import Volume
from .channels import load_channels
from .postprocess import postprocess_labels


@dataclass
class SegmentationResult:
    labels: Volume                      # uint16 label map on the first input's grid
    label_info: list[LabelInfo]         # one entry per output structure (value, name, colour, codes)
    probabilities: Optional[np.ndarray] = None  # (K, k, j, i) float32 if requested, K = classes incl. background
    provenance: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # kind -> written path
    uncertainty: Optional[object] = None  # explain.uncertainty.UncertaintyResult when requested


def _software() -> dict:
    import importlib.metadata as md

    out = {"deepseg": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "SimpleITK", "monai", "nnunetv2"):
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
    device: str = "auto",
    tta: bool = False,
    folds: Optional[Sequence[int]] = None,
    overlap: Optional[float] = None,
    keep_largest: bool = False,
    min_component_ml: float = 0.0,
    fill_holes: bool = False,
    structures: Optional[Sequence["str | int"]] = None,
    use_tg263: bool = False,
    return_probabilities: bool = False,
    uncertainty: "bool | str | Path" = False,
    overwrite: bool = False,
    progress_callback: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> SegmentationResult:
    """Segment ``inputs`` (one per model channel: paths or ``Volume``s) with ``model`` (id, folder or
    loaded model).  Writes ``output`` (.seg.nrrd or NIfTI), ``labelmap`` and a provenance JSON next to
    ``output`` only when everything succeeded; returns the result in memory either way.

    ``uncertainty`` (True, or a path to write the map to) runs the ensemble member by member (folds x
    mirrorings) to get uncertainty maps and a per-structure review ranking from the same single run."""
    from ..io import AtomicOutputs, write_volume
    from ..models.loaders import load_model

    progress = Progress(progress_callback, cancel or CancelToken())
    started = time.time()
    unc_path = None if isinstance(uncertainty, bool) else uncertainty
    writes = output or labelmap or unc_path
    if writes:
        AtomicOutputs(overwrite).check(output, labelmap, unc_path,
                                       provenance_path or _sidecar(Path(writes)))
    progress.stage("load")
    if not isinstance(model, SegmentationModel):
        model_ref = str(model)
        model = load_model(model, folds=folds)
        folds = None  # the loader already selected them
    else:
        model_ref = model.card.id
    selected = _select_structures(model, structures)
    channels, notes = load_channels([i if isinstance(i, Volume) else str(i) for i in inputs], model.card)
    reference = channels[0]

    from .device import resolve_device

    dev = resolve_device(device)
    unc = None
    if uncertainty:
        from ..explain.uncertainty import uncertainty_maps

        unc = uncertainty_maps(model, channels, tta=tta, folds=folds, device=dev, overlap=overlap, progress=progress)
        probabilities, labels = unc.probabilities, unc.labels.array
        progress.stage("postprocess")
    else:
        progress.stage("preprocess")
        prepared = model.prepare(channels)
        progress.stage("infer")
        logits = model.predict_logits(prepared, device=dev, tta=tta, overlap=overlap, progress=progress, folds=folds)
        progress.stage("postprocess")
        probabilities = model.restore(logits, prepared)
        labels = model.labels_from_probabilities(probabilities)
        labels = model.refine(labels, probabilities, reference)
    labels = postprocess_labels(labels, reference.spacing, keep_largest=keep_largest,
                                min_component_ml=min_component_ml, fill_holes=fill_holes)
    if structures:
        keep = np.zeros(int(max(lab.value for lab in model.card.labels)) + 1, dtype=bool)
        keep[[lab.value for lab in selected]] = True
        labels = np.where(keep[labels], labels, 0)
    label_volume = reference.with_array(labels.astype(np.uint16), name=f"{reference.name}_segmentation")

    provenance = {
        "model": {"ref": model_ref, "id": model.card.id, "version": model.card.version, "format": model.card.format,
                  "title": model.card.title, "license": model.card.license, "citation": model.card.citation},
        "inputs": [{"name": spec.name, "source": str(src) if not isinstance(src, Volume) else src.name,
                    "shape_kji": list(ch.shape), "spacing": list(ch.spacing)}
                   for spec, src, ch in zip(model.card.inputs, inputs, channels)],
        "settings": {"device": str(dev), "tta": tta, "folds": folds, "overlap": overlap,
                     "keep_largest": keep_largest, "min_component_ml": min_component_ml, "fill_holes": fill_holes,
                     "structures": [lab.name for lab in selected]},
        "notes": notes, "software": _software(), "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    }
    if unc is not None:
        from ..explain.uncertainty import uncertainty_summary

        provenance["uncertainty"] = uncertainty_summary(unc)
    result = SegmentationResult(label_volume, selected, probabilities if return_probabilities else None, provenance,
                                uncertainty=unc)

    if writes:
        progress.stage("write")
        provenance["timings_s"] = {k: round(v, 3) for k, v in progress.timings.items()}
        with AtomicOutputs(overwrite=overwrite) as out:  # nothing appears unless every file was written
            if output:
                result.outputs["segmentation"] = out.add(
                    output, lambda p: write_segmentation(p, label_volume, selected, use_tg263))
            if labelmap:
                result.outputs["labelmap"] = out.add(labelmap, lambda p: write_volume(label_volume, p))
            if unc_path:
                result.outputs["uncertainty"] = out.add(unc_path, lambda p: write_volume(unc.maps[unc.primary], p))
            result.outputs["provenance"] = out.add(
                provenance_path or _sidecar(Path(writes)),
                lambda p: Path(p).write_text(json.dumps(provenance, indent=2)))
            progress.cancel.raise_if_cancelled()
    progress.finish()
    provenance["timings_s"] = {k: round(v, 3) for k, v in progress.timings.items()}
    return result


def _sidecar(path: Path) -> Path:
    from ..io import full_suffix

    return path.with_name(path.name[: -len(full_suffix(path))] + ".json") if full_suffix(path) else path.with_suffix(".json")


def write_segmentation(path: "str | Path", labels: Volume, label_info: Sequence[LabelInfo], use_tg263: bool = False) -> None:
    """A segmentation in the format the path asks for: ``.seg.nrrd`` (Slicer) or a label-map image."""
    from ..export.seg_nrrd import write_seg_nrrd
    from ..io import full_suffix, write_volume

    if full_suffix(Path(path)).lower() == ".seg.nrrd":
        write_seg_nrrd(path, labels, label_info, use_tg263)
    elif full_suffix(Path(path)).lower() in {".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"}:
        write_volume(labels, path)
    else:
        raise InputError(f"Cannot write a segmentation to {path}.", "Use .seg.nrrd, .nii.gz, .nrrd or .mha.")
