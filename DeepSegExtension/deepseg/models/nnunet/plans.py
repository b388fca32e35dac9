"""Read an nnU-Net v2 ``plans.json`` configuration into the few facts inference needs.

Handles configuration inheritance (``inherits_from``) and the pre-2.3 plans format without an
``architecture`` block (as in TotalSegmentator's published models), rebuilding the architecture
spec the way nnU-Net itself does.
"""
from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Optional

from ...errors import ModelError

# Resampling settings nnU-Net uses when a (very old) plans file names none.
_DEFAULT_DATA_RESAMPLING = {"order": 3, "order_z": 0, "force_separate_z": None}
_DEFAULT_PROB_RESAMPLING = {"order": 1, "order_z": 0, "force_separate_z": None}
_SUPPORTED_RESAMPLING = {"resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing"}


@dataclass
class Resampling:
    order: int
    order_z: int
    force_separate_z: Optional[bool]


@dataclass
class NnUNetConfig:
    """One configuration (``2d``, ``3d_fullres``, ``3d_lowres``) of an nnU-Net plans file."""

    name: str
    transpose_forward: list[int]
    transpose_backward: list[int]
    spacing: list[float]  # target spacing, in transposed axis order (2 entries for 2d)
    patch_size: list[int]
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    intensity_properties: dict[str, dict[str, float]]  # per channel index as a string
    resample_data: Resampling
    resample_probabilities: Resampling
    architecture: dict[str, Any]
    previous_stage: Optional[str]

    @property
    def is_2d(self) -> bool:
        return len(self.patch_size) == 2


def _resampling(conf: dict, key: str, default: dict, plans_file: str) -> Resampling:
    fn = conf.get(f"resampling_fn_{key}", "resample_data_or_seg_to_shape")
    if fn not in _SUPPORTED_RESAMPLING:
        raise ModelError(f"{plans_file} uses the resampling function {fn!r}, which DeepSeg does not implement.",
                         "Use a model trained with nnU-Net's default resampling (resample_data_or_seg_to_shape).")
    kw = {**default, **conf.get(f"resampling_fn_{key}_kwargs", {})}
    return Resampling(int(kw["order"]), int(kw["order_z"]), kw["force_separate_z"])


def _legacy_architecture(conf: dict, plans_file: str) -> dict:
    """The ``architecture`` block nnU-Net >= 2.3 derives from older plans (same rules, same defaults)."""
    cls = conf.get("UNet_class_name")
    classes = {"PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
               "ResidualEncoderUNet": "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet"}
    if cls not in classes:
        raise ModelError(f"{plans_file} describes no network architecture DeepSeg knows ({cls!r}).",
                         "Re-export the model with nnU-Net >= 2.3 plans, or use a PlainConvUNet/ResidualEncoderUNet.")
    n_stages = len(conf["n_conv_per_stage_encoder"])
    dim = len(conf["patch_size"])
    blocks = "n_conv_per_stage" if cls == "PlainConvUNet" else "n_blocks_per_stage"
    return {
        "network_class_name": classes[cls],
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [min(conf["UNet_base_num_features"] * 2 ** i, conf["unet_max_num_features"])
                                   for i in range(n_stages)],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": deepcopy(conf["conv_kernel_sizes"]),
            "strides": deepcopy(conf["pool_op_kernel_sizes"]),
            blocks: deepcopy(conf["n_conv_per_stage_encoder"]),
            "n_conv_per_stage_decoder": deepcopy(conf["n_conv_per_stage_decoder"]),
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _resolve(configs: dict, name: str, plans_file: str, seen: tuple = ()) -> dict:
    if name not in configs:
        raise ModelError(f"{plans_file} has no configuration {name!r}.",
                         "Choose one of: " + ", ".join(sorted(configs)) + ".")
    if name in seen:
        raise ModelError(f"{plans_file}: configuration {name!r} inherits from itself.", "Repair the plans file.")
    conf = deepcopy(configs[name])
    parent = conf.pop("inherits_from", None)
    if parent is None:
        return conf
    merged = _resolve(configs, parent, plans_file, seen + (name,))
    merged.update(conf)
    return merged


def read_configuration(plans: dict, name: str, plans_file: str = "plans.json") -> NnUNetConfig:
    """The configuration ``name`` of a loaded plans dict; ``ModelError`` naming the missing key otherwise."""
    try:
        conf = _resolve(plans["configurations"], name, plans_file)
        arch = conf["architecture"] if "architecture" in conf else _legacy_architecture(conf, plans_file)
        intensity = plans["foreground_intensity_properties_per_channel"]
        return NnUNetConfig(
            name=name,
            transpose_forward=[int(a) for a in plans["transpose_forward"]],
            transpose_backward=[int(a) for a in plans["transpose_backward"]],
            spacing=[float(s) for s in conf["spacing"]],
            patch_size=[int(p) for p in conf["patch_size"]],
            normalization_schemes=list(conf["normalization_schemes"]),
            use_mask_for_norm=[bool(u) for u in conf["use_mask_for_norm"]],
            intensity_properties={str(k): dict(v) for k, v in intensity.items()},
            resample_data=_resampling(conf, "data", _DEFAULT_DATA_RESAMPLING, plans_file),
            resample_probabilities=_resampling(conf, "probabilities", _DEFAULT_PROB_RESAMPLING, plans_file),
            architecture=arch,
            previous_stage=conf.get("previous_stage"),
        )
    except KeyError as exc:
        raise ModelError(f"{plans_file} lacks the entry {exc} needed for configuration {name!r}.",
                         "The plans file is incomplete or from an unsupported nnU-Net version; re-export the "
                         "model with nnU-Net v2.") from exc


def batch_size_for(patch) -> int:
    """Patches per network call: small patches run several to a batch (per-call overhead dominates small
    networks on the CPU: 3x faster for 16x32x32); patches of 64^3 voxels or more run one at a time."""
    return max(1, min(8, (1 << 18) // math.prod(int(n) for n in patch)))
