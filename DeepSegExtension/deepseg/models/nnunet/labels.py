"""nnU-Net ``dataset.json`` labels -> DeepSeg ``LabelInfo`` (names, colours, SNOMED CT codes).

nnU-Net labels are ``{"background": 0, "liver": 1, ...}``; region-based models (BraTS style) map a
name to a list of labels and give ``regions_class_order``, the label value each output channel
paints.  Codes come from the DICOM code dictionary shipped with pydicom when a label's name is a
known SNOMED CT concept (``liver`` -> 10200004; ``kidney_left`` -> Kidney + modifier Left); a model
card or catalog entry can replace the whole list (``overrides``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from ...errors import ModelError
from ..card import LabelInfo

@dataclass
class LabelScheme:
    """What the network's output channels mean."""

    labels: list[LabelInfo]  # foreground structures, in output order
    regions: bool  # sigmoid per region (True) or softmax over background + labels (False)
    num_heads: int  # network output channels
    region_order: list[int]  # regions: label value painted by channel i, in painting order


def _code(name: str):
    try:
        from pydicom.sr.codedict import codes
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return None
    from ..card import Code

    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    try:
        c = getattr(codes.SCT, camel)
    except AttributeError:
        return None
    return Code(str(c.value), str(c.scheme_designator), str(c.meaning))


def label_info(value: int, name: str) -> LabelInfo:
    """A label with a distinct colour and, when its name is a known SNOMED CT concept, its codes."""
    base, side = name, None
    m = re.match(r"^(.*?)[_ -](left|right)$", name, re.IGNORECASE)
    if m:
        base, side = m.group(1), m.group(2)
    type_code = _code(base)
    return LabelInfo(value=value, name=name, type=type_code,
                     modifier=_code(side) if (side and type_code) else None)


def _normalise_label_dict(labels: dict, dataset_file: str) -> dict:
    """nnU-Net v2 maps name -> value; accept the v1 layout (value -> name) too."""
    if labels and all(str(k).isdigit() and isinstance(v, str) for k, v in labels.items()):
        return {v: int(k) for k, v in labels.items()}
    if "background" not in labels:
        raise ModelError(f"{dataset_file} declares no 'background' label.",
                         "nnU-Net v2 dataset.json files map 'background' to 0; repair the file.")
    return labels


def read_labels(dataset: dict, dataset_file: str = "dataset.json",
                overrides: Optional[Sequence[LabelInfo]] = None) -> LabelScheme:
    """The label scheme of a ``dataset.json`` dict (``overrides`` replace names/colours/codes by value)."""
    if "labels" not in dataset:
        raise ModelError(f"{dataset_file} has no 'labels' entry.", "Use the dataset.json the model was trained with.")
    labels = _normalise_label_dict(dataset["labels"], dataset_file)
    fg = [(k, v) for k, v in labels.items() if k not in ("background", "ignore")]
    regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for _, v in fg)
    if regions:
        order = dataset.get("regions_class_order")
        region_names = [k for k, v in fg if not (isinstance(v, (list, tuple)) and set(v) == {0})]
        if order is None or len(order) != len(region_names):
            raise ModelError(f"{dataset_file} defines regions but no matching 'regions_class_order'.",
                             "Use the dataset.json the model was trained with.")
        infos = [label_info(int(v), n) for n, v in zip(region_names, order)]
        scheme = LabelScheme(infos, True, len(region_names), [int(v) for v in order])
    else:
        values = sorted({int(v[0]) if isinstance(v, (list, tuple)) else int(v) for _, v in fg})
        names = {int(v[0]) if isinstance(v, (list, tuple)) else int(v): n for n, v in fg}
        if values != list(range(1, len(values) + 1)):
            raise ModelError(f"{dataset_file} labels are not consecutive 0..N ({values}).",
                             "nnU-Net requires consecutive label values; use the model's original dataset.json.")
        infos = [label_info(v, names[v]) for v in values]
        scheme = LabelScheme(infos, False, len(values) + 1, [])
    if overrides:
        by_value = {lab.value: lab for lab in overrides}
        scheme.labels = [by_value.get(lab.value, lab) for lab in scheme.labels]
    return scheme
