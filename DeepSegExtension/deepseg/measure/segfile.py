"""Read a segmentation from disk as a label ``Volume`` plus its ``LabelInfo`` list.

Accepted: Slicer ``.seg.nrrd`` (names, colours and terminology inside), or any label-map volume
(NIfTI, NRRD, MHA, MGZ) with an optional labels JSON that is either a list of label objects (as in
model cards), a model card (``{"labels": [...]}``), or a ``{"value": "name"}`` map (as
TotalSegmentator's ``labels_total.json``).  Without a JSON, segments are named ``Segment_<value>``.
Names known to the terminology catalogue get their SNOMED CT codes and TG-263 names filled in.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..export.terminology import with_terminology
from ..io import full_suffix, read_volume
from ..models.card import LabelInfo
from ..volume import Volume
from .segments import default_labels, present_values


def read_labels_json(path: "str | Path") -> list[LabelInfo]:
    """Labels from any of the three JSON shapes described in the module docstring."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"Labels file {path} does not exist.", "Check the --labels path.") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"Labels file {path} is not valid JSON ({exc}).", "Repair the file.") from exc
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        data = data["labels"]
    try:
        if isinstance(data, list):
            return [LabelInfo.from_json(d) for d in data if int(d["value"]) != 0]
        if isinstance(data, dict):
            return [LabelInfo(int(v), str(n)) for v, n in data.items() if int(v) != 0]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"Labels file {path} is malformed ({exc!r}).",
                         'Use a list of {"value": 1, "name": "liver", ...} objects or a {"1": "liver"} map.') from exc
    raise InputError(f"Labels file {path} holds neither a label list nor a value->name map.",
                     'Use a list of {"value": 1, "name": "liver", ...} objects or a {"1": "liver"} map.')


def read_segmentation(path: "str | Path", labels_json: "str | Path | None" = None,
                      only_present: bool = False) -> tuple[Volume, list[LabelInfo]]:
    """Label map and labels of a segmentation file.  ``only_present`` drops labels with no voxels
    (useful for catalogues such as TotalSegmentator's 117 classes on a small crop)."""
    path = Path(path)
    labels: Optional[list[LabelInfo]] = None
    if full_suffix(path).lower() == ".seg.nrrd":
        from ..export.seg_nrrd import read_seg_nrrd

        volume, labels = read_seg_nrrd(path)
    else:
        volume = read_volume(path)
    if labels_json:
        labels = read_labels_json(labels_json)
    if only_present or labels is None:
        present = present_values(volume)
        labels = default_labels(present) if labels is None else [lab for lab in labels if lab.value in set(present)]
    return volume, with_terminology(labels)
