"""Fill in SNOMED CT codes and TG-263 names for labels that arrive with a name only (e.g. a label
map with TotalSegmentator's ``{"5": "liver"}`` JSON), from the catalogue in
``Resources/terminology/totalsegmentator.json``.  Labels that already carry a type code keep it;
names the catalogue does not know stay uncoded (exported with a local code, never a guess)."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import lru_cache
from typing import Sequence

from ..models.card import Code, LabelInfo
from ..resources import resource_path

CATALOGUES = ("terminology/totalsegmentator.json",)


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict]:
    """Normalised structure name -> entry (type, modifier, tg263, category)."""
    out: dict[str, dict] = {}
    for name in CATALOGUES:
        doc = json.loads(resource_path(name).read_text())
        for key, entry in doc["labels"].items():
            out[normalise(key)] = {"category": doc.get("category"), **entry}
    return out


def with_terminology(labels: Sequence[LabelInfo]) -> list[LabelInfo]:
    """``labels`` with missing type/modifier codes and TG-263 names filled from the catalogue."""
    table = catalogue()
    out = []
    for lab in labels:
        entry = table.get(normalise(lab.name))
        if entry is None:
            out.append(lab)
            continue
        changes: dict = {}
        if lab.type is None and entry.get("type"):
            changes.update(type=Code.from_json(entry["type"]), modifier=Code.from_json(entry.get("modifier")),
                           category=Code.from_json(entry.get("category")) or lab.category)
        if lab.tg263 is None and entry.get("tg263"):
            changes["tg263"] = entry["tg263"]
        out.append(replace(lab, **changes) if changes else lab)
    return out
