"""The ``pyliverlesionseg`` liver model and liver + lesion cascade as a DeepSeg ``SegmentationModel``.

Liver stage (as the original ``cnn_liver_lesion_seg_CT_MR_main``): closest-canonical LPS array, body
crop, ``zoom3d`` to 1.5 mm, 3x3x3 median filter, ``zoom3d`` to the 3 mm training spacing, intensity
mapping (CT: [-200, 200] HU -> [-0.5, 0.5]; MR: min..80 % of range -> [-0.5, 0.5]), RAS flip, one
centred 189 x 162 x 162 patch (x, y, z; ``same`` convolutions, output 163 x 136 x 136, zero padding),
sigmoid, threshold 0.5, opening (18-connected) keeping the largest 6-connected component.

Lesion stage (cascade): the whole image normalised (CT as above; MR centred on the liver median),
``zoom3d`` to 1 x 1 x 3 mm, the liver mask dilated twice (18-connected), voxels outside it set to -0.5,
cropped to the dilated liver, and tiled with non-overlapping 180 x 172 x 86 patches (``valid``
convolutions, 92 x 84 x 42 outputs); lesion = sigmoid > 0.5.

Deviations: an oblique (tilted) input grid is first resampled by nearest neighbour onto L, P, S axes
(``liver_prep.axis_aligned``: the network learnt axial scans, and finds less liver on a smoothed one; the lesion
stage reads it on the same axes); probabilities and the post-processed liver mask return to the input grid apart, by
linear interpolation at the exact voxel centres, and the liver probability is kept where the mask's is >= 0.5 (the
original zooms the binary mask corner-aligned and keeps every voxel > 0); the body crop skips the
pelvis search (see ``liver_prep.crop_ct``); volumes covering less than 90 mm in z after the crop are
mirrored in z to 90 mm before the liver network (card ``preprocessing.z_context_mm``; 0 turns it off):
the network needs cranio-caudal context -- on a 20-slice (40 mm) CT series the liver Dice rose from
0.45 to 0.91 with it.  A CT without lungs starts inside any liver: when the liver found reaches its top
(``liver_site``), the network runs again with the box's top mirrored up by the same 90 mm, as it was
trained on boxes reaching 70 mm above the dome -- cut at its top, the liver is otherwise grown down into the
bowel (see ``liver_prep.TOP_CUT_SPAN_MM`` and benchmarks/RESULTS.md); in such a scan, bowel the network still
adds to the liver is dropped (``liver_core.unlike_core``) before the largest component is taken, and the liver's
other pieces that run out of the top of the scan (lobes joined above it, ``liver_core.lobes_cut_by_top``) are kept
with it.  "The top of the scan" is taken column by column: a tilted (resampled) field of view ends in a slanted edge
padded above it (``liver_prep.padding``, ``scan_top``), and there the mirrored context starts at that edge, no liver
is kept in voxels mostly padding, and voxels the padding darkens are not taken for bowel.  CT only:
constant-valued padding is read as air (``liver_prep.padding_to_air``), and a predicted liver with neither
lungs nor the top of the field of view above it is dropped (``liver_site``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..errors import ModelError
from ..io import resample_onto
from ..progress import Progress
from ..volume import Volume, check_image
from . import liver_prep as lp
from .base import Output, Prepared, SegmentationModel, Stage, WindowSpec, fill_values
from .card import ModelCard
from .liver_convert import WEIGHTS_FILE
from .liver_core import core_intensity, denoised, lobes_cut_by_top, unlike_core
from .liver_site import FOV_TOP_MM, liver_top_is_covered
from .networks.liver_unet import LiverUNet

log = logging.getLogger(__name__)
_OPEN = ndimage.generate_binary_structure(3, 2)      # 18-connected opening of the liver mask
_DILATE_LESION = ndimage.iterate_structure(_OPEN, 2)  # liver dilation before the lesion network
Z_CONTEXT_MM = 90.0  # thinner (cropped) volumes are mirrored in z up to this extent (0: as the original)


def _window(arch: dict, overlap: float, blend: str) -> WindowSpec:
    patch = tuple(int(v) for v in arch["patch_size"])
    out = tuple(int(v) for v in arch["output_size"])
    return WindowSpec(patch_size=patch, overlap=overlap, blend=blend, mirror_axes=(),
                      output_margin=tuple((p - o) // 2 for p, o in zip(patch, out)))


def _sigmoid_two_class(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(net(x))
    return torch.cat([1 - p, p], dim=1)


def _xyz_to_net(array_xyz_lps: np.ndarray) -> np.ndarray:
    """LPS ``[x, y, z]`` -> network ``(1, z, y, x)`` in RAS (x, y flipped), float32."""
    return np.ascontiguousarray(np.flip(array_xyz_lps, (0, 1)).transpose(2, 1, 0)[None], dtype=np.float32)


def _net_to_xyz(array_zyx: np.ndarray) -> np.ndarray:
    """Inverse of ``_xyz_to_net`` for one channel ``(z, y, x)``."""
    return np.ascontiguousarray(np.flip(np.asarray(array_zyx).transpose(2, 1, 0), (0, 1)))


def liver_mask_3mm(probability: np.ndarray, image: Optional[np.ndarray] = None, top_slices: float = 0.0,
                   padding: Optional[np.ndarray] = None) -> np.ndarray:
    """The original's liver post-processing on the network grid: >0.5, erode, largest component, dilate;
    given the network's input ``image`` (a scan whose top cuts the liver; read through ``denoised``), bowel grown
    onto the liver is dropped first and the liver's lobes cut apart by the top of the scan (within ``top_slices``
    of it) are kept (``liver_core``).  ``padding``: the share of each voxel that is padding (``_scan_top``), if
    the scan has any."""
    window = None
    if image is not None:
        image = denoised(image)
        window = core_intensity(probability, image)  # once: unlike_core keeps the confident core it is taken from
        blended = None if padding is None else padding > 0
        probability = np.where(unlike_core(probability, image, window, blended), 0, probability)
    parts = ndimage.binary_erosion(probability > 0.5, _OPEN)
    liver = lp.largest_component(parts)
    if image is not None:
        liver |= lobes_cut_by_top(parts, liver, image, window, top_slices, _scan_top(padding))
    return ndimage.binary_dilation(liver, _OPEN)


def _scan_top(padding: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The top of the scan in each column of the network grid (``liver_prep.scan_top``): its highest voxel that
    no padding reaches into (``padding``: the share of each voxel that is padding; the voxels above are padding or
    darkened by it); None (the grid's top) without padding."""
    return None if padding is None else lp.scan_top(padding > 0)


def _reaches_top(probability_zyx: np.ndarray, slices: float, padding: Optional[np.ndarray] = None) -> bool:
    """Whether the post-processed liver (``liver_mask_3mm``) of a network-grid probability reaches within
    ``slices`` of the top of the scan (z grows superior; ``padding`` as in ``liver_mask_3mm``)."""
    liver = liver_mask_3mm(probability_zyx)
    return bool(liver.any()) and lp.below_scan_top(liver, _scan_top(padding)).min() <= slices


def _net_padding(padding_xyz: np.ndarray, zoom: np.ndarray) -> Optional[np.ndarray]:
    """The share of each network-grid voxel that is padding, from the body crop's padding mask (``[x, y, z]``,
    ``liver_prep.padding``) zoomed as the image is (``zoom`` to 1.5 mm, then to 3 mm); None without padding."""
    if not padding_xyz.any():
        return None
    return _xyz_to_net(lp.zoom3d(lp.zoom3d(padding_xyz.astype(np.float32), zoom), 0.5 * np.ones(3)))[0]


class LiverModel(SegmentationModel):
    """Liver (label 1) or the liver -> lesion cascade (labels 1, 2) of pyliverlesionseg.

    The model is its first stage, the liver network on the 3 mm grid; ``lesion`` (cascade only) is the
    second stage, run on the input inside the liver the first stage found."""

    name = "liver"
    output = Output.PROBABILITIES  # sigmoid heads, run through ``_sigmoid_two_class``
    label_values = (1,)

    def __init__(self, card: ModelCard, liver_net: LiverUNet, lesion_net: Optional[LiverUNet] = None) -> None:
        self.card = card
        self.networks = {"0": liver_net}
        self.modality = str(card.preprocessing.get("modality", "CT")).upper()
        self.liver_spacing = np.asarray(card.preprocessing.get("liver_spacing_xyz", [3.0, 3.0, 3.0]), float)
        self.z_context_mm = float(card.preprocessing.get("z_context_mm", Z_CONTEXT_MM))
        self.window = _window(card.architecture["liver"], overlap=0.5, blend="gaussian")
        self.lesion = LesionStage(card, lesion_net) if lesion_net is not None else None

    @property
    def stages(self) -> list[Stage]:
        return [self] if self.lesion is None else [self, self.lesion]

    # --- prepare ---------------------------------------------------------------------------------------
    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        self.check_channels(channels)
        check_image(channels[0])
        image = lp.axis_aligned(channels[0], self.liver_spacing / 2)  # an oblique grid: onto L, P, S axes
        vol, spacing, ornt = lp.lps_volume(image)
        landmarks = None
        if self.modality == "CT":
            vol = lp.padding_to_air(vol)
            landmarks = lp.ct_landmarks(vol, spacing)  # the crop's, kept for the anatomical check in restore
        box = lp.crop_ct(vol, spacing, landmarks) if self.modality == "CT" else lp.crop_mr(vol, spacing)
        cropped = vol[box]
        zoom1 = spacing / (self.liver_spacing / 2.0)
        fine = ndimage.median_filter(lp.zoom3d(cropped, zoom1), size=3)
        coarse = lp.zoom3d(fine, 0.5 * np.ones(3))
        coarse = lp.normalize_ct(coarse) if self.modality == "CT" else lp.normalize_mr_liver(coarse)
        context_slices = int(np.ceil(self.z_context_mm / self.liver_spacing[2]))
        missing = max(0, context_slices - coarse.shape[2])
        z_pad = (missing // 2, missing - missing // 2)
        if missing:  # thin slab: mirror it in z so the network sees some cranio-caudal context
            coarse = np.pad(coarse, ((0, 0), (0, 0), z_pad), mode="symmetric")
        no_lungs = landmarks is not None and landmarks.lungs is None  # the scan starts inside any liver
        torso = lp.shows_torso(vol.shape, box, spacing)
        if not torso:
            log.warning("No torso in the image (the body is %.0f mm wide): the liver model returns no liver.",
                        (box[0].stop - box[0].start) * spacing[0])
        above = context_slices if no_lungs and not missing else 0
        context = {"ornt": ornt, "lps_shape": vol.shape, "box": box, "crop_shape": cropped.shape,
                   "coarse_zoom": zoom1 * 0.5, "z_pad": z_pad, "torso": torso, "context_above": above,
                   "padding": _net_padding(landmarks.padding[box], zoom1) if above else None,
                   "site": None if landmarks is None else landmarks.site(),
                   "aligned": None if image is channels[0] else _grid_of(image)}
        return Prepared(_xyz_to_net(coarse), channels[0], context)

    # --- network ---------------------------------------------------------------------------------------
    def predict_logits(self, prepared: Prepared, *, device="auto", tta: bool = False, overlap: Optional[float] = None,
                       progress: Optional[Progress] = None, folds: Optional[Sequence["int | str"]] = None):
        """Liver probabilities ``(2, z, y, x)`` on the 3 mm grid (``output`` is PROBABILITIES)."""
        from ..inference.sliding_window import predict_sliding_window

        if not prepared.context["torso"]:  # a head or a limb: no liver to find, no network run
            return torch.stack([torch.ones(prepared.image.shape[1:]), torch.zeros(prepared.image.shape[1:])])

        def run(image: np.ndarray) -> torch.Tensor:
            return predict_sliding_window(self.fold_networks(folds), image, self.window, 2, device=device,
                                          mirror=False, overlap=self.window.overlap if overlap is None else overlap,
                                          progress=progress, forward=_sigmoid_two_class)

        probabilities = run(prepared.image)
        above, padding = prepared.context["context_above"], prepared.context["padding"]
        if above and _reaches_top(probabilities[1].cpu().numpy(), FOV_TOP_MM / self.liver_spacing[2], padding):
            # the top of the scan cuts the liver: run again with the scan's top mirrored above it, as the
            # network was trained with context above the liver (see the module docstring)
            mirrored = lp.mirror_above(prepared.image[0], _scan_top(padding), above)[None]
            probabilities = run(mirrored)[:, :-above]
        return probabilities

    # --- back to the input grid ------------------------------------------------------------------------
    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        """Drop the mirrored z context, undo the RAS flip, zoom back linearly into the body crop (``fill``
        outside it), reorient to the input's axes and, for an oblique input, resample linearly onto its grid."""
        return _onto_input(self._on_model_grid(maps, prepared.context, fill), prepared, fill)

    def _on_model_grid(self, maps, ctx: dict, fill: "float | Sequence[float]") -> np.ndarray:
        """``to_input_grid`` up to the grid the model ran on: the input's, or its axis-aligned copy."""
        lo, hi = ctx["z_pad"]
        maps = np.asarray(maps, np.float32)
        out = np.empty((maps.shape[0], *ctx["lps_shape"]), np.float32)
        for c, value in enumerate(fill_values(fill, maps.shape[0])):
            out[c].fill(value)
            out[c][ctx["box"]] = lp.unzoom_linear(_net_to_xyz(maps[c][lo:maps.shape[1] - hi]), ctx["crop_shape"],
                                                  ctx["coarse_zoom"])
        return from_xyz(out, ctx["ornt"])

    def restore(self, output, prepared: Prepared) -> np.ndarray:
        """Background and liver probabilities on the input grid; the liver probability is kept only inside
        the original's post-processed liver mask (>0.5, opening, largest component) on the 3 mm grid, without
        the bowel grown onto the liver in a scan without lungs (``liver_core``)."""
        lo, hi = prepared.context["z_pad"]
        p = np.asarray(output[1], np.float32)
        mask = np.zeros_like(p)
        body = p[lo:p.shape[0] - hi]
        # a scan without lungs starts inside the liver: the network grows a cut liver into the bowel (liver_core)
        image = prepared.image[0][lo:p.shape[0] - hi] if prepared.context["context_above"] else None
        top = FOV_TOP_MM / self.liver_spacing[2]
        mask[lo:p.shape[0] - hi] = liver_mask_3mm(body, image, top, prepared.context["padding"])
        # the mask and the probability are zoomed apart and the mask applied after: a zero outside the mask, zoomed
        # with the probability, would pull the liver's edge inwards
        probability, inside = self._on_model_grid(np.stack([p, mask]), prepared.context, 0.0)
        inside = inside >= 0.5
        padding = prepared.context["padding"]  # set only for a lung-less box of full height: no z_pad
        if padding is not None:  # no liver where the scan is mostly padding (above a tilted grid's slanted top); this
            # after the zoom back, not before: a zeroed network voxel above the top would pull the top slice under 0.5
            inside[self._on_model_grid(padding[None], prepared.context, 0.0)[0] >= 0.5] = False
        aligned = prepared.context["aligned"]
        grid = prepared.reference if aligned is None else aligned
        found = inside & (probability > 0.5)
        if self.modality == "CT" and not liver_top_is_covered(found, grid, prepared.context["site"]):
            log.warning("The predicted liver has neither lungs nor the top of the field of view above it (%.0f mL): "
                        "it is not a liver, and the liver model returns none.",
                        found.sum() * grid.voxel_volume_mm3 / 1000.0)
            inside[:] = False
        probability, inside = _onto_input(np.stack([probability, inside.astype(np.float32)]), prepared, 0.0)
        liver = np.where(inside >= 0.5, probability, 0).astype(np.float32)
        return np.stack([1 - liver, liver])

    # --- the cascade -----------------------------------------------------------------------------------
    def combine(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """Liver stage ``(bg, liver)`` [and lesion stage ``(1 - lesion, lesion)``] -> the card's classes."""
        liver = probabilities[0][1]
        if self.lesion is None:
            return probabilities[0]
        lesion = probabilities[1][1]
        return np.stack([(1 - lesion) * (1 - liver), (1 - lesion) * liver, lesion])

    def segment_lesions(self, image: Volume, liver: np.ndarray, device="auto",
                        progress: Optional[Progress] = None) -> np.ndarray:
        """Lesion probability ``(k, j, i)`` on ``image``'s grid inside a given liver mask (same grid) — the
        original's use of an existing liver contour instead of its liver network."""
        if self.lesion is None:
            raise ModelError(f"Model {self.card.id!r} has no lesion network.", "Use the liver + lesion model.")
        inside = np.asarray(liver > 0, np.float32)
        prepared = self.lesion.prepare([image], [np.stack([1 - inside, inside])])
        output = self.lesion.predict_logits(prepared, device=device, progress=progress)
        return self.lesion.restore(output, prepared)[1]

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """The original's thresholds: lesion where P(lesion) > 0.5, else liver where P(liver | no lesion) > 0.5."""
        if self.lesion is None:
            return (probabilities[1] > 0.5).astype(np.uint16)
        no_lesion = np.maximum(1 - probabilities[2], 1e-8)
        labels = (probabilities[1] / no_lesion > 0.5).astype(np.uint16)
        labels[probabilities[2] > 0.5] = 2
        return labels


class LesionStage(Stage):
    """The cascade's second stage: the lesion network on the 1 x 1 x 3 mm grid, inside the dilated liver."""

    name = "lesion"
    output = Output.PROBABILITIES
    label_values = (2,)

    def __init__(self, card: ModelCard, network: LiverUNet) -> None:
        self.networks = {"0": network}
        self.modality = str(card.preprocessing.get("modality", "CT")).upper()
        self.spacing = np.asarray(card.preprocessing.get("lesion_spacing_xyz", [1.0, 1.0, 3.0]), float)
        self.window = _window(card.architecture["lesion"], overlap=0.0, blend="constant")

    def prepare(self, channels: Sequence[Volume], previous: Sequence[np.ndarray] = ()) -> Prepared:
        """The input normalised, zoomed to the lesion spacing, set to -0.5 outside the liver (from the liver
        stage's probabilities ``previous[0]``) dilated twice, and cropped to it."""
        check_image(channels[0])
        image = lp.axis_aligned(channels[0], self.spacing)  # an oblique grid: onto L, P, S axes, as the liver stage
        aligned = None if image is channels[0] else _grid_of(image)
        liver = np.asarray(previous[0][1], np.float32)
        if aligned is not None:  # the liver stage's probabilities are on the input's grid
            liver = resample_onto(channels[0].with_array(liver), aligned).array
        vol, spacing, ornt = lp.lps_volume(image)
        liver = lp.to_lps_xyz(liver, ornt) > 0.5
        zoom = spacing / self.spacing
        context = {"ornt": ornt, "lps_shape": vol.shape, "zoom": zoom, "box": None, "aligned": aligned}
        empty = Prepared(np.zeros((1, 0, 0, 0), np.float32), channels[0], context)
        if not liver.any():
            return empty
        norm = lp.normalize_ct(vol) if self.modality == "CT" else lp.normalize_mr_lesion(vol, liver)
        zoomed = lp.zoom3d(norm, zoom)
        region = ndimage.binary_dilation(lp.zoom3d(liver.astype(np.float32), zoom) > 0.5, _DILATE_LESION)
        if not region.any():
            return empty
        masked = np.clip(np.where(region, zoomed, -0.5), -0.5, 0.5)
        box = ndimage.find_objects(region.astype(np.int8))[0]
        context.update(box=box, zoomed_shape=zoomed.shape)
        return Prepared(_xyz_to_net(masked[box]), channels[0], context)

    def predict_logits(self, prepared: Prepared, *, device="auto", tta: bool = False, overlap: Optional[float] = None,
                       progress: Optional[Progress] = None, folds: Optional[Sequence["int | str"]] = None):
        """Lesion probabilities ``(2, z, y, x)`` in the liver crop (``output`` is PROBABILITIES); the
        original tiles without overlap, so ``overlap`` is not used."""
        from ..inference.sliding_window import predict_sliding_window

        if prepared.image.size == 0:  # no liver: nothing to run
            return torch.zeros((2, *prepared.image.shape[1:]))
        (progress or Progress()).stage("lesions")
        return predict_sliding_window(self.fold_networks(folds), prepared.image, self.window, 2, device=device,
                                      mirror=False, overlap=self.window.overlap, progress=progress,
                                      forward=_sigmoid_two_class)

    def to_input_grid(self, maps, prepared: Prepared, fill: "float | Sequence[float]" = 0.0) -> np.ndarray:
        """Paste the liver crop into the zoomed grid (``fill`` outside it), zoom back linearly to the input (for an
        oblique input, through its axis-aligned copy, as the liver stage)."""
        ctx = prepared.context
        maps = np.asarray(maps, np.float32)
        out = np.empty((maps.shape[0], *ctx["lps_shape"]), np.float32)
        for c, value in enumerate(fill_values(fill, maps.shape[0])):
            if ctx["box"] is None:
                out[c].fill(value)
                continue
            grid = np.full(ctx["zoomed_shape"], value, np.float32)
            grid[ctx["box"]] = _net_to_xyz(maps[c])
            out[c] = lp.unzoom_linear(grid, ctx["lps_shape"], ctx["zoom"])
        return _onto_input(from_xyz(out, ctx["ornt"]), prepared, fill)

    def restore(self, output, prepared: Prepared) -> np.ndarray:
        lesion = np.clip(self.to_input_grid(np.asarray(output[1:2], np.float32), prepared)[0], 0, 1)
        return np.stack([1 - lesion, lesion])


def _grid_of(image: Volume) -> Volume:
    """``image``'s grid without its voxels (a zero-strided array), to resample onto or from."""
    return image.with_array(np.broadcast_to(np.uint8(0), image.shape))


def _onto_input(maps: np.ndarray, prepared: Prepared, fill: "float | Sequence[float]") -> np.ndarray:
    """Maps ``(C, k, j, i)`` on the grid the liver model ran on, linearly onto the input's grid (``fill`` where the
    input reaches outside it); as they are when the model ran on the input's own grid (``LiverModel.prepare``)."""
    aligned = prepared.context["aligned"]
    if aligned is None:
        return maps
    return np.stack([resample_onto(aligned.with_array(m), prepared.reference, default=value).array
                     for m, value in zip(maps, fill_values(fill, maps.shape[0]))])


def from_xyz(channels_xyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(lp.from_lps_xyz(channels_xyz, ornt), dtype=np.float32)


def load_liver_folder(folder: Path, folds=None, checkpoint: str = WEIGHTS_FILE) -> LiverModel:
    """Load a converted pyliverlesionseg folder (``deepseg-card.json`` + ``weights.pt``)."""
    from .card import CARD_FILE
    from .safe_load import load_checkpoint

    folder = Path(folder)
    card = ModelCard.load(folder / CARD_FILE)
    weights = folder / (checkpoint if (folder / checkpoint).is_file() else WEIGHTS_FILE)
    state = load_checkpoint(weights)
    nets = {}
    for stage, arch in card.architecture.items():
        net = LiverUNet(arch)
        part = {k[len(stage) + 1:]: v for k, v in state.items() if k.startswith(stage + ".")}
        try:
            net.load_state_dict(part)
        except RuntimeError as exc:
            raise ModelError(f"{weights} does not fit the {stage} network of {card.id} ({str(exc)[:200]}).",
                             "Convert the model again with deepseg.models.liver_convert.convert_keras_h5.") from exc
        nets[stage] = net.eval()
    if "liver" not in nets:
        raise ModelError(f"{folder / CARD_FILE} describes no liver network.", "Convert the model again.")
    return LiverModel(card, nets["liver"], nets.get("lesion"))
