"""DeepSegTumor: tumour and lesion segmentation from one to four volumes (DeepSeg extension)."""
from __future__ import annotations

import os
import sys

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_EXTENSION_DIR, "deepseg_slicer")) and _EXTENSION_DIR not in sys.path:
    sys.path.append(_EXTENSION_DIR)  # run from a source checkout ("Additional module paths")

from deepseg_slicer.compat import HAS_QT, ScriptedLoadableModule, _, describe_module  # noqa: E402
from deepseg_slicer.selftest import SelfTestCase  # noqa: E402
from deepseg_slicer.models import TUMOUR_GROUPS, acknowledgement  # noqa: E402
from DeepSegTumorLib.Logic import DeepSegTumorLogic  # noqa: E402,F401
from DeepSegTumorLib.Parameters import DeepSegTumorParameterNode  # noqa: E402,F401

if HAS_QT:  # the panel needs Qt; headless (slicer-core only) the module offers logic, parameters, self-test
    from DeepSegTumorLib.Widget import DeepSegTumorWidget  # noqa: F401

HELP = _("""
<p>Segments tumours and lesions with a pretrained 3D network of the DeepSeg catalog.</p>
<ul>
<li><b>Model</b>: tumour/lesion models; the box shows description, licence and citation; <b>Install model...</b>
downloads the weights after asking.</li>
<li><b>Input volumes</b>: one row per input the model needs (e.g. FLAIR, T1, T1c, T2). When a model is chosen,
each input gets the volume whose name matches the model's pattern (most specific pattern first, e.g. "T1c" before
"T1"; each volume used once); change any of them by hand, or press <b>Assign from volume names</b> again.</li>
<li><b>Restrict to ROI</b>: the model only sees the box of the selected markups ROI (faster, fewer false
positives). <b>Minimum lesion size</b> removes smaller connected components; <b>Keep largest only</b> keeps
the largest component of each structure.</li>
<li><b>Apply</b> runs in a separate process and turns into <b>Cancel</b>; progress and the log are shown below.
After the run, the summary lists the lesion count and volumes (mL) of each segment.</li>
</ul>
<p>Console: <code>logic = slicer.util.getModuleLogic("DeepSegTumor"); seg = logic.segment(logic.assignInputs(model), model, wait=True)</code>.
Not for clinical use.</p>
""")


class DeepSegTumor(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(self.parent, _("DeepSeg Tumor"), HELP, acknowledgement(TUMOUR_GROUPS))


class DeepSegTumorTest(SelfTestCase):
    """Two named inputs assigned from node names, an ROI, lesion clean-up and the summary."""

    def test_two_inputs_roi_and_summary(self) -> None:
        import tempfile

        import numpy as np

        from deepseg_slicer import mrml
        from deepseg_slicer.selftest import make_test_model, synthetic_ct
        from deepseg_slicer.tasks import crop_to_corners

        scene = self.scene
        flair = mrml.volume_to_node(synthetic_ct(name="case FLAIR", seed=2), scene)
        t1 = mrml.volume_to_node(synthetic_ct(name="case T1", seed=1), scene)
        roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        bounds = [0.0] * 6
        t1.GetRASBounds(bounds)
        roi.SetCenter([(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)])
        roi.SetSize([(bounds[2 * a + 1] - bounds[2 * a]) / 2 for a in range(3)])
        logic = DeepSegTumorLogic(scene)
        with tempfile.TemporaryDirectory() as folder:
            model = str(make_test_model(os.path.join(folder, "model"),
                                        inputs=[{"name": "T1", "modality": "MR", "pattern": "*t1*"},
                                                {"name": "FLAIR", "modality": "MR", "pattern": "*flair*"}]))
            inputs = logic.assignInputs(model, [flair, t1])
            self.assertEqual(inputs, [t1, flair])
            seg = logic.segment(inputs, model, roiNode=roi, minLesionSizeMl=0.05, wait=True)
        rows = logic.summarize(seg, t1)
        labels, _ = mrml.segmentation_to_labels(seg, t1)
        for row, value in zip(rows, (1, 2)):
            self.assertAlmostEqual(row["volume_mL"], float((labels.array == value).sum()) * labels.voxel_volume_mm3 / 1000,
                                   places=4)
            self.assertTrue(all(v >= 0.05 for v in row["lesion_volumes_mL"]))
        # nothing outside the ROI box, something inside it
        full = mrml.volume_from_node(t1)
        crop = crop_to_corners(full, mrml.roi_corners_lps(roi))
        i0, j0, k0 = np.round(np.linalg.inv(full.ijk_to_lps()) @ np.r_[crop.origin, 1.0]).astype(int)[:3]
        kk, jj, ii = crop.shape
        inside = np.zeros(full.shape, bool)
        inside[k0:k0 + kk, j0:j0 + jj, i0:i0 + ii] = True
        self.assertFalse(np.any(labels.array[~inside]))
        self.assertTrue(np.any(labels.array[inside]))
        self.delayDisplay("DeepSegTumor test passed")
