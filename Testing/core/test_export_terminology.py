"""The terminology catalogue fills codes and TG-263 names by name, never overrides, never guesses."""
from __future__ import annotations

from deepseg.export.terminology import catalogue, with_terminology
from deepseg.models.card import Code, LabelInfo


def test_catalogue_fills_codes_and_tg263_by_name():
    out = with_terminology([LabelInfo(3, "kidney_left"), LabelInfo(5, "Liver"), LabelInfo(9, "vertebrae T12"),
                            LabelInfo(7, "not a structure")])
    kidney, liver, vertebra, unknown = out
    assert (kidney.type.value, kidney.modifier.meaning, kidney.tg263) == ("64033007", "Left", "Kidney_L")
    assert (liver.type.value, liver.tg263) == ("10200004", "Liver")
    assert vertebra.tg263 == "VB_T12"
    assert unknown == LabelInfo(7, "not a structure")


def test_existing_codes_and_names_are_kept():
    own = LabelInfo(1, "liver", type=Code("T-62000", "SRT", "Liver"), tg263="Liver_Custom")
    assert with_terminology([own]) == [own]


def test_catalogue_codes_are_snomed_and_unique_per_side():
    entries = catalogue()
    assert len(entries) > 100
    assert all(e["type"]["scheme"] == "SCT" for e in entries.values() if "type" in e)
    keys = [(e["type"]["value"], e.get("modifier", {}).get("value"), e.get("tg263")) for e in entries.values() if "type" in e]
    assert len(keys) == len(set(keys))
