"""The MRML bridge: Slicer nodes <-> DeepSeg core objects, with exact geometry and terminology.

* ``volume_from_node`` / ``volume_to_node``: scalar volume node <-> ``Volume`` (LPS core, RAS in
  Slicer; the IJK-to-RAS matrix round-trips exactly, oblique and anisotropic grids included);
* ``labels_to_segmentation``: a label map + ``LabelInfo`` list -> segmentation node whose segments
  share one labelmap layer and keep the catalog's names, colours, label values and SNOMED CT
  terminology (the same entries ``deepseg.export.seg_nrrd`` writes), placed next to the source in
  the subject hierarchy with its reference geometry set (so DICOM SEG export works);
* ``segmentation_to_labels``: the reverse, for measuring or explaining an existing segmentation;
* ``heatmap_to_node`` / ``show_overlay`` / ``threshold_to_segment``: explanation maps as
  coloured foreground overlays and back into segments;
* ``table_from_rows`` / ``write_table_csv``: measurement rows -> table node -> CSV.

Uses only Slicer's MRML/VTK API (available in Slicer and in the ``slicer-core`` wheel); no Qt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from deepseg.errors import InputError
from deepseg.models.card import ANATOMICAL_STRUCTURE, Code, LabelInfo
from deepseg.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
BINARY_LABELMAP = "Binary labelmap"
TG263_TAG = "DeepSeg.TG263"


# --- matrices --------------------------------------------------------------------------------
def to_vtk_matrix(m: np.ndarray):
    import vtk

    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def from_vtk_matrix(vm) -> np.ndarray:
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(volume: Volume) -> np.ndarray:
    return LPS_TO_RAS @ volume.ijk_to_lps()


def _volume_from_ijk_to_ras(array: np.ndarray, m_ras: np.ndarray, name: str) -> Volume:
    m = LPS_TO_RAS @ m_ras
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    return Volume(array, tuple(spacing), tuple(m[:3, 3]), m[:3, :3] / spacing, name=name)


def _node_to_world(node) -> np.ndarray:
    """Matrix of the node's parent transforms (identity when none); non-linear ones are refused."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise InputError(f"{node.GetName()!r} is under a non-linear (warping) transform.",
                         "Harden the transform on the volume (Data module, right-click > Harden transform) first.")
    import vtk

    vm = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(vm)
    return from_vtk_matrix(vm)


# --- volumes ---------------------------------------------------------------------------------
def volume_from_node(node, name: Optional[str] = None) -> Volume:
    """Copy a scalar volume node into a core ``Volume`` (world geometry, parent transforms applied)."""
    import vtk
    from vtk.util import numpy_support

    image = node.GetImageData() if node is not None else None
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"Volume {node.GetName() if node else None!r} has no image data.",
                         "Select a loaded volume.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"Volume {node.GetName()!r} has {image.GetNumberOfScalarComponents()} components per voxel.",
                         "Use a single-component (grey-scale) volume; split colour/vector volumes first.")
    dims = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()
    vm = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(vm)
    return _volume_from_ijk_to_ras(array, _node_to_world(node) @ from_vtk_matrix(vm), name or node.GetName())


def volume_to_node(volume: Volume, scene, *, node=None, name: Optional[str] = None,
                   class_name: str = "vtkMRMLScalarVolumeNode"):
    """Put a core ``Volume`` into a (new or given) volume node with the same voxels and geometry."""
    import vtk
    from vtk.util import numpy_support

    if node is None:
        node = scene.AddNewNodeByClass(class_name, name or volume.name or "DeepSeg")
    array = np.ascontiguousarray(volume.array)
    image = vtk.vtkImageData()
    image.SetDimensions(*volume.size_ijk)
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    node.SetIJKToRASMatrix(to_vtk_matrix(ijk_to_ras(volume)))
    node.SetAndObserveImageData(image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def load_volume_file(path: "str | Path", scene, name: Optional[str] = None):
    """Read an image file into a new scalar volume node with Slicer's own reader
    (``slicer.util.loadVolume`` without the application)."""
    path = Path(path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"Slicer could not read {path}.", "Check that it is an image file (NRRD, NIfTI, MHA...).")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def save_node(node, path: "str | Path") -> Path:
    """Write a node with its default storage node (``slicer.util.saveNode`` without the application),
    e.g. a segmentation as ``.seg.nrrd`` or a table as ``.csv``."""
    path = Path(path)
    storage = node.GetStorageNode()
    if storage is None:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise InputError(f"Could not write {path}.", "Check that the folder exists and is writable.")
    return path


def oriented_image(volume: Volume, dtype=None):
    """A ``vtkOrientedImageData`` holding ``volume`` (the image type of segment representations)."""
    import slicer
    from vtk.util import numpy_support

    array = np.ascontiguousarray(volume.array if dtype is None else volume.array.astype(dtype))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*volume.size_ijk)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    image.SetImageToWorldMatrix(to_vtk_matrix(ijk_to_ras(volume)))
    return image


def volume_from_oriented_image(image, name: str = "") -> Volume:
    """The reverse of ``oriented_image``; a non-zero extent start shifts the origin accordingly."""
    import vtk
    from vtk.util import numpy_support

    ext = image.GetExtent()
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()
    vm = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(vm)
    m = from_vtk_matrix(vm)
    shift = np.eye(4)
    shift[:3, 3] = (ext[0], ext[2], ext[4])
    return _volume_from_ijk_to_ras(array, m @ shift, name)


# --- terminology -----------------------------------------------------------------------------
def terminology_entry(label: LabelInfo) -> str:
    """Slicer's serialized terminology for a label: the entries the .seg.nrrd writer uses."""
    import slicer

    from deepseg.export.seg_nrrd import terminology_of

    term = terminology_of(label)

    def triple(key: str) -> list[str]:
        scheme, value, meaning = term.get(key) or ["", "", ""]
        return [value, scheme, meaning]

    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        term["contextName"], *triple("category"), *triple("type"), *triple("typeModifier"),
        term["anatomicContextName"], "", "", "", "", "", "")


def label_from_segment(segment, value: int) -> LabelInfo:
    """A ``LabelInfo`` from a segment's name, colour and terminology (local codes are dropped)."""
    import slicer

    entry = slicer.vtkSlicerTerminologyEntry()
    codes: dict[str, Optional[Code]] = {"category": None, "type": None, "modifier": None}
    if segment.GetTerminology() and slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(
            segment.GetTerminology(), entry):
        for key, obj in (("category", entry.GetCategoryObject()), ("type", entry.GetTypeObject()),
                         ("modifier", entry.GetTypeModifierObject())):
            if obj is not None and obj.GetCodeValue() and not (obj.GetCodingSchemeDesignator() or "").startswith("99"):
                codes[key] = Code(obj.GetCodeValue(), obj.GetCodingSchemeDesignator(), obj.GetCodeMeaning())
    tg263 = None
    if segment.HasTag(TG263_TAG):
        import vtk

        ref = vtk.reference("")
        segment.GetTag(TG263_TAG, ref)
        tg263 = str(ref)
    return LabelInfo(value=value, name=segment.GetName(),
                     color=tuple(int(round(c * 255)) for c in segment.GetColor()),  # type: ignore[arg-type]
                     category=codes["category"] or ANATOMICAL_STRUCTURE, type=codes["type"],
                     modifier=codes["modifier"], tg263=tg263 or None)


# --- segmentations ---------------------------------------------------------------------------
def labels_to_segmentation(labels: Volume, label_info: Sequence[LabelInfo], scene, *, node=None,
                           name: Optional[str] = None, use_tg263: bool = False,
                           keep: Optional[Iterable["int | str"]] = None, source_node=None, all_labels: bool = False):
    """Segmentation node from a label map: one segment per label in ``label_info`` that occurs in
    the map (every listed label when ``all_labels``; only those in ``keep``, by value or name, when
    given), all sharing one labelmap layer.

    An existing ``node`` is emptied and refilled (the panel asks the user before replacing one).
    ``source_node`` (the input volume) becomes the reference geometry and the hierarchy sibling.
    """
    import slicer

    array = np.asarray(labels.array)
    wanted = _select_labels(label_info, keep)
    if keep is None and not all_labels:  # a 117-class model on an abdomen: only the organs it found
        present = set(np.unique(array).tolist())
        wanted = [lab for lab in wanted if lab.value in present]
    keep_values = np.array(sorted(lab.value for lab in wanted), dtype=np.int64)
    if len(keep_values) < len(np.unique(array)) - (1 if (array == 0).any() else 0):
        array = np.where(np.isin(array, keep_values), array, 0)
    dtype = np.uint8 if array.max(initial=0) <= 255 else np.uint16
    layer = oriented_image(labels.with_array(array), dtype)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{labels.name or 'DeepSeg'} segmentation")
    segmentation = node.GetSegmentation()
    was_modifying = node.StartModify()
    segmentation.RemoveAllSegments()
    segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
    for lab in wanted:
        segment = slicer.vtkSegment()
        segment.SetName(lab.display_name(use_tg263))
        segment.SetColor(*lab.color_float)
        segment.SetLabelValue(int(lab.value))
        segment.SetTerminology(terminology_entry(lab))
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        if lab.tg263:
            segment.SetTag(TG263_TAG, lab.tg263)
        segment.AddRepresentation(BINARY_LABELMAP, layer)
        segmentation.AddSegment(segment, f"Segment_{lab.value}")
    node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if source_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(source_node)
        place_next_to(node, source_node)
    return node


def _select_labels(label_info: Sequence[LabelInfo], keep: Optional[Iterable["int | str"]]) -> list[LabelInfo]:
    if keep is None:
        return list(label_info)
    keys = [str(k).lower() for k in keep]
    chosen = [lab for lab in label_info
              if str(lab.value) in keys or lab.name.lower() in keys or (lab.tg263 or "").lower() in keys]
    unknown = set(keys) - {str(lab.value) for lab in chosen} - {lab.name.lower() for lab in chosen} \
        - {(lab.tg263 or "").lower() for lab in chosen}
    if unknown:
        raise InputError(f"Unknown structure(s): {', '.join(sorted(unknown))}.",
                         "Choose from: " + ", ".join(lab.name for lab in label_info) + ".")
    return chosen


def segmentation_to_labels(node, reference_node=None,
                           segment_ids: Optional[Sequence[str]] = None) -> tuple[Volume, list[LabelInfo]]:
    """A label map of a segmentation node (on ``reference_node``'s grid if given, else on the
    segmentation's reference geometry) and one ``LabelInfo`` per segment.

    Label values are the segments' own when they are distinct and positive (single-layer results
    from DeepSeg), else 1..N in segment order; overlapping segments: later ones on top.
    """
    import slicer
    import vtk

    segmentation = node.GetSegmentation()
    ids = list(segment_ids) if segment_ids else list(segmentation.GetSegmentIDs())
    if not ids:
        raise InputError(f"Segmentation {node.GetName()!r} has no segments.", "Select a segmentation with segments.")
    segments = [segmentation.GetSegment(i) for i in ids]
    values = [s.GetLabelValue() for s in segments]
    if len(set(values)) != len(values) or min(values) < 1 or segmentation.GetNumberOfLayers() > 1:
        values = list(range(1, len(ids) + 1))
    id_array, value_array = vtk.vtkStringArray(), vtk.vtkIntArray()
    for sid, val in zip(ids, values):
        id_array.InsertNextValue(sid)
        value_array.InsertNextValue(int(val))
    geometry = slicer.vtkOrientedImageData()
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if reference_node is not None:
        geometry = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(reference_node)
    elif segmentation.GetConversionParameter(parameter):
        slicer.vtkSegmentationConverter.DeserializeImageGeometry(segmentation.GetConversionParameter(parameter),
                                                                geometry, False)
    elif segments[0].GetRepresentation(BINARY_LABELMAP) is not None:
        # the first segment's own labelmap grid: exact, no resampling of oblique layers
        geometry.ShallowCopy(segments[0].GetRepresentation(BINARY_LABELMAP))
    else:
        raise InputError(f"Segmentation {node.GetName()!r} has no binary labelmap and no reference geometry.",
                         "Choose the image it belongs to, or create a binary labelmap (Segmentations module).")
    merged = slicer.vtkOrientedImageData()
    mode = slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    if not node.GenerateMergedLabelmapForAllSegments(merged, mode, geometry, id_array, value_array):
        raise InputError(f"Segmentation {node.GetName()!r} could not be converted to a label map.",
                         "Make sure it has a binary labelmap representation (Segmentations module).")
    volume = volume_from_oriented_image(merged, node.GetName())
    volume = volume.with_array(volume.array.astype(np.uint16))
    return volume, [label_from_segment(s, v) for s, v in zip(segments, values)]


def place_next_to(node, source_node) -> None:
    """Put ``node`` in the same subject-hierarchy folder/study as ``source_node``."""
    import slicer

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if sh is None:
        return
    source_item = sh.GetItemByDataNode(source_node) or sh.CreateItem(sh.GetSceneItemID(), source_node)
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemParent(item, sh.GetItemParent(source_item))


# --- explanation maps ------------------------------------------------------------------------
def heatmap_to_node(heatmap: Volume, scene, *, node=None, name: Optional[str] = None,
                    colormap: str = "Inferno", value_range: Optional[tuple[float, float]] = None,
                    threshold: Optional[float] = None, source_node=None):
    """A float map (Grad-CAM, uncertainty) as a scalar volume shown through ``colormap``, with the
    window spanning ``value_range`` (default: the map's min..max) and voxels under ``threshold``
    hidden, ready to be the foreground layer over its image."""
    node = volume_to_node(heatmap.with_array(heatmap.array.astype(np.float32)), scene, node=node,
                          name=name or heatmap.name or "DeepSeg heat map")
    display = node.GetDisplayNode()
    color = find_color_node(scene, colormap)
    display.SetAndObserveColorNodeID(color.GetID())
    lo, hi = value_range or (float(heatmap.array.min()), float(heatmap.array.max()))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(lo, hi if hi > lo else lo + 1e-6)
    set_overlay_threshold(node, threshold)
    if source_node is not None:
        place_next_to(node, source_node)
    return node


def set_overlay_threshold(node, threshold: Optional[float]) -> None:
    """Hide voxels below ``threshold`` (None shows all)."""
    display = node.GetDisplayNode()
    if threshold is None:
        display.ApplyThresholdOff()
        return
    display.SetApplyThreshold(1)
    display.SetThreshold(float(threshold), float(max(threshold, node.GetImageData().GetScalarRange()[1])))


def find_color_node(scene, name: str):
    """Colour node by name ("Inferno", "PET-Heat", "Rainbow"...) or ID; clear error otherwise.
    "Inferno" falls back to DeepSeg's lightness-linear heat table where the scene has no Inferno
    (Slicer's MRML libraries without the application's colour files)."""
    node = scene.GetNodeByID(name) or _color_node_named(scene, name)
    if node is None and name == "Inferno":
        node = heat_color_node(scene)
    if node is None:
        names = sorted({n.GetName() for n in scene.GetNodesByClass("vtkMRMLColorNode")})
        raise InputError(f"No colour map named {name!r} in the scene.", "Use one of: " + ", ".join(names[:20]) + ".")
    return node


def _color_node_named(scene, name: str):
    for candidate in scene.GetNodesByClass("vtkMRMLColorNode"):
        if candidate.GetName() == name:
            return candidate
    return None


def heat_color_node(scene):
    """Slicer's perceptual "Inferno" table, else DeepSeg's stand-in (``deepseg.explain.colors``),
    added to the scene once."""
    import slicer

    from deepseg.explain.colors import FALLBACK_NAME, HEAT_COLORMAP, heat_color_table

    node = _color_node_named(scene, HEAT_COLORMAP) or _color_node_named(scene, FALLBACK_NAME)
    if node is not None:
        return node
    table = heat_color_table()
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(FALLBACK_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(len(table))
    for i, (r, g, b) in enumerate(table):
        node.SetColor(i, str(i), float(r), float(g), float(b), 1.0)
    return scene.AddNode(node)


def show_overlay(scene, background_node, foreground_node, opacity: float = 0.5) -> None:
    """Background image + foreground map in every slice view (``slicer.util.setSliceViewerLayers``)."""
    for composite in scene.GetNodesByClass("vtkMRMLSliceCompositeNode"):
        composite.SetBackgroundVolumeID(background_node.GetID() if background_node else None)
        composite.SetForegroundVolumeID(foreground_node.GetID() if foreground_node else None)
        composite.SetForegroundOpacity(float(opacity))


def threshold_to_segment(map_node, threshold: float, segmentation_node, name: str,
                         color: tuple[float, float, float] = (1.0, 0.8, 0.0)) -> str:
    """Add the voxels of ``map_node`` at or above ``threshold`` as a new segment; returns its ID."""
    import slicer

    volume = volume_from_node(map_node)
    mask = (volume.array >= threshold).astype(np.uint8)
    if not mask.any():
        raise InputError(f"No voxel of {map_node.GetName()!r} reaches {threshold:g}.", "Lower the threshold.")
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*color)
    segment.SetLabelValue(1)
    segment.AddRepresentation(BINARY_LABELMAP, oriented_image(volume.with_array(mask)))
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GenerateUniqueSegmentID(name)
    segmentation.AddSegment(segment, segment_id)
    return segment_id


# --- tables ----------------------------------------------------------------------------------
def table_from_rows(rows: Sequence[Mapping[str, object]], scene, *, node=None, name: str = "DeepSeg measurements",
                    units: Optional[Mapping[str, str]] = None):
    """A table node with one row per mapping; numeric columns become double columns (empty cells
    NaN), the others strings; column order is first-seen order."""
    import vtk

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    was_modifying = node.StartModify()
    node.RemoveAllColumns()
    for col in columns:
        values = [row.get(col) for row in rows]
        numeric = all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
                      for v in values) and any(v is not None for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(col)
        for v in values:
            if numeric:
                array.InsertNextValue(float("nan") if v is None else float(v))
            else:
                array.InsertNextValue("" if v is None else str(v))
        table.AddColumn(array)
        if units and col in units:
            node.SetColumnUnitLabel(col, units[col])
    node.Modified()
    node.EndModify(was_modifying)
    return node


def write_table_csv(node, path: "str | Path") -> Path:
    """Write a table node as CSV with Slicer's table storage node (a .schema.csv goes beside it)."""
    return save_node(node, path)


# --- regions of interest ---------------------------------------------------------------------
def roi_corners_lps(roi_node) -> np.ndarray:
    """The 8 corners (LPS mm, shape (8, 3)) of a markups ROI, rotation and transforms included."""
    m = from_vtk_matrix(roi_node.GetObjectToWorldMatrix())
    half = np.asarray(roi_node.GetSize()) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    corners = np.c_[signs * half, np.ones(8)] @ m.T
    return (corners @ LPS_TO_RAS.T)[:, :3]
