"""nnU-Net v2 results folders run in DeepSeg's own engine (no nnunetv2 import at inference time).

The steps and their order are nnU-Net's: transpose -> crop to non-zero -> normalise -> resample to the
configuration's spacing -> Gaussian sliding window (mirroring over the checkpoint's allowed axes, folds
averaged as logits) -> resample logits back -> softmax/sigmoid -> undo crop -> undo transpose.
So is the arithmetic where it decides labels: half-precision sums in the sliding window and resampled logits
rounded to half precision, as nnUNetPredictor keeps them. What differs is the plumbing: no worker processes,
no files in between, batched patches (and mirrorings) and multi-threaded resampling of the logits.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import InputError, ModelError
from ...inference.argmax import argmax_channels
from ...inference.backends import identify
from ...progress import Progress
from ...volume import Volume
from ..base import Prepared, SegmentationModel, WindowSpec, fill_values
from ..card import LabelInfo, ModelCard
from .folder import (file_stamp, fold_checkpoints, identity_files, input_specs, network_identity, read_json,
                     resolve_results)
from .labels import LabelScheme, read_labels
from .network import network_with_weights, read_fold
from .plans import NnUNetConfig, batch_size_for, read_configuration
from .preprocess import new_shape_for, nonzero_bbox, nonzero_mask, normalize, resample

NNUNET_CITATION = ("Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a self-configuring method "
                   "for deep learning-based biomedical image segmentation. Nat Methods 18, 203-211 (2021).")


class NnUNetModel(SegmentationModel):
    """One configuration of a trained nnU-Net v2 model (one network per fold)."""

    def __init__(self, card: ModelCard, config: NnUNetConfig, scheme: LabelScheme, networks: dict,
                 mirror_axes: Optional[Sequence[int]], folder: Path):
        self.card = card
        self.config = config
        self.scheme = scheme
        self.networks = networks  # fold name ("0", "all", ...) -> network
        self.folder = folder
        self.mirror_axes = tuple(int(a) for a in mirror_axes) if mirror_axes is not None else ()
        if config.is_2d:  # 2D networks run on (1, y, x) windows of the transposed volume
            patch = (1, *config.patch_size)
            axes = tuple(a + 1 for a in self.mirror_axes)
        else:
            patch, axes = tuple(config.patch_size), self.mirror_axes
        # half-precision sums as nnUNetPredictor keeps them: its results, not more exact ones (see restore)
        self.window = WindowSpec(patch_size=patch, overlap=0.5, blend="gaussian", mirror_axes=axes,
                                 accumulate="float16")
        self.batch_size = batch_size_for(patch)

    @property
    def num_classes(self) -> int:
        return self.scheme.num_heads

    # --- network space ---------------------------------------------------------------------------
    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        self.check_channels(channels)
        ref = channels[0]
        for ch in channels[1:]:
            if not ch.same_grid(ref):
                raise InputError(f"Input channel {ch.name or '?'} is not on the grid of {ref.name or 'channel 1'}.",
                                 "Register/resample all channels onto one grid before segmenting.")
        cfg = self.config
        tf = cfg.transpose_forward
        data = np.stack([np.asarray(ch.array, dtype=np.float32) for ch in channels])
        data = data.transpose([0, *[a + 1 for a in tf]])
        spacing = [ref.spacing[2 - a] for a in tf]  # Volume.spacing is (i, j, k); array axes are (k, j, i)
        shape_before = data.shape[1:]
        bbox = nonzero_bbox(data)
        # the stacked array is our own copy: crop/transpose without another copy when already contiguous
        data = np.ascontiguousarray(data[(slice(None), *(slice(a, b) for a, b in bbox))])
        mask = nonzero_mask(data) if any(u and s == "ZScoreNormalization" for u, s in
                                         zip(cfg.use_mask_for_norm, cfg.normalization_schemes)) else None
        for c in range(data.shape[0]):
            data[c] = normalize(data[c], cfg.normalization_schemes[c], cfg.use_mask_for_norm[c],
                                cfg.intensity_properties.get(str(c)), mask)
        target = [spacing[0], *cfg.spacing] if cfg.is_2d else list(cfg.spacing)
        shape_cropped = data.shape[1:]
        data = resample(data, new_shape_for(shape_cropped, spacing, target), spacing, target, cfg.resample_data)
        context = {"shape_before_crop": tuple(shape_before), "bbox": bbox, "shape_cropped": tuple(shape_cropped),
                   "spacing": spacing, "network_spacing": target}
        return Prepared(image=np.ascontiguousarray(data, dtype=np.float32), reference=ref, context=context)

    def predict_logits(self, prepared: Prepared, *, device="auto", tta: bool = True, overlap: Optional[float] = None,
                       progress: Optional[Progress] = None, folds: Optional[Sequence["int | str"]] = None):
        from ...inference.sliding_window import predict_sliding_window

        nets = self.fold_networks(folds)
        forward = (lambda net, x: net(x[:, :, 0])[:, :, None]) if self.config.is_2d else None
        return predict_sliding_window(
            nets, prepared.image, self.window, self.num_classes, device=device,
            mirror=tta and bool(self.window.mirror_axes), overlap=self.window.overlap if overlap is None else overlap,
            progress=progress, batch_size=self.batch_size, forward=forward, out_dtype=None)

    # --- back to the input grid -------------------------------------------------------------------
    def _to_cropped_grid(self, maps, prepared: Prepared, rounded_to: Optional[torch.dtype] = None) -> torch.Tensor:
        """Network grid -> the cropped, transposed input grid, float32 (a new tensor, never the caller's), its
        values rounded to ``rounded_to`` when given (the rounded copy is the new tensor: no extra pass; maps
        already in ``rounded_to`` and not resampled need no rounding: ``predict_logits``' half sums)."""
        ctx = prepared.context
        given = torch.as_tensor(maps)
        values = given.float()  # a new tensor unless ``maps`` is float32 already
        x = resample(values, ctx["shape_cropped"], ctx["network_spacing"], ctx["spacing"],
                     self.config.resample_probabilities)
        if rounded_to is not None and not (x is values and given.dtype == rounded_to):
            return x.to(rounded_to).float()
        return x.clone() if x is given else x

    def _uncrop(self, x: torch.Tensor, prepared: Prepared, fill: Sequence[float]) -> np.ndarray:
        """Cropped, transposed grid -> input grid ``(C, k, j, i)``, ``fill`` outside the non-zero box."""
        ctx = prepared.context
        full = ctx["shape_before_crop"]
        if tuple(x.shape[1:]) != tuple(full):
            out = torch.empty((x.shape[0], *full), dtype=x.dtype)
            for c, value in enumerate(fill):
                out[c] = value
            out[(slice(None), *(slice(a, b) for a, b in ctx["bbox"]))] = x
            x = out
        return x.numpy().transpose([0, *[a + 1 for a in self.config.transpose_backward]])

    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        x = self._to_cropped_grid(maps, prepared)
        return self._uncrop(x, prepared, fill_values(fill, x.shape[0]))

    def restore(self, logits, prepared: Prepared) -> np.ndarray:
        # nnU-Net resamples half-precision logits into a half-precision array: the same rounding gives its
        # labels where two classes' logits are within a rounding step of each other
        x = self._to_cropped_grid(logits, prepared, rounded_to=torch.half)
        _nonlin_(x, self.scheme.regions)
        # outside the non-zero box nnU-Net predicts background
        fill = [0.0] * x.shape[0] if self.scheme.regions else [1.0] + [0.0] * (x.shape[0] - 1)
        return self._uncrop(x, prepared, fill)

    def restore_labels(self, logits, prepared: Prepared) -> Optional[np.ndarray]:
        """``restore``'s labels taken on the cropped grid and pasted into background: no input-grid probability
        map (``(C, ...)`` float32 of the whole input when the non-zero box is smaller, e.g. an MR's air), and no
        softmax (seven passes over a CT's logits): the argmax of the same half-rounded logits (the first channel
        on ties) is the softmax's, but where its float32 rounding makes two channels' probabilities equal (two
        largest logits a half-precision step apart near zero). Region-based models (their painting order reads
        the probabilities): None."""
        if self.scheme.regions:
            return None
        index = argmax_channels(self._to_cropped_grid(logits, prepared, rounded_to=torch.half).numpy())
        index_full = self._uncrop(torch.from_numpy(index)[None], prepared, [0.0])[0]  # background: channel 0
        return self.refine(self.labels_from_index(index_full), None, prepared.reference)

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        if not self.scheme.regions:
            return super().labels_from_probabilities(probabilities)
        labels = np.zeros(probabilities.shape[1:], dtype=np.uint16)
        for channel, value in enumerate(self.scheme.region_order):
            labels[probabilities[channel] > 0.5] = value
        return labels


def _nonlin_(x: torch.Tensor, regions: bool) -> None:
    """Sigmoid (regions) or softmax over channels, in place: the logits of a CT volume are the largest array."""
    if regions:
        x.sigmoid_()
        return
    x -= x.max(dim=0, keepdim=True).values
    x.exp_()
    x /= x.sum(dim=0, keepdim=True)


def load_nnunet_folder(folder: "str | Path", folds: Optional[Sequence["int | str"]] = None,
                       checkpoint: str = "checkpoint_final.pth", configuration: Optional[str] = None,
                       label_overrides: Optional[Sequence[LabelInfo]] = None) -> NnUNetModel:
    """Load an nnU-Net v2 results folder (a ``Trainer__Plans__config`` folder or its parent).

    A ``deepseg-card.json`` next to it (format ``nnunetv2``) supplies the catalog's id, title, licence,
    citation and label names/colours/codes, and may set ``preprocessing.configuration`` and
    ``preprocessing.results_folder`` (relative path of the results inside the model folder).
    """
    train_dir, configuration, card_in = resolve_results(folder, configuration)
    if card_in is not None:
        label_overrides = label_overrides or card_in.labels
    # the files as they are before being read (a missing one is reported by read_json)
    json_stamps = [file_stamp(p) if p.is_file() else None for p in identity_files(train_dir, train_dir)[1:]]
    dataset = read_json(train_dir / "dataset.json", "label names and input channels")
    plans = read_json(train_dir / "plans.json", "preprocessing and network architecture")
    paths = fold_checkpoints(train_dir, folds, checkpoint)

    scheme = read_labels(dataset, str(train_dir / "dataset.json"), label_overrides)
    inputs = input_specs(dataset)
    networks, meta = {}, {}
    config: Optional[NnUNetConfig] = None
    for fold, path in paths.items():
        stamps = [file_stamp(path), *json_stamps]  # the files as read: a later change is not this network
        ckpt = read_fold(path)
        if config is None:  # the first fold's metadata names the configuration, as in nnUNetPredictor
            meta = ckpt
            conf_name = (meta.get("init_args") or {}).get("configuration") or configuration or \
                train_dir.name.split("__")[-1]
            config = read_configuration(plans, conf_name, str(train_dir / "plans.json"))
            if config.previous_stage:
                raise ModelError(f"{train_dir.name} is a cascade stage (needs {config.previous_stage} output).",
                                 "Cascades are not supported; choose the 3d_fullres configuration of the model.")
        networks[fold] = network_with_weights(config.architecture, len(inputs), scheme.num_heads, ckpt, path,
                                              str(train_dir / "plans.json"))
        identify(networks[fold], partial(network_identity, train_dir, path, configuration, stamps))
    assert config is not None
    if len(config.normalization_schemes) != len(inputs):
        raise ModelError(f"{train_dir / 'plans.json'} normalises {len(config.normalization_schemes)} channel(s) but "
                         f"dataset.json declares {len(inputs)}.", "Use the plans.json and dataset.json that were "
                                                                  "trained together.")

    trainer = meta.get("trainer_name") or train_dir.name.split("__")[0]
    dataset_name = plans.get("dataset_name", train_dir.parent.name)
    card = ModelCard(
        id=card_in.id if card_in else f"{dataset_name}/{config.name}",
        title=card_in.title if card_in else f"nnU-Net {dataset_name} ({config.name})",
        format="nnunetv2", labels=scheme.labels, inputs=card_in.inputs if card_in else inputs,
        version=card_in.version if card_in else "1",
        description=card_in.description if card_in else str(dataset.get("description", "")),
        architecture={"class": config.architecture.get("network_class_name"), "trainer": trainer,
                      "plans": plans.get("plans_name"), "configuration": config.name,
                      "folds": list(paths), "checkpoint": checkpoint},
        preprocessing={"configuration": config.name, "spacing": config.spacing, "patch_size": config.patch_size,
                       "normalization": config.normalization_schemes, "transpose": config.transpose_forward},
        license=card_in.license if card_in else str(dataset.get("licence", dataset.get("license", ""))),
        citation=card_in.citation if card_in else NNUNET_CITATION,
    )
    return NnUNetModel(card, config, scheme, networks, meta.get("inference_allowed_mirroring_axes"), train_dir)
