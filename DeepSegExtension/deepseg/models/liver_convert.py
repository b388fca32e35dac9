"""Convert the Keras HDF5 weights of ``pyliverlesionseg`` into a DeepSeg model folder.

The HDF5 files hold weights only (no topology), so the two architectures are described here, from
the calls to ``create_unet_like_model`` in ``pyliverlesionseg/cnn_liver_lesion_seg_CT_MR_functions.py``
(kernel sizes turned from Keras ``(x, y, z)`` into PyTorch ``(z, y, x)`` order).  A file is recognised by
its sequence of convolution kernel shapes, so a wrong or corrupt file is refused instead of loaded.

Output folder: ``deepseg-card.json`` (format ``pyliverlesionseg``) and ``weights.pt`` — a plain
state dict whose keys start with ``liver.`` (and ``lesion.`` for the liver + lesion cascade).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ModelError
from .card import ANATOMICAL_STRUCTURE, MORPHOLOGICALLY_ALTERED, Code, InputSpec, LabelInfo, ModelCard

WEIGHTS_FILE = "weights.pt"
LIVER_H5 = "pyliverlesionseg/trained_models/model_unet_ct_mr_liv_seg_resize_1.5mm_med_3_resize_3mm_20201011_dice_loss_val_binary_dice_mean.hdf5"
LESION_H5 = "pyliverlesionseg/trained_models/model_unet_ct_mr_lesion_seg_resize_1mm_1mm_3mm_20220207_dice_loss_val_binary_dice_mean.hdf5"

_K1, _K3 = (1, 3, 3), (3, 3, 3)  # Keras (3, 3, 1) and (3, 3, 3) in (z, y, x) order

# Architectures (PyTorch axis order z, y, x).  Patch sizes are those the original predicts with:
# liver output [163, 136, 136] (x, y, z), lesion output [92, 84, 42] (x, y, z).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "liver": {
        "factors": [[1, 1, 1], [3, 3, 3], [9, 9, 9], [27, 27, 27]],
        "down_kernels": [[_K1, _K3], [_K1, _K3], [_K1, _K3], [_K3, _K3]],
        "down_features": [[20, 40], [40, 80], [80, 160], [160, 160]],
        "up_kernels": [[_K3, _K1], [_K3, _K1], [_K3, _K1], []],
        "up_features": [[40, 20], [80, 40], [160, 80], []],
        "padding": "same", "upsampling": "linear", "residual": False,
        "in_channels": 1, "out_channels": 1,
        "patch_size": [162, 162, 189], "output_size": [136, 136, 163],
    },
    "lesion": {
        "factors": [[1, 1, 1], [2, 2, 2], [4, 4, 4], [8, 8, 8]],
        "down_kernels": [[_K1, _K3], [_K1, _K3], [_K1, _K3], [_K1, _K3]],
        "down_features": [[20, 40], [40, 80], [80, 160], [160, 160]],
        "up_kernels": [[_K3, _K1], [_K3, _K1], [_K3, _K1], []],
        "up_features": [[40, 20], [80, 40], [160, 80], []],
        "padding": "valid", "upsampling": "copy", "residual": True,
        "in_channels": 1, "out_channels": 1,
        "patch_size": [86, 172, 180], "output_size": [42, 84, 92],
    },
}

LIVER = LabelInfo(1, "Liver", (221, 130, 101), ANATOMICAL_STRUCTURE, Code("10200004", "SCT", "Liver"),
                  tg263="Liver", interpreted_type="ORGAN")
LIVER_LESION = LabelInfo(2, "Liver lesion", (241, 214, 145), MORPHOLOGICALLY_ALTERED,
                         Code("52988006", "SCT", "Lesion"), modifier=None, interpreted_type="GTV")

LICENSE = "Apache-2.0 (pyliverlesionseg 0.3, KU Leuven / UZ Leuven)"
CITATION = ("pyliverlesionseg 0.3 (PyPI): CNN liver and liver-lesion segmentation of CT and MR, "
            "built on DeepVoxNet (Robben et al., Medical Image Analysis 2020).")


def _conv_layers(h5) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, kernel, bias)`` of every Conv3D layer, numbered as Keras created them."""
    layers = []
    for raw in h5.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in h5[name].attrs["weight_names"]]
        if name.startswith("conv3d_") and len(weight_names) == 2:
            kernel = next(w for w in weight_names if "kernel" in w)
            bias = next(w for w in weight_names if "bias" in w)
            layers.append((name, np.asarray(h5[name][kernel]), np.asarray(h5[name][bias])))
    return sorted(layers, key=lambda t: int(t[0].split("_")[1]))


def read_keras_h5(h5_path: "str | Path") -> tuple[str, dict[str, np.ndarray], list[float]]:
    """Identify a pyliverlesionseg HDF5 file and return ``(kind, state_dict, voxel_size_xyz_mm)``.

    ``kind`` is ``"liver"`` or ``"lesion"``; the state dict fits ``LiverUNet(ARCHITECTURES[kind])``.
    """
    import h5py
    import torch

    from .networks.liver_unet import LiverUNet

    path = Path(h5_path)
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            convs = _conv_layers(group)
            voxel_size = [float(v) for v in f["header/voxel_size"][()]] if "header/voxel_size" in f else None
    except (OSError, KeyError) as exc:
        raise ModelError(f"{path} is not a readable Keras HDF5 weight file ({exc}).",
                         "Fetch the pyliverlesionseg model again.") from exc
    for kind, arch in ARCHITECTURES.items():
        net = LiverUNet(arch)
        order = net.keras_conv_order()
        expected = [tuple(net.get_submodule(n).weight.shape) for n in order]
        found = [tuple(np.transpose(k, (4, 3, 2, 1, 0)).shape) for _, k, _ in convs]
        if expected == found:
            state = {}
            for name, (_, kernel, bias) in zip(order, convs):
                # Keras kernel (x, y, z, in, out) -> PyTorch (out, in, z, y, x); both are cross-correlations
                state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (4, 3, 2, 1, 0))))
                state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
            if voxel_size is None:
                raise ModelError(f"{path} has no header/voxel_size (the training spacing).",
                                 "Use the unmodified pyliverlesionseg weight file.")
            return kind, state, voxel_size
    raise ModelError(f"{path} holds {len(convs)} convolutions whose shapes match neither the pyliverlesionseg "
                     "liver nor the lesion network.", "Use the HDF5 files shipped in pyliverlesionseg==0.3.")


def convert_keras_h5(h5_path: "str | Path", out_folder: "str | Path", lesion_h5: "str | Path | None" = None,
                     modality: str = "CT", model_id: Optional[str] = None) -> Path:
    """Write a DeepSeg model folder from the liver HDF5 (and, for the cascade, the lesion HDF5).

    ``modality`` ("CT" or "MR") selects the original's body crop and intensity handling (the networks
    were trained on both).  Returns the folder.
    """
    import torch

    modality = modality.upper()
    if modality not in {"CT", "MR"}:
        raise ModelError(f"Unknown modality {modality!r} for the pyliverlesionseg model.", "Use CT or MR.")
    kind, liver_state, liver_spacing = read_keras_h5(h5_path)
    if kind != "liver":
        raise ModelError(f"{h5_path} is the lesion network, not the liver network.",
                         "Pass the liver HDF5 first and the lesion HDF5 as lesion_h5.")
    state = {f"liver.{k}": v for k, v in liver_state.items()}
    architecture = {"liver": ARCHITECTURES["liver"]}
    preprocessing: dict[str, Any] = {"modality": modality, "liver_spacing_xyz": liver_spacing}
    labels = [LIVER]
    if lesion_h5 is not None:
        kind, lesion_state, lesion_spacing = read_keras_h5(lesion_h5)
        if kind != "lesion":
            raise ModelError(f"{lesion_h5} is not the lesion network.", "Pass the lesion HDF5 as lesion_h5.")
        state.update({f"lesion.{k}": v for k, v in lesion_state.items()})
        architecture["lesion"] = ARCHITECTURES["lesion"]
        preprocessing["lesion_spacing_xyz"] = lesion_spacing
        labels.append(LIVER_LESION)
    stages = "liver-lesion" if lesion_h5 is not None else "liver"
    card = ModelCard(
        id=model_id or f"pyliverlesionseg-{stages}-{modality.lower()}",
        title=f"pyliverlesionseg {'liver and liver lesions' if lesion_h5 is not None else 'liver'} ({modality})",
        format="pyliverlesionseg", labels=labels, inputs=[InputSpec("image", modality, "*")], version="0.3",
        description=("Multi-resolution 3D U-Net (DeepVoxNet) trained on CT and MR; body crop, 3 mm grid for the "
                     "liver" + ("; lesions by a second U-Net at 1x1x3 mm inside the dilated liver mask."
                                if lesion_h5 is not None else ".")),
        architecture=architecture, preprocessing=preprocessing, license=LICENSE, citation=CITATION)
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / WEIGHTS_FILE)
    (out / "deepseg-card.json").write_text(json.dumps(card.to_json(), indent=2))
    return out
