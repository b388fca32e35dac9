"""Brainchop MeshNet models (TensorFlow.js folders: ``model.json`` + shards + ``colormap.json``).

Pipeline, as brainchop runs these networks (settings checked against FreeSurfer labels, see
``benchmarks/RESULTS.md``):

1. ``prepare``: scale intensities of the input to [0, 1] (min-max or between two quantiles), conform
   to 256^3 at 1 mm in LIA orientation (``models/conform.py``), put the array in the network's
   axis order (conformed i, j, k) and crop to the bounding box of the head/brain plus a margin
   (everything outside is background, as brainchop does);
2. ``predict_logits``: run the network in slabs with a halo equal to its receptive-field radius
   (``inference/halo_tiles.py``), which reproduces the whole-crop pass exactly with bounded
   memory; networks with instance normalisation (mindgrab) need the whole crop in one pass;
3. ``restore``: softmax, paste into the conformed volume (background outside the crop) and
   resample the probabilities linearly onto the input grid (a copy when the input is conformed);
   ``restore_labels`` gives the same labels without that probability map (argmax over the crop, or
   a running argmax over the resampled channels) when only the labels are asked for.

Per-model settings live in ``card.preprocessing`` (``deepseg-card.json`` can override them).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError, ModelError
from ..inference.argmax import RunningArgmax, index_dtype
from ..inference.preprocess import normalize
from ..progress import Progress
from ..resources import resource_path
from ..volume import Volume, check_image
from .base import Prepared, SegmentationModel, WindowSpec, fill_values, select_folds
from .card import ANATOMICAL_STRUCTURE, CARD_FILE, TISSUE, Code, InputSpec, LabelInfo, ModelCard
from .conform import conformed_grid, resample_to
from .networks.meshnet import MeshNet
from .tfjs import read_tfjs_model

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    # intensity scaling to [0, 1] (an ``inference.preprocess.normalize`` spec); brainchop's default
    "normalization": {"method": "minmax"},
    "axes": "ijk",               # network D, H, W = conformed i, j, k
    "crop_threshold": 0.1,       # crop to the box of voxels above this scaled intensity...
    "crop_margin": 8,            # ...grown by this many voxels
    "max_voxels": 10_000_000,    # input voxels per slab: bounds memory (~0.9 GB per 21-channel activation)
    "keep_largest": False,       # keep only the largest connected component of each label (brainchop's clean-up)
}

_QUANTILE_5_95 = {"normalization": {"method": "percentile", "lower": 5, "upper": 95, "clip": False}}
# What each published brainchop model is and how brainchop runs it (its model list: min-max or 5-95 %
# quantile scaling, crop padding); overrides of DEFAULTS.  For model18cls, min-max scored higher than
# 2-98 % percentile scaling against FreeSurfer (mean Dice 0.624 vs 0.596 on norm.mgz).
KNOWN: dict[str, dict[str, Any]] = {
    "model18cls": {"title": "Brainchop MeshNet: 17 brain structures (FreeSurfer aseg subset)",
                   "inputs": [{"name": "T1", "modality": "MR", "pattern": "*t1*"}]},
    "model30chan50cls": {"title": "Brainchop MeshNet: 50-class aparc+aseg parcellation",
                         "preprocessing": _QUANTILE_5_95,
                         "inputs": [{"name": "T1", "modality": "MR", "pattern": "*t1*"}]},
    "mindgrab": {"title": "Brainchop MindGrab: brain extraction (skull stripping), any modality",
                 "preprocessing": {**_QUANTILE_5_95, "crop_margin": 20, "keep_largest": True},
                 "inputs": [{"name": "image", "modality": "MR", "pattern": "*"}]},
    "model5_gw_ae": {"title": "Brainchop MeshNet (5 channels): grey and white matter",
                     "colormap": "colormap3.json",
                     "inputs": [{"name": "T1", "modality": "MR", "pattern": "*t1*"}]},
}

CITATION = ("Masoud M, Hu F, Plis S. Brainchop: in-browser MRI volumetric segmentation and rendering. "
            "J Open Source Softw 2023;8(83):5098. Fedorov A, et al. End-to-end learning of brain tissue "
            "segmentation from imperfect labeling. IJCNN 2017.")


def _norm_name(name: str) -> str:
    return name.strip().lower().replace("*", "").replace(" ", "-").replace("_", "-")


def labels_from_colormap(path: Path) -> list[LabelInfo]:
    """Brainchop ``colormap.json`` (R, G, B lists and names, index = label value) -> ``LabelInfo`` list
    without the background, with SNOMED CT codes from ``Resources/terminology/brainchop.json``."""
    try:
        cmap = json.loads(path.read_text())
        names, rgb = cmap["labels"], list(zip(cmap["R"], cmap["G"], cmap["B"]))
    except FileNotFoundError as exc:
        raise ModelError(f"{path} is missing.", "A brainchop model folder needs colormap.json next to model.json.") \
            from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a brainchop colormap ({exc!r}).", "Restore the model's colormap.json.") \
            from exc
    codes = json.loads(resource_path("terminology/brainchop.json").read_text())["labels"]
    labels = []
    for value, (name, color) in enumerate(zip(names, rgb)):
        if value == 0:
            continue
        key = _norm_name(name)
        entry = codes.get(key) or (codes.get("ctx-*") if key.startswith("ctx-") else None) or {}
        tissue = key in {"white-matter", "grey-matter", "cerebral-white-matter", "csf"}
        labels.append(LabelInfo(value=value, name=name.strip().replace("*", ""),
                                color=tuple(int(c) for c in color),  # type: ignore[arg-type]
                                category=TISSUE if tissue else ANATOMICAL_STRUCTURE,
                                type=Code.from_json(entry.get("type")), tg263=entry.get("tg263")))
    return labels


def freesurfer_reference(freesurfer_labels: np.ndarray, labels: Sequence[LabelInfo]) -> np.ndarray:
    """A FreeSurfer label map (aseg / aparc+aseg ids) recoded to these brainchop ``labels`` (uint16),
    via the ``freesurfer`` ids / ``freesurfer_ranges`` of ``Resources/terminology/brainchop.json``;
    ids no label claims become 0.  Labels are applied in order, so later ones win on overlap."""
    table = json.loads(resource_path("terminology/brainchop.json").read_text())["labels"]
    out = np.zeros(freesurfer_labels.shape, dtype=np.uint16)
    for lab in labels:
        entry = table.get(_norm_name(lab.name), {})
        hit = np.isin(freesurfer_labels, entry.get("freesurfer", []))
        for lo, hi in entry.get("freesurfer_ranges", []):
            hit |= (freesurfer_labels >= lo) & (freesurfer_labels <= hi)
        out[hit] = lab.value
    return out


class MeshNetModel(SegmentationModel):
    """A brainchop MeshNet with brainchop's conform/normalise/crop preprocessing."""

    def __init__(self, card: ModelCard, network: MeshNet) -> None:
        self.card = card
        self.networks = {"0": network}  # one weight set: fold "0"
        self.settings = {**DEFAULTS, **card.preprocessing}
        radius = network.receptive_radius
        self.halo = radius  # None: the network normalises globally, so it cannot be tiled
        size = 128 if radius is None else 128 + 2 * radius
        self.window = WindowSpec(patch_size=(size, size, size), overlap=0.0, blend="constant", mirror_axes=())

    # --- 1. preprocessing -----------------------------------------------------------------
    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        self.check_channels(channels)
        volume = channels[0]
        check_image(volume)
        grid = conformed_grid(volume)
        # scale first, so the statistics see the scanned field of view, not the conform padding
        scaled = resample_to(self.scale_intensities(volume.array), volume, grid, linear=True)
        net_order = scaled.transpose(self._axes())  # [k, j, i] -> network (D, H, W)
        box = self._crop_box(net_order)
        image = np.ascontiguousarray(net_order[box])[None]
        return Prepared(image=image, reference=volume, context={"grid": grid, "box": box})

    def scale_intensities(self, array: np.ndarray) -> np.ndarray:
        """Intensities scaled as the network was trained (``settings["normalization"]``)."""
        spec = self.settings["normalization"]
        out = normalize(array, spec)
        if not np.ptp(out) > 0:
            raise InputError(f"The image has no intensity range left after {spec['method']} scaling.",
                             "Check that the right (non-empty) image was given.")
        return out

    def _axes(self) -> tuple[int, int, int]:
        order = self.settings.get("axes", "ijk")
        if sorted(order) != ["i", "j", "k"]:
            raise ModelError(f"Model {self.card.id!r}: preprocessing axes {order!r} is not a permutation of 'ijk'.",
                             "Fix deepseg-card.json.")
        return tuple("kji".index(c) for c in order)  # type: ignore[return-value]

    def _crop_box(self, image: np.ndarray) -> tuple[slice, slice, slice]:
        mask = image > float(self.settings.get("crop_threshold", 0.0))
        if not mask.any():
            raise InputError("After conforming and intensity scaling the image has no voxel above the crop "
                             "threshold; it looks empty.", "Check that the right image was given.")
        margin = int(self.settings.get("crop_margin", 0))
        box = []
        for axis in range(3):
            hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            box.append(slice(max(0, int(hits[0]) - margin), min(image.shape[axis], int(hits[-1]) + 1 + margin)))
        return tuple(box)  # type: ignore[return-value]

    # --- 2. network ------------------------------------------------------------------------
    def predict_logits(self, prepared: Prepared, *, device="auto", tta: bool = False,
                       overlap: Optional[float] = None, progress: Optional[Progress] = None,
                       folds: Optional[Sequence["int | str"]] = None) -> torch.Tensor:
        from ..inference.device import resolve_device, use_all_cores
        from ..inference.halo_tiles import predict_halo_tiles

        network, = self.fold_networks(folds)
        if tta:
            log.info("Test-time mirroring is not used for %s (MeshNets are not trained left/right symmetric).",
                     self.card.id)
        dev = resolve_device(device)
        if dev.type == "cpu":
            use_all_cores()
        halo = self.halo
        max_voxels = int(self.settings["max_voxels"]) if halo is not None else int(np.prod(prepared.image.shape))
        return predict_halo_tiles(network, prepared.image, halo or 0, max_voxels=max_voxels,
                                  device=dev, progress=progress)

    def refine(self, labels: np.ndarray, probabilities: Optional[np.ndarray], reference: Volume) -> np.ndarray:
        """brainchop's connected-component clean-up where the model uses it (mindgrab's brain mask)."""
        if not self.settings.get("keep_largest"):
            return labels
        from ..inference.postprocess import postprocess_labels

        return postprocess_labels(labels, reference.spacing, keep_largest=True)

    # --- 3. back to the input grid ---------------------------------------------------------
    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        """Paste the crop into the conformed volume (``fill`` outside it) and resample linearly onto the
        input grid (a paste, no interpolation, when the input is conformed)."""
        maps = torch.as_tensor(maps, dtype=torch.float32).numpy()
        fills = fill_values(fill, maps.shape[0])
        reference = prepared.reference
        # zeros from the allocator cost nothing until written (a 256^3 map of 18 classes is 1.2 GB): only
        # channels filled with another value, and the crop, are written
        out = np.zeros((maps.shape[0], *reference.shape), dtype=np.float32)
        if reference.same_grid(prepared.context["grid"]):  # conformed input: paste, no interpolation
            target = torch.from_numpy(out)
            for c, value in enumerate(fills):
                if value != 0.0:
                    target[c].fill_(value)
            # one multi-threaded transposing copy (numpy's per-channel strided copy took 3x longer)
            target[(slice(None), *self._box_kji(prepared))].copy_(
                torch.from_numpy(maps).permute(0, *[1 + int(a) for a in np.argsort(self._axes())]))
            return out
        for c, channel in enumerate(self._resampled(maps, prepared, fills)):
            out[c] = channel
        return out

    def _box_kji(self, prepared: Prepared) -> tuple[slice, slice, slice]:
        """The crop box in the conformed array's (k, j, i) order."""
        box_kji = [slice(0, 0)] * 3
        for n, s in enumerate(prepared.context["box"]):
            box_kji[self._axes()[n]] = s
        return tuple(box_kji)  # type: ignore[return-value]

    def _resampled(self, maps: np.ndarray, prepared: Prepared, fills: Sequence[float]) -> Iterator[np.ndarray]:
        """Each channel of the network-space ``maps`` resampled linearly onto the input grid, one at a time.
        Only the crop box is resampled, grown by one fill voxel so interpolation across its border matches
        the full conformed volume (outside it everything is the channel's fill anyway)."""
        grid: Volume = prepared.context["grid"]
        box_kji = self._box_kji(prepared)
        start = [s.start - 1 for s in box_kji]
        sub_grid = Volume(np.zeros([s.stop - s.start + 2 for s in box_kji], dtype=np.float32), grid.spacing,
                          tuple((grid.ijk_to_lps() @ np.array([*start[::-1], 1.0]))[:3]), grid.direction)
        sub = sub_grid.array
        for c, value in enumerate(fills):
            sub.fill(value)
            sub[1:-1, 1:-1, 1:-1] = maps[c].transpose(np.argsort(self._axes()))
            yield resample_to(sub, sub_grid, prepared.reference, linear=True, default=value)

    @staticmethod
    def _softmax(logits) -> torch.Tensor:
        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=0)

    @staticmethod
    def _background(classes: int) -> list[float]:
        """The probabilities outside the crop: background certain."""
        return [1.0] + [0.0] * (classes - 1)

    def restore(self, logits, prepared: Prepared) -> np.ndarray:
        """Softmax in network space, then onto the input grid (background outside the crop)."""
        probs = self._softmax(logits)
        return self.to_input_grid(probs, prepared, fill=self._background(probs.shape[0]))

    def restore_labels(self, logits, prepared: Prepared) -> np.ndarray:
        """The refined labels of ``restore``'s probabilities without building them on the input grid:
        the argmax of the crop's probabilities pasted into background (conformed input), or a running
        argmax over the channels resampled one at a time (the same values, so the same ties)."""
        probs = self._softmax(logits).numpy()  # the same call on the same logits as ``restore``: same values
        fills = self._background(probs.shape[0])
        reference = prepared.reference
        if reference.same_grid(prepared.context["grid"]):  # label the crop, paste it into background
            labels = np.zeros(reference.shape, dtype=np.uint16)
            labels[self._box_kji(prepared)] = self.labels_from_probabilities(probs).transpose(np.argsort(self._axes()))
        else:
            channels = self._resampled(probs, prepared, fills)
            index = np.zeros(reference.shape, dtype=index_dtype(len(fills)))
            running = RunningArgmax(next(channels), index)
            for channel in channels:
                running.add(channel)
            labels = self.labels_from_index(index)
        return self.refine(labels, None, reference)


def load_meshnet_folder(folder: Path, folds: Optional[Sequence["int | str"]] = None,
                        checkpoint: str = "checkpoint_final.pth") -> MeshNetModel:
    """Load a brainchop TensorFlow.js MeshNet folder (``checkpoint`` is unused: one weight set, fold "0")."""
    folder = Path(folder)
    known = KNOWN.get(folder.name, {})
    tfjs = read_tfjs_model(folder)
    network = MeshNet.from_tfjs(tfjs, where=f"{folder.name}/model.json")
    if (folder / CARD_FILE).exists():
        card = ModelCard.load(folder / CARD_FILE)
    else:
        comment = str(tfjs.meta.get("_comment", ""))
        card = ModelCard(
            id=folder.name, title=known.get("title", f"Brainchop MeshNet {folder.name}"), format="brainchop-meshnet",
            labels=labels_from_colormap(folder / known.get("colormap", "colormap.json")),
            inputs=[InputSpec.from_json(d) for d in known.get("inputs", [{"name": "T1", "modality": "MR"}])],
            description=("MeshNet (dilated 3D convolutions) from brainchop, run on a FreeSurfer-conformed "
                         "256^3 1 mm volume. " + comment).strip(),
            architecture={"receptive_radius": network.receptive_radius, "out_channels": network.out_channels},
            preprocessing=dict(known.get("preprocessing", {})), license="MIT", citation=CITATION)
    if len(card.labels) + 1 != network.out_channels:
        raise ModelError(f"{folder}: the network has {network.out_channels} outputs but the colormap/card names "
                         f"{len(card.labels) + 1} labels (background included).",
                         "Use the colormap.json that belongs to this model.")
    select_folds(["0"], folds, str(folder))
    return MeshNetModel(card, network)
