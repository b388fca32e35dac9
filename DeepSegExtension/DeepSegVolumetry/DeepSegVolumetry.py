"""DeepSegVolumetry: measurement tables, reference comparison and follow-up change (DeepSeg extension)."""
from __future__ import annotations

import os
import sys

_EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_EXTENSION_DIR, "deepseg_slicer")) and _EXTENSION_DIR not in sys.path:
    sys.path.append(_EXTENSION_DIR)  # run from a source checkout ("Additional module paths")

from deepseg_slicer.compat import HAS_QT, IN_SLICER, ScriptedLoadableModule, _, describe_module  # noqa: E402
from deepseg_slicer.selftest import SelfTestCase  # noqa: E402
from DeepSegVolumetryLib.Logic import DeepSegVolumetryLogic  # noqa: E402,F401
from DeepSegVolumetryLib.Parameters import DeepSegVolumetryParameterNode  # noqa: E402,F401

if HAS_QT:  # the panel needs Qt; headless (slicer-core only) the module offers logic, parameters, self-test
    from DeepSegVolumetryLib.Widget import DeepSegVolumetryWidget  # noqa: F401

HELP = _("""
<p>Measures segmentations: one row per segment in a table node, exportable as CSV.</p>
<ul>
<li><b>measure</b>: voxel count, volume (mm3, mL), surface area, sphericity, maximum 3D diameter, RECIST-style
long and short axial diameters, centroid, bounding box and connected-component (lesion) count and volumes; with an
<b>Image</b>, intensity statistics (HU on CT) inside each segment.</li>
<li><b>compare</b>: each segment against the paired segment of a <b>Reference</b> segmentation (paired by
terminology code, then name): Dice, Jaccard, Hausdorff and 95 % Hausdorff distance, average surface distance,
surface Dice at the given tolerance, volume difference, sensitivity and precision.</li>
<li><b>follow-up</b>: baseline (Segmentation) vs <b>Follow-up segmentation</b>: volume change per structure, new and
disappeared lesions (optionally after rigid <b>Register</b>ing the follow-up), and the volumetric response.</li>
<li><b>Compute</b> fills the <b>Table</b> (a new one by default) and shows it; <b>Export CSV...</b> writes it.</li>
</ul>
<p>The same measurements appear as the "DeepSeg" plugin of the Segment Statistics module. Not for clinical use.</p>
""")


def registerSegmentStatisticsPlugin() -> None:
    from DeepSegVolumetryLib.SegmentStatisticsPlugin import register

    register()


class DeepSegVolumetry(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(self.parent, _("DeepSeg Volumetry"), HELP,
                        _("Measurements follow the definitions listed in the DeepSeg README "
                          "(RECIST 1.1 axial diameters; surface Dice after Nikolov et al. 2021)."),
                        dependencies=["SegmentStatistics"])
        if IN_SLICER:
            import slicer

            slicer.app.connect("startupCompleted()", registerSegmentStatisticsPlugin)


class DeepSegVolumetryTest(SelfTestCase):
    """Measures, compares and follows up generated segmentations with known volumes."""

    def test_measure_compare_followup(self) -> None:
        import numpy as np

        from deepseg.models.card import LabelInfo
        from deepseg_slicer import mrml
        from deepseg_slicer.selftest import synthetic_ct

        scene = self.scene
        ct = synthetic_ct()
        ct_node = mrml.volume_to_node(ct, scene)
        arr = np.zeros(ct.shape, np.uint16)
        arr[4:10, 8:20, 10:30] = 1
        grown = arr.copy()
        grown[10:12, 8:20, 10:30] = 1
        labels = [LabelInfo(1, "Lesion")]
        base = mrml.labels_to_segmentation(ct.with_array(arr), labels, scene, source_node=ct_node)
        later = mrml.labels_to_segmentation(ct.with_array(grown), labels, scene, source_node=ct_node)
        logic = DeepSegVolumetryLogic(scene)
        table = logic.measure(base, ct_node, modality="CT")
        voxel_ml = ct.voxel_volume_mm3 / 1000.0
        self.assertAlmostEqual(table.GetTable().GetValueByName(0, "Volume [mL]").ToDouble(), arr.sum() * voxel_ml, places=6)
        self.assertIsNotNone(table.GetTable().GetColumnByName("Intensity mean [HU]"))
        self.assertAlmostEqual(table.GetTable().GetValueByName(0, "Intensity mean [HU]").ToDouble(),
                               float(ct.array[arr > 0].mean()), places=3)
        comparison = logic.compare(base, later, ct_node)
        self.assertAlmostEqual(comparison.GetTable().GetValueByName(0, "Dice").ToDouble(),
                               2 * arr.sum() / (arr.sum() + grown.sum()), places=6)
        change, response = logic.followup(base, later, ct_node, ct_node)
        self.assertAlmostEqual(response["volume_change_percent"], 100.0 * (grown.sum() - arr.sum()) / arr.sum(), places=4)
        self.assertEqual(change.GetTable().GetNumberOfRows(), 1)
        self.delayDisplay("DeepSegVolumetry test passed")
