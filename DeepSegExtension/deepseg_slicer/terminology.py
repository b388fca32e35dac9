"""DeepSeg's structure catalogues (``Resources/terminology/*.json``) as a Slicer terminology
(``SegmentationCategoryTypeModifier-DeepSeg.term.json``, the dcmqi segment-context format of Slicer's
``Modules/Loadable/Terminologies/Resources``), registered with the Terminologies module when Slicer
starts, so the segment terminology selector offers every structure DeepSeg's models output.

One category (SNOMED CT "Anatomical Structure" unless a catalogue says otherwise); one type per
SNOMED CT concept, with its structures' laterality as modifiers (kidney_left and kidney_right are
Kidney + Left/Right), the structure name as ``3dSlicerLabel`` and a distinct recommended colour.
Structures without a SNOMED CT type stay out (they keep their local code, never a guessed one).
"""
from __future__ import annotations

import json
from pathlib import Path

CONTEXT_NAME = "Segmentation category and type - DeepSeg"
FILE_NAME = "SegmentationCategoryTypeModifier-DeepSeg.term.json"
CATALOGUES = ("terminology/totalsegmentator.json", "terminology/brainchop.json")
ANATOMICAL_STRUCTURE = {"value": "123037004", "scheme": "SCT", "meaning": "Anatomical Structure"}


def _code(code: dict) -> dict:
    return {"CodeMeaning": code["meaning"], "CodingSchemeDesignator": code["scheme"], "CodeValue": code["value"]}


def slicer_terminology() -> dict:
    """The terminology document for Slicer's ``LoadTerminologyFromFile``."""
    from deepseg.models.card import distinct_color
    from deepseg.resources import resource_path

    categories: dict[tuple, dict] = {}
    for name in CATALOGUES:
        doc = json.loads(resource_path(name).read_text())
        category_code = doc.get("category") or ANATOMICAL_STRUCTURE
        category = categories.setdefault((category_code["scheme"], category_code["value"]),
                                         {**_code(category_code), "showAnatomy": "false", "Type": []})
        types = {(t["CodingSchemeDesignator"], t["CodeValue"]): t for t in category["Type"]}
        for structure, entry in doc["labels"].items():
            if not entry.get("type"):
                continue
            color = list(distinct_color(sum(len(c["Type"]) for c in categories.values()) + 1))
            key = (entry["type"]["scheme"], entry["type"]["value"])
            kind = types.get(key)
            if kind is None:
                kind = types[key] = {**_code(entry["type"]), "3dSlicerLabel": structure,
                                     "recommendedDisplayRGBValue": color}
                category["Type"].append(kind)
            if entry.get("modifier"):
                modifiers = kind.setdefault("Modifier", [])
                if all(m["CodeValue"] != entry["modifier"]["value"] for m in modifiers):
                    modifiers.append({**_code(entry["modifier"]), "3dSlicerLabel": structure,
                                      "recommendedDisplayRGBValue": kind["recommendedDisplayRGBValue"]})
    return {"SegmentationCategoryTypeContextName": CONTEXT_NAME,
            "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
            "SegmentationCodes": {"Category": list(categories.values())}}


def register_terminology(terminologies_logic, folder: "str | Path") -> str:
    """Write the .term.json into ``folder`` and load it with the Terminologies module logic
    (``slicer.util.getModuleLogic("Terminologies")``); returns the context name Slicer reports.
    The file is rewritten at every Slicer start, through a temporary file renamed over it: another
    Slicer starting at the same time never reads half a file, and a failed write keeps the last one."""
    from deepseg.io.atomic import write_atomically

    path = Path(folder) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(slicer_terminology(), indent=1)
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return terminologies_logic.LoadTerminologyFromFile(str(path))
