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

Deviations: probabilities return to the input grid by linear interpolation at the exact voxel centres
(the original zooms the binary mask corner-aligned and keeps every voxel > 0); the body crop skips the
pelvis search (see ``liver_prep.crop_ct``); volumes covering less than 90 mm in z after the crop are
mirrored in z to 90 mm before the liver network (card ``preprocessing.z_context_mm``; 0 turns it off):
the network needs cranio-caudal context -- on a 20-slice (40 mm) CT series the liver Dice rose from
0.45 to 0.91 with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..errors import ModelError
from ..progress import Progress
from ..volume import Volume, check_image
from . import liver_prep as lp
from .base import Prepared, SegmentationModel, WindowSpec
from .card import ModelCard
from .liver_convert import WEIGHTS_FILE
from .networks.liver_unet import LiverUNet

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


def liver_mask_3mm(probability: np.ndarray) -> np.ndarray:
    """The original's liver post-processing on the network grid: >0.5, erode, largest component, dilate."""
    eroded = ndimage.binary_erosion(probability > 0.5, _OPEN)
    labels, n = ndimage.label(eroded)
    if n == 0:
        return np.zeros(probability.shape, bool)
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_dilation(largest, _OPEN)


def _liver_probability_lps(p_liver: np.ndarray, ctx: dict) -> np.ndarray:
    """Liver probability (network grid, zero outside the post-processed mask) on the full LPS ``[x, y, z]`` grid."""
    lo, hi = ctx["z_pad"]
    p_liver = p_liver[lo:p_liver.shape[0] - hi]  # drop the mirrored z context
    kept = np.where(liver_mask_3mm(p_liver), p_liver, 0)
    full = np.zeros(ctx["lps_xyz"].shape, np.float32)
    full[ctx["box"]] = lp.unzoom_linear(_net_to_xyz(kept), ctx["crop_shape"], ctx["coarse_zoom"])
    return full


class LiverModel(SegmentationModel):
    """Liver (label 1) or liver + lesion cascade (labels 1, 2) of pyliverlesionseg."""

    def __init__(self, card: ModelCard, liver_net: LiverUNet, lesion_net: Optional[LiverUNet] = None) -> None:
        self.card = card
        self.networks = [liver_net]
        self.lesion_network = lesion_net
        self.modality = str(card.preprocessing.get("modality", "CT")).upper()
        self.liver_spacing = np.asarray(card.preprocessing.get("liver_spacing_xyz", [3.0, 3.0, 3.0]), float)
        self.lesion_spacing = np.asarray(card.preprocessing.get("lesion_spacing_xyz", [1.0, 1.0, 3.0]), float)
        self.z_context_mm = float(card.preprocessing.get("z_context_mm", Z_CONTEXT_MM))
        self.window = _window(card.architecture["liver"], overlap=0.5, blend="gaussian")
        self.lesion_window = _window(card.architecture["lesion"], overlap=0.0, blend="constant") if lesion_net else None

    # --- prepare ---------------------------------------------------------------------------------------
    def prepare(self, channels: Sequence[Volume]) -> Prepared:
        self.check_channels(channels)
        image = channels[0]
        check_image(image)
        ornt = lp.lps_orientation(image.direction, image.spacing)
        vol = lp.to_lps_xyz(image.array, ornt).astype(np.float32)
        spacing = lp.xyz_spacing(image.spacing, ornt)
        box = lp.crop_ct(vol, spacing) if self.modality == "CT" else lp.crop_mr(vol, spacing)
        cropped = vol[box]
        zoom1 = spacing / (self.liver_spacing / 2.0)
        fine = ndimage.median_filter(lp.zoom3d(cropped, zoom1), size=3)
        coarse = lp.zoom3d(fine, 0.5 * np.ones(3))
        coarse = lp.normalize_ct(coarse) if self.modality == "CT" else lp.normalize_mr_liver(coarse)
        missing = max(0, int(np.ceil(self.z_context_mm / self.liver_spacing[2])) - coarse.shape[2])
        z_pad = (missing // 2, missing - missing // 2)
        if missing:  # thin slab: mirror it in z so the network sees some cranio-caudal context
            coarse = np.pad(coarse, ((0, 0), (0, 0), z_pad), mode="symmetric")
        context = {"ornt": ornt, "spacing_xyz": spacing, "box": box, "lps_xyz": vol,
                   "crop_shape": cropped.shape, "coarse_zoom": zoom1 * 0.5, "z_pad": z_pad}
        return Prepared(_xyz_to_net(coarse), image, context)

    # --- networks --------------------------------------------------------------------------------------
    def predict_logits(self, prepared: Prepared, *, device, tta: bool, overlap: Optional[float],
                       progress: Progress, folds: Optional[Sequence[int]] = None):
        """Liver probabilities ``(2, z, y, x)`` on the 3 mm grid; the lesion stage (cascade) is run here too
        and its probabilities kept in ``prepared.context["lesion"]``."""
        from ..inference.sliding_window import predict_sliding_window

        liver = predict_sliding_window(self.networks, prepared.image, self.window, 2, device=device, mirror=False,
                                       overlap=self.window.overlap if overlap is None else overlap,
                                       progress=progress, forward=_sigmoid_two_class)
        if self.lesion_network is not None:
            mask = _liver_probability_lps(liver[1].numpy(), prepared.context) > 0.5
            ctx = prepared.context
            ctx["lesion"] = self._lesion_probability_lps(ctx["lps_xyz"], ctx["spacing_xyz"], mask, device, progress)
        return liver

    def _lesion_probability_lps(self, vol: np.ndarray, spacing: np.ndarray, liver: np.ndarray, device,
                                progress: Progress) -> np.ndarray:
        """Lesion probability on the LPS ``[x, y, z]`` grid of ``vol``, given the liver mask on that grid."""
        from ..inference.sliding_window import predict_sliding_window

        out = np.zeros(vol.shape, np.float32)
        if not liver.any():
            return out
        norm = lp.normalize_ct(vol) if self.modality == "CT" else lp.normalize_mr_lesion(vol, liver)
        zoom = spacing / self.lesion_spacing
        image = lp.zoom3d(norm, zoom)
        region = ndimage.binary_dilation(lp.zoom3d(liver.astype(np.float32), zoom) > 0.5, _DILATE_LESION)
        if not region.any():
            return out
        masked = np.clip(np.where(region, image, -0.5), -0.5, 0.5)
        box = ndimage.find_objects(region.astype(np.int8))[0]
        progress.stage("lesions")
        probs = predict_sliding_window([self.lesion_network], _xyz_to_net(masked[box]), self.lesion_window, 2,
                                       device=device, mirror=False, overlap=self.lesion_window.overlap,
                                       progress=progress, forward=_sigmoid_two_class)
        grid = np.zeros(image.shape, np.float32)
        grid[box] = _net_to_xyz(probs[1].numpy())
        return np.clip(lp.unzoom_linear(grid, vol.shape, zoom), 0, 1)

    def segment_lesions(self, image: Volume, liver: np.ndarray, device="auto",
                        progress: Optional[Progress] = None) -> np.ndarray:
        """Lesion probability ``(k, j, i)`` on ``image``'s grid inside a given liver mask (same grid) — the
        original's use of an existing liver contour instead of its liver network."""
        if self.lesion_network is None:
            raise ModelError(f"Model {self.card.id!r} has no lesion network.", "Use the liver + lesion model.")
        from ..inference.device import resolve_device

        check_image(image)
        ornt = lp.lps_orientation(image.direction, image.spacing)
        vol = lp.to_lps_xyz(image.array, ornt).astype(np.float32)
        p = self._lesion_probability_lps(vol, lp.xyz_spacing(image.spacing, ornt), lp.to_lps_xyz(liver, ornt) > 0,
                                         resolve_device(device), progress or Progress())
        return from_xyz(p, ornt)

    # --- restore ---------------------------------------------------------------------------------------
    def restore(self, logits, prepared: Prepared) -> np.ndarray:
        """Probabilities ``(K, k, j, i)`` on the input grid: background, liver (, lesion)."""
        ctx = prepared.context
        liver = _liver_probability_lps(np.asarray(logits[1], np.float32), ctx)
        if self.lesion_network is None:
            return from_xyz(np.stack([1 - liver, liver]), ctx["ornt"])
        lesion = ctx["lesion"]
        probs = np.stack([(1 - lesion) * (1 - liver), (1 - lesion) * liver, lesion])
        return from_xyz(probs, ctx["ornt"])

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """The original's thresholds: lesion where P(lesion) > 0.5, else liver where P(liver | no lesion) > 0.5."""
        if self.lesion_network is None:
            return (probabilities[1] > 0.5).astype(np.uint16)
        no_lesion = np.maximum(1 - probabilities[2], 1e-8)
        labels = (probabilities[1] / no_lesion > 0.5).astype(np.uint16)
        labels[probabilities[2] > 0.5] = 2
        return labels


def from_xyz(channels_xyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(lp.from_lps_xyz(channels_xyz, ornt), dtype=np.float32)


def load_liver_folder(folder: Path, folds=None, checkpoint: str = WEIGHTS_FILE) -> LiverModel:
    """Load a converted pyliverlesionseg folder (``deepseg-card.json`` + ``weights.pt``)."""
    from .loaders import CARD_FILE
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
