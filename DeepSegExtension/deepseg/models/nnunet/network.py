"""Build the network a plans file describes and load one fold's weights into it.

Plans name classes by dotted path (``dynamic_network_architectures...PlainConvUNet``,
``torch.nn.LeakyReLU``).  A plans file is data, so only names under ``torch.nn`` and
``dynamic_network_architectures.architectures``/``building_blocks`` are imported: a crafted plans file
cannot make DeepSeg import arbitrary modules.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import torch
from torch import nn

from ...errors import ModelError
from ..safe_load import load_checkpoint

_ALLOWED = ("torch.nn.", "dynamic_network_architectures.architectures.",
            "dynamic_network_architectures.building_blocks.")


def locate(name: str, plans_file: str = "plans.json"):
    """The class a plans file names, from the allowed packages only."""
    if not name.startswith(_ALLOWED):
        if "." not in name:  # bare class name: nnU-Net searches dynamic_network_architectures.architectures
            return _find_architecture(name, plans_file)
        raise ModelError(f"{plans_file} names {name!r}, outside the packages DeepSeg imports network parts from.",
                         "Only torch.nn and dynamic_network_architectures classes are allowed in plans files.")
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return _find_architecture(attr, plans_file)


def _find_architecture(cls: str, plans_file: str):
    try:
        import dynamic_network_architectures.architectures as archs
    except ImportError as exc:
        raise ModelError("nnU-Net models need the package dynamic_network_architectures.",
                         "pip install dynamic_network_architectures (it comes with nnunetv2).") from exc
    for info in pkgutil.walk_packages(archs.__path__, archs.__name__ + "."):
        try:
            found = getattr(importlib.import_module(info.name), cls, None)
        except ImportError:
            continue
        if isinstance(found, type):
            return found
    raise ModelError(f"{plans_file} names the network class {cls!r}, which dynamic_network_architectures "
                     "does not have.", "Update dynamic_network_architectures, or use a model with a standard "
                                       "nnU-Net architecture.")


def build_network(architecture: dict, in_channels: int, out_channels: int, plans_file: str = "plans.json",
                  device: "str | torch.device" = "cpu") -> nn.Module:
    """The network of a configuration's ``architecture`` block, without deep supervision; on ``meta`` it
    has shapes but no values (``network_with_weights`` then puts the checkpoint's tensors in)."""
    kwargs = dict(architecture.get("arch_kwargs", {}))
    for key in architecture.get("_kw_requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = locate(kwargs[key], plans_file)
    cls = locate(architecture["network_class_name"], plans_file)
    try:
        with torch.device(device):
            return cls(input_channels=in_channels, num_classes=out_channels, deep_supervision=False, **kwargs)
    except TypeError as exc:
        raise ModelError(f"{plans_file}: cannot build {cls.__name__} from the plans ({exc}).",
                         "The plans and the installed dynamic_network_architectures do not match; "
                         "update dynamic_network_architectures.") from exc


def read_fold(checkpoint_path: Path) -> dict:
    """A fold's checkpoint, loaded safely (weights-only unpickling)."""
    ckpt = load_checkpoint(checkpoint_path)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise ModelError(f"{checkpoint_path} is not an nnU-Net v2 checkpoint (no 'network_weights').",
                         "Point DeepSeg at the results folder that nnUNetv2_train wrote.")
    return ckpt


def network_with_weights(architecture: dict, in_channels: int, out_channels: int, ckpt: dict,
                         checkpoint_path: Path, plans_file: str = "plans.json") -> nn.Module:
    """The network of ``architecture`` holding a fold's weights, in eval mode; ``ModelError`` if they do not fit.

    Built on ``meta`` (shapes, no values), it takes the checkpoint's tensors themselves (cast to the module's
    dtype, contiguous): no random initialisation for the weights to overwrite, no second copy of them. A
    network with tensors a checkpoint does not hold (non-persistent buffers) is built on the CPU instead."""
    weights = {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt["network_weights"].items()}
    network = build_network(architecture, in_channels, out_channels, plans_file, device="meta")
    expected = network.state_dict()
    assigned = {k: v.to(expected[k].dtype).contiguous() if k in expected else v for k, v in weights.items()}
    _load(network, assigned, checkpoint_path, assign=True)
    if any(t.is_meta for t in [*network.parameters(), *network.buffers()]):
        network = build_network(architecture, in_channels, out_channels, plans_file)
        _load(network, weights, checkpoint_path, assign=False)
    return network.eval()


def _load(network: nn.Module, weights: dict, checkpoint_path: Path, assign: bool) -> None:
    try:
        network.load_state_dict(weights, assign=assign)
    except RuntimeError as exc:
        raise ModelError(f"The weights in {checkpoint_path} do not fit the network its plans.json describes "
                         f"({str(exc).splitlines()[0]}).",
                         "Use the plans.json and dataset.json that were trained with these weights (a custom "
                         "trainer that changes the architecture is not supported).") from exc
