"""DeepSegOAR: organs-at-risk segmentation with pretrained 3D networks (DeepSeg extension)."""
from __future__ import annotations

import os
import sys

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_EXTENSION_DIR, "deepseg_slicer")) and _EXTENSION_DIR not in sys.path:
    sys.path.append(_EXTENSION_DIR)  # run from a source checkout ("Additional module paths")

from deepseg_slicer.compat import HAS_QT, IN_SLICER, ScriptedLoadableModule, _, describe_module  # noqa: E402
from deepseg_slicer.selftest import SelfTestCase  # noqa: E402
from deepseg_slicer.models import OAR_GROUPS, acknowledgement  # noqa: E402
from DeepSegOARLib.Logic import DeepSegOARLogic  # noqa: E402,F401
from DeepSegOARLib.Parameters import DeepSegOARParameterNode  # noqa: E402,F401

if HAS_QT:  # the panel needs Qt; headless (slicer-core only) the module offers logic, parameters, self-test
    from DeepSegOARLib.Widget import DeepSegOARWidget  # noqa: F401

HELP = _("""
<p>Segments organs at risk on a CT (or MR) volume with a pretrained 3D network of the DeepSeg catalog.</p>
<ul>
<li><b>Input volume</b>: the image to segment. <b>Model</b>: organ-at-risk models; the box below shows the
model's description, licence and citation. <b>Install model...</b> downloads the weights after showing
their size and licence.</li>
<li><b>Structures</b>: tick the organs to keep (All / None). <b>TG-263 names</b> names segments with AAPM
TG-263 names. <b>Fast mode</b> uses less sliding-window overlap (about 3x fewer windows). <b>Device</b>: Auto, CPU or a detected GPU
(with its memory).</li>
<li><b>Apply</b> runs the model in a separate process (the application stays responsive); the button turns
into <b>Cancel</b>, which stops the whole process and adds nothing. The progress bar shows the stage; the
<b>Log</b> section shows the run's output.</li>
<li><b>Segmentation</b>: a new node next to the input (default), or an existing one, which is replaced after
asking. <b>Show in 3D</b> also builds surfaces.</li>
</ul>
<p>Console: <code>slicer.util.getModuleLogic("DeepSegOAR").segment(volumeNode, model="totalseg-organs", wait=True)</code>.
Not for clinical use.</p>
""")


class DeepSegOAR(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(self.parent, _("DeepSeg OAR"), HELP, acknowledgement(OAR_GROUPS))
        if IN_SLICER:
            import slicer

            slicer.app.connect("startupCompleted()", registerWithSlicer)


def registerWithSlicer() -> None:
    """Once Slicer has started: DeepSeg's structures as a terminology (.term.json) in the Terminologies
    module, and the demo CT in the Sample Data module (downloaded through the model store when clicked)."""
    import slicer

    from deepseg.models.store import default_home
    from deepseg_slicer.sampledata import register_sample_data
    from deepseg_slicer.terminology import register_terminology

    register_terminology(slicer.util.getModuleLogic("Terminologies"), default_home() / "terminology")
    register_sample_data(os.path.join(os.path.dirname(__file__), "Resources", "Icons", "DeepSegOAR.png"))


class DeepSegOARTest(SelfTestCase):
    """Runs the logic's background path on generated data with a generated tiny model."""

    def test_segment_generated_volume(self) -> None:
        import tempfile

        import numpy as np

        from deepseg_slicer import mrml
        from deepseg_slicer.selftest import TEST_LABELS, make_test_model, synthetic_ct

        self.delayDisplay("Generating a volume and a test model")
        scene = self.scene
        volume = synthetic_ct()
        node = mrml.volume_to_node(volume, scene)
        with tempfile.TemporaryDirectory() as folder:
            model = make_test_model(os.path.join(folder, "model"))
            logic = DeepSegOARLogic(scene)
            seg = logic.segment(node, str(model), structures=["Spleen"], useTG263=True, wait=True)
        segmentation = seg.GetSegmentation()
        self.assertEqual([segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())],
                         [lab["tg263"] for lab in TEST_LABELS if lab["name"] == "Spleen"])
        labels, _ = mrml.segmentation_to_labels(seg, node)
        self.assertTrue(labels.same_grid(volume, tol=1e-4))
        self.assertEqual(set(np.unique(labels.array)) - {0}, {2})
        self.delayDisplay("DeepSegOAR test passed")
