"""Read a TensorFlow.js *layers* model (``model.json`` + binary weight shards) without TensorFlow.

``model.json`` holds the Keras topology (``modelTopology``) and a ``weightsManifest``: groups of
shard files that, concatenated, hold the listed weights back to back in manifest order.  Weights
may be quantised (``quantization: {dtype: uint8|uint16, scale, min}`` -> ``q * scale + min``, or
``dtype: float16``).  The result is plain numpy arrays keyed by weight name
(``"conv3d_0/kernel"``), in TensorFlow layout (Conv3D kernels are ``(kd, kh, kw, in, out)``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16,
           "uint8": np.uint8, "uint16": np.uint16, "int8": np.int8, "int16": np.int16}


@dataclass
class TfjsModel:
    """Topology layers (Keras ``{"class_name", "config"}`` dicts, in order) and weights by name."""

    layers: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def layer_weights(self, layer_name: str) -> dict[str, np.ndarray]:
        """``{"kernel": ..., "bias": ...}`` of one layer (only the ones it has)."""
        prefix = layer_name + "/"
        return {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}


def _decode(buf: bytes, spec: dict, where: str) -> tuple[np.ndarray, int]:
    """One weight from the start of ``buf`` -> (float32/int array in its shape, bytes consumed)."""
    shape = tuple(int(s) for s in spec.get("shape", []))
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    stored = quant.get("dtype") if quant else spec.get("dtype", "float32")
    if stored not in _DTYPES:
        raise ModelError(f"{where}: weight {spec.get('name')!r} has unsupported dtype {stored!r}.",
                         "Only float32/float16/int32/bool and uint8/uint16-quantised weights are supported; "
                         "re-export the model with tensorflowjs_converter.")
    dt = np.dtype(_DTYPES[stored]).newbyteorder("<")
    nbytes = count * dt.itemsize
    if len(buf) < nbytes:
        raise ModelError(f"{where}: weight {spec.get('name')!r} needs {nbytes} bytes but only {len(buf)} remain; "
                         "the weight shards are truncated.", "Download the model files again.")
    arr = np.frombuffer(buf, dtype=dt, count=count)
    if quant and stored in ("uint8", "uint16", "int8", "int16"):
        arr = arr.astype(np.float32) * np.float32(quant.get("scale", 1.0)) + np.float32(quant.get("min", 0.0))
    elif stored == "float16" or spec.get("dtype", "float32") == "float32":
        arr = arr.astype(np.float32)
    return arr.reshape(shape).copy(), nbytes


def read_tfjs_model(folder: "str | Path", model_file: str = "model.json") -> TfjsModel:
    """Parse ``folder/model.json`` and its shards; every problem is a ``ModelError`` saying what to do."""
    folder = Path(folder)
    path = folder / model_file
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{path} does not exist.", "Point DeepSeg at a TensorFlow.js model folder.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}).", "Download the model again.") from exc
    try:
        config = spec["modelTopology"]["model_config"]["config"]
        layers = config["layers"] if isinstance(config, dict) else config
        manifest = spec["weightsManifest"]
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a TensorFlow.js layers model (missing {exc}).",
                         "Only Keras 'layers-model' exports (tensorflowjs_converter) are supported.") from exc

    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        chunks = []
        for name in group.get("paths", []):
            shard = folder / name
            if not shard.is_file():
                raise ModelError(f"Weight shard {shard} named in {path.name} is missing.",
                                 "Copy every file of the model folder (model.json and all *.bin shards).")
            chunks.append(shard.read_bytes())
        buf = b"".join(chunks)
        offset = 0
        for w in group.get("weights", []):
            arr, used = _decode(buf[offset:], w, f"{folder.name}/{model_file}")
            weights[str(w["name"])] = arr
            offset += used
        if offset != len(buf):
            raise ModelError(f"{folder.name}: shards {group.get('paths')} hold {len(buf)} bytes but the manifest "
                             f"describes {offset}.", "The weight files do not match model.json; download both again.")
    meta = {k: v for k, v in spec.items() if k not in ("modelTopology", "weightsManifest")}
    return TfjsModel(layers=list(layers), weights=weights, meta=meta)
