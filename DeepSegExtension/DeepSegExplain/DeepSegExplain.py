"""DeepSegExplain: heat maps and uncertainty maps that show why and where a model segmented (DeepSeg)."""
from __future__ import annotations

import os
import sys

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_EXTENSION_DIR, "deepseg_slicer")) and _EXTENSION_DIR not in sys.path:
    sys.path.append(_EXTENSION_DIR)  # run from a source checkout ("Additional module paths")

from deepseg_slicer.compat import HAS_QT, ScriptedLoadableModule, _, describe_module  # noqa: E402
from deepseg_slicer.selftest import SelfTestCase  # noqa: E402
from DeepSegExplainLib.Logic import DeepSegExplainLogic  # noqa: E402,F401
from DeepSegExplainLib.Parameters import DeepSegExplainParameterNode  # noqa: E402,F401

if HAS_QT:  # the panel needs Qt; headless (slicer-core only) the module offers logic, parameters, self-test
    from DeepSegExplainLib.Widget import DeepSegExplainWidget  # noqa: F401

HELP = _("""
<p>Shows which image regions drove a segment, and where the model is unsure.</p>
<ul>
<li>Pick the <b>Segmentation</b>, the <b>Segment</b>, the <b>Image</b> the model segmented and the <b>Model</b>
that made it (guessed from the segment's name). A model with several inputs gets the Image for the input
whose name pattern it matches and the scene's other volumes for the rest, chosen by name as in DeepSeg Tumor.</li>
<li><b>Compute maps</b> runs, in a separate process, a Grad-CAM-family <b>Method</b> (gradcam, gradcam++, hirescam,
layer-sum) patch by patch along the model's own sliding window, for the voxels of the chosen segment, and
(<b>Uncertainty map</b>) the model's fold disagreement, test-time-augmentation variance or entropy. Both maps
are in [0, 1] on the image grid. The button turns into <b>Cancel</b> while running.</li>
<li><b>Display</b>: the shown map (heat map or uncertainty) is the foreground layer of the slice views with the
chosen <b>Colour map</b> and <b>Opacity</b>; voxels below the <b>Threshold</b> are transparent.
<b>Threshold to segment</b> adds the voxels at or above the threshold as a new segment.</li>
</ul>
<p>A heat map shows what the network used, not whether it was right. Not for clinical use.</p>
""")

ACKNOWLEDGEMENT = _("""
Grad-CAM: Selvaraju RR et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization, ICCV 2017. Grad-CAM++: Chattopadhay A et al., WACV 2018. HiResCAM: Draelos RL, Carin L, 2020.
""")


class DeepSegExplain(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(self.parent, _("DeepSeg Explain"), HELP, ACKNOWLEDGEMENT)


class DeepSegExplainTest(SelfTestCase):
    """Segments generated data with a generated model, explains one segment, thresholds the map."""

    def test_explain_generated_segment(self) -> None:
        import tempfile

        import numpy as np

        from deepseg_slicer import mrml
        from deepseg_slicer.selftest import make_test_model, synthetic_ct
        from deepseg_slicer.tasks import SegmentRequest, SegmentTask

        scene = self.scene
        volume = synthetic_ct()
        node = mrml.volume_to_node(volume, scene)
        logic = DeepSegExplainLogic(scene)
        with tempfile.TemporaryDirectory() as folder:
            model = str(make_test_model(os.path.join(folder, "model")))
            seg = SegmentTask(SegmentRequest(model, [node]), scene).start().wait()
            segment_id = seg.GetSegmentation().GetSegmentIdBySegmentName("Liver")
            maps = logic.explain(seg, segment_id, model, [node], uncertainty=True, wait=True)
        heat = mrml.volume_from_node(maps["heatmap"])
        self.assertTrue(heat.same_grid(volume, tol=1e-4))
        self.assertTrue(0.0 <= float(heat.array.min()) and float(heat.array.max()) <= 1.0 + 1e-6)
        self.assertIsNotNone(maps["uncertainty"])
        level = float(np.quantile(heat.array, 0.9))
        new_id = logic.thresholdToSegment(maps["heatmap"], level, seg)
        labels, _ = mrml.segmentation_to_labels(seg, node, [new_id])
        self.assertEqual(int((labels.array > 0).sum()), int((heat.array >= level).sum()))
        self.delayDisplay("DeepSegExplain test passed")
