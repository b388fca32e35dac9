"""Scalar volume nodes and oriented images <-> core ``Volume``, with exact geometry; reading and
saving nodes with Slicer's own storage nodes; subject-hierarchy placement."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from deepseg.errors import InputError
from deepseg.volume import Volume

from .geometry import from_vtk_matrix, ijk_to_ras, node_to_world, to_vtk_matrix, volume_from_ijk_to_ras


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
    return volume_from_ijk_to_ras(array, node_to_world(node) @ from_vtk_matrix(vm), name or node.GetName())


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
    return volume_from_ijk_to_ras(array, m @ shift, name)


def place_next_to(node, source_node) -> None:
    """Put ``node`` in the same subject-hierarchy folder/study as ``source_node``."""
    import slicer

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if sh is None:
        return
    source_item = sh.GetItemByDataNode(source_node) or sh.CreateItem(sh.GetSceneItemID(), source_node)
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemParent(item, sh.GetItemParent(source_item))
