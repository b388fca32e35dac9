"""Result -> segmentation node: names, colours, label values and terminology as the model card says,
one shared labelmap layer, reference geometry and hierarchy set; .seg.nrrd through Slicer's own
storage node agrees with the core's reader/writer."""
from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from deepseg.errors import InputError
from deepseg.models.card import MORPHOLOGICALLY_ALTERED, Code, LabelInfo
from deepseg_slicer import mrml

LABELS = [
    LabelInfo(1, "Liver", (221, 130, 101), type=Code("10200004", "SCT", "Liver"), tg263="Liver"),
    LabelInfo(3, "Left kidney", (185, 102, 83), type=Code("64033007", "SCT", "Kidney"),
              modifier=Code("7771000", "SCT", "Left"), tg263="Kidney_L"),
    LabelInfo(7, "Lesion", (255, 0, 0), category=MORPHOLOGICALLY_ALTERED, interpreted_type="GTV"),
]


@pytest.fixture
def labels(oblique_volume):
    arr = np.zeros(oblique_volume.shape, np.uint16)
    arr[2:6, 3:9, 4:10] = 1
    arr[6:10, 10:16, 12:20] = 3
    arr[1:3, 15:18, 2:5] = 7
    return oblique_volume.with_array(arr, name="case")


def _entry(segment):
    e = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), e)
    return e


def _segments(node):
    seg = node.GetSegmentation()
    return [(seg.GetNthSegmentID(i), seg.GetNthSegment(i)) for i in range(seg.GetNumberOfSegments())]


def test_segments_carry_catalog_names_colours_values_terminology(scene, labels, oblique_volume):
    source = mrml.volume_to_node(oblique_volume, scene)
    node = mrml.labels_to_segmentation(labels, LABELS, scene, source_node=source)
    segs = _segments(node)
    assert [s.GetName() for _, s in segs] == ["Liver", "Left kidney", "Lesion"]
    assert [s.GetLabelValue() for _, s in segs] == [1, 3, 7]
    for (_, s), lab in zip(segs, LABELS):
        np.testing.assert_allclose(s.GetColor(), np.array(lab.color) / 255.0, atol=1e-6)
    liver, kidney, lesion = (_entry(s) for _, s in segs)
    assert (liver.GetTypeObject().GetCodeValue(), liver.GetTypeObject().GetCodingSchemeDesignator()) == ("10200004", "SCT")
    assert liver.GetCategoryObject().GetCodeValue() == "123037004"
    assert kidney.GetTypeModifierObject().GetCodeMeaning() == "Left"
    assert lesion.GetCategoryObject().GetCodeMeaning() == "Morphologically Altered Structure"
    assert liver.GetTerminologyContextName() == "Segmentation category and type - DICOM master list"
    # one shared layer holding the label values
    assert node.GetSegmentation().GetNumberOfLayers() == 1
    back, infos = mrml.segmentation_to_labels(node, source)
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.same_grid(oblique_volume, tol=1e-9)
    assert [(i.value, i.name, i.color, i.type, i.modifier, i.tg263) for i in infos] == \
        [(lab.value, lab.name, lab.color, lab.type, lab.modifier, lab.tg263) for lab in LABELS]


def test_reference_geometry_and_hierarchy(scene, labels, oblique_volume):
    source = mrml.volume_to_node(oblique_volume, scene)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient"), "CT study")
    sh.CreateItem(study, source)
    node = mrml.labels_to_segmentation(labels, LABELS, scene, source_node=source)
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    geometry = node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    ref = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, ref, False)
    m = vtk.vtkMatrix4x4()
    ref.GetImageToWorldMatrix(m)
    np.testing.assert_allclose(mrml.from_vtk_matrix(m), mrml.ijk_to_ras(oblique_volume), atol=1e-6)
    assert node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is source


def test_keep_subset_tg263_names_and_replace_existing(scene, labels):
    node = mrml.labels_to_segmentation(labels, LABELS, scene, keep=["kidney_l", 7], use_tg263=True)
    assert [s.GetName() for _, s in _segments(node)] == ["Kidney_L", "Lesion"]
    back, _ = mrml.segmentation_to_labels(node)
    assert set(np.unique(back.array)) == {0, 3, 7}
    assert int((back.array == 3).sum()) == int((labels.array == 3).sum())
    same = mrml.labels_to_segmentation(labels, LABELS, scene, node=node)
    assert same is node and len(_segments(node)) == 3
    with pytest.raises(InputError, match="Unknown structure"):
        mrml.labels_to_segmentation(labels, LABELS, scene, keep=["spleen"])


def test_seg_nrrd_via_slicer_storage_node_and_core_reader(scene, labels, oblique_volume, tmp_path):
    from deepseg.export.seg_nrrd import read_seg_nrrd, write_seg_nrrd

    source = mrml.volume_to_node(oblique_volume, scene)
    node = mrml.labels_to_segmentation(labels, LABELS, scene, source_node=source)
    path = tmp_path / "bridge.seg.nrrd"
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    # Slicer re-reads its own file
    reread = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage2 = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage2.SetFileName(str(path))
    assert storage2.ReadData(reread)
    assert [(s.GetName(), s.GetLabelValue(), s.GetTerminology()) for _, s in _segments(reread)] == \
        [(s.GetName(), s.GetLabelValue(), s.GetTerminology()) for _, s in _segments(node)]
    vol2, _ = mrml.segmentation_to_labels(reread, source)
    np.testing.assert_array_equal(vol2.array, labels.array)
    # the core's reader sees the same labels, geometry and codes
    vol3, infos = read_seg_nrrd(path)
    assert vol3.same_grid(oblique_volume, tol=1e-5)
    np.testing.assert_array_equal(vol3.array, labels.array)
    assert [(i.value, i.name, i.type) for i in infos] == [(lab.value, lab.name, lab.type) for lab in LABELS]
    # and a file the core wrote loads in Slicer with the same terminology strings the bridge makes
    core_path = tmp_path / "core.seg.nrrd"
    write_seg_nrrd(core_path, labels, LABELS)
    from_core = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage3 = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage3.SetFileName(str(core_path))
    assert storage3.ReadData(from_core)
    assert [(s.GetName(), s.GetLabelValue(), s.GetTerminology()) for _, s in _segments(from_core)] == \
        [(lab.name, lab.value, mrml.terminology_entry(lab)) for lab in LABELS]


def test_catalog_model_labels_reach_slicer_unchanged(scene, oblique_volume):
    """A catalog model's own label list (names, colours, SNOMED CT codes, TG-263 names) survives the
    bridge: what the panel shows is what the catalog says."""
    from deepseg.models.catalog import load_catalog

    card = load_catalog().get("totalseg-organs").card()
    chosen = card.labels[:12]
    arr = np.zeros(oblique_volume.shape, np.uint16)
    flat = arr.reshape(-1)
    for n, lab in enumerate(chosen):
        flat[n * 40:(n + 1) * 40] = lab.value
    node = mrml.labels_to_segmentation(oblique_volume.with_array(arr), card.labels, scene, keep=[lab.value for lab in chosen],
                                       use_tg263=True)
    segs = _segments(node)
    assert [s.GetName() for _, s in segs] == [lab.display_name(True) for lab in chosen]
    assert [s.GetLabelValue() for _, s in segs] == [lab.value for lab in chosen]
    for (_, s), lab in zip(segs, chosen):
        np.testing.assert_allclose(s.GetColor(), lab.color_float, atol=1e-6)
        entry = _entry(s)
        assert entry.GetCategoryObject().GetCodeValue() == lab.category.value
        if lab.type is not None:
            assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()) == \
                (lab.type.value, lab.type.meaning)
        if lab.modifier is not None:
            assert entry.GetTypeModifierObject().GetCodeValue() == lab.modifier.value
    back, infos = mrml.segmentation_to_labels(node)
    np.testing.assert_array_equal(np.sort(np.unique(back.array))[1:], sorted(lab.value for lab in chosen))
    assert [(i.value, i.type, i.tg263) for i in infos] == [(lab.value, lab.type, lab.tg263) for lab in chosen]


def test_segments_only_for_labels_in_the_map_unless_all_asked(scene, labels):
    catalog = LABELS + [LabelInfo(9, "Spleen"), LabelInfo(11, "Stomach")]  # a model's list: 9, 11 not found
    assert [s.GetLabelValue() for _, s in _segments(mrml.labels_to_segmentation(labels, catalog, scene))] == [1, 3, 7]
    every = mrml.labels_to_segmentation(labels, catalog, scene, all_labels=True)
    assert [s.GetLabelValue() for _, s in _segments(every)] == [1, 3, 7, 9, 11]


def test_name_only_labels_get_distinct_colours(scene, labels):
    """A name-only list (TotalSegmentator's {"5": "liver"} JSON) gets one colour per label."""
    from deepseg.models.card import distinct_color

    named = [LabelInfo(v, n) for v, n in ((1, "liver"), (3, "kidney_left"), (7, "lesion"))]
    colours = [tuple(round(c * 255) for c in s.GetColor())
               for _, s in _segments(mrml.labels_to_segmentation(labels, named, scene))]
    assert colours == [distinct_color(v) for v in (1, 3, 7)]
    everyone = [distinct_color(v) for v in range(1, 118)]  # TotalSegmentator's 117 classes
    assert len(set(everyone)) == 117
    assert min(np.abs(np.subtract(a, b)).sum() for i, a in enumerate(everyone[:41]) for b in everyone[i + 1:41]) > 40
