"""The Explain panel's logic starts ``deepseg explain`` with mirroring TTA only when it asks for the
uncertainty map (the mirrorings are that map's members); a plain heat map runs the prediction once,
as the segmentation panels made it."""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import numpy as np
import pytest

from deepseg.errors import Cancelled


@pytest.mark.parametrize("uncertainty", [False, True])
def test_tta_only_for_the_uncertainty_map(scene, oblique_volume, tmp_path, monkeypatch, uncertainty):
    from deepseg.models.card import LabelInfo
    from deepseg_slicer import mrml
    from deepseg_slicer.selftest import make_test_model

    model = str(make_test_model(tmp_path / "m"))
    ct = mrml.volume_to_node(oblique_volume, scene, name="ct")
    seg = mrml.labels_to_segmentation(oblique_volume.with_array((oblique_volume.array > 100).astype(np.uint8)),
                                      [LabelInfo(1, "Liver")], scene, source_node=ct)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "DeepSegExtension" / "DeepSegExplain"))
    logic = importlib.import_module("DeepSegExplainLib.Logic").DeepSegExplainLogic(scene)
    task = logic.explain(seg, seg.GetSegmentation().GetNthSegmentID(0), model, [ct], uncertainty=uncertainty,
                         device="cpu")
    try:
        argv = task.job.argv
    finally:  # only the command line matters here: stop the run
        task.cancel()
        with contextlib.suppress(Cancelled):
            task.wait(timeout=120)
    assert ("--tta" in argv) == uncertainty
    assert ("--uncertainty" in argv) == uncertainty
