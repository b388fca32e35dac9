"""Assign volume nodes to a model's named inputs (e.g. FLAIR, T1, T1c, T2) from their names.

Each ``InputSpec.pattern`` is a case-insensitive glob; several alternatives may be given separated
by ``|`` (``"*t1c*|*t1ce*|*gad*"``).  Inputs with the most specific pattern (most literal characters)
choose first, so ``T1c`` claims "T1c_post" before ``T1`` (``*t1*``) can; each node is used once and
an input with no matching node stays unassigned (the panel asks the user to pick it).
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Optional, Sequence

from deepseg.models.card import InputSpec


def _alternatives(pattern: str) -> list[str]:
    return [p.strip().lower() for p in pattern.split("|") if p.strip()] or ["*"]


def _specificity(spec: InputSpec) -> int:
    return max(sum(ch not in "*?[]" for ch in alt) for alt in _alternatives(spec.pattern))


def matches(spec: InputSpec, name: str) -> bool:
    return any(fnmatchcase(name.lower(), alt) for alt in _alternatives(spec.pattern))


def assign_channels(inputs: Sequence[InputSpec], names: Sequence[str]) -> dict[str, Optional[str]]:
    """``{input name: chosen node name or None}`` in the model's input order."""
    chosen: dict[str, Optional[str]] = {spec.name: None for spec in inputs}
    used: set[str] = set()
    for spec in sorted(inputs, key=_specificity, reverse=True):
        for name in names:
            if name not in used and matches(spec, name):
                chosen[spec.name] = name
                used.add(name)
                break
    if len(inputs) == 1 and chosen[inputs[0].name] is None and names:
        chosen[inputs[0].name] = names[0]  # a single-input model takes the first volume
    return chosen


def model_inputs(model: str) -> list[InputSpec]:
    """The named inputs of a model folder (its card) or catalog id, without loading any weights."""
    if Path(model).is_dir():
        from deepseg.models.card_model import read_card

        return list(read_card(Path(model)).inputs)
    from deepseg.models.catalog import load_catalog

    return list(load_catalog().get(model).card().inputs)


def scene_volumes(scene) -> list:
    """Scalar volume nodes of the scene (label maps excluded), in scene order."""
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    return [n for n in nodes if not n.IsA("vtkMRMLLabelMapVolumeNode")]


def assign_nodes(specs: Sequence[InputSpec], nodes: Sequence) -> list:
    """``assign_channels`` on volume nodes: one node (or None) per input, in the model's order."""
    by_name = {n.GetName(): n for n in nodes}
    chosen = assign_channels(specs, list(by_name))
    return [by_name.get(chosen[spec.name]) for spec in specs]
