"""The Slicer panels' model choices (deepseg_slicer.models): a model's known limitations reach the info box."""
from __future__ import annotations


def test_limitations_are_in_the_panel_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path))
    from deepseg_slicer.models import model_choices

    choices = {c.id: c for c in model_choices(["tumour-lesion"])}
    assert "Limitations: Fails on the public TotalSegmentator MR example" in choices["pyliverlesionseg-liver-lesion-mr"].summary
    assert "Limitations" not in choices["totalseg-liver-lesions"].summary
