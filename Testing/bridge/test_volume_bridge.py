"""Volume node <-> core Volume: voxels and the IJK-to-RAS geometry survive exactly, and nodes that
Slicer's own NRRD reader created agree with SimpleITK's reading of the same file."""
from __future__ import annotations

import numpy as np
import pytest
import vtk

from deepseg.errors import InputError
from deepseg_slicer import mrml


def _ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return mrml.from_vtk_matrix(m)


def test_core_node_core_round_trip_is_exact(scene, oblique_volume):
    node = mrml.volume_to_node(oblique_volume, scene)
    # Slicer's node holds RAS geometry: x and y of the LPS matrix flip sign
    expected = np.diag([-1, -1, 1, 1]) @ oblique_volume.ijk_to_lps()
    np.testing.assert_allclose(_ijk_to_ras(node), expected, atol=1e-12)
    np.testing.assert_allclose(node.GetSpacing(), oblique_volume.spacing, atol=1e-12)
    back = mrml.volume_from_node(node)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    assert back.array.dtype == oblique_volume.array.dtype
    np.testing.assert_allclose(back.ijk_to_lps(), oblique_volume.ijk_to_lps(), atol=1e-12)
    assert back.same_grid(oblique_volume, tol=1e-12)


def test_node_core_node_round_trip_keeps_matrix(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mr")
    rng = np.random.default_rng(1)
    array = rng.integers(0, 1000, (5, 7, 9)).astype(np.int16)
    image = vtk.vtkImageData()
    image.SetDimensions(9, 7, 5)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    from vtk.util import numpy_support
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = array.ravel()
    node.SetAndObserveImageData(image)
    # oblique, anisotropic, left-handed-free rotation about an arbitrary axis
    t = vtk.vtkTransform()
    t.Translate(10.5, -3.25, 40.0)
    t.RotateWXYZ(33.0, 0.3, -0.5, 0.8)
    t.Scale(0.7, 1.3, 4.0)
    node.SetIJKToRASMatrix(t.GetMatrix())
    before = _ijk_to_ras(node)
    volume = mrml.volume_from_node(node)
    np.testing.assert_array_equal(volume.array, array)
    again = mrml.volume_to_node(volume, scene, name="again")
    np.testing.assert_allclose(_ijk_to_ras(again), before, atol=1e-10)
    np.testing.assert_array_equal(mrml.volume_from_node(again).array, array)


def test_node_read_by_slicer_matches_simpleitk(scene, oblique_volume, tmp_path):
    import SimpleITK as sitk

    from deepseg.io import read_volume, write_volume

    path = tmp_path / "ct.nrrd"
    write_volume(oblique_volume, path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    from_slicer = mrml.volume_from_node(node)
    from_sitk = read_volume(path)
    np.testing.assert_array_equal(from_slicer.array, from_sitk.array)
    np.testing.assert_allclose(from_slicer.ijk_to_lps(), from_sitk.ijk_to_lps(), atol=1e-5)
    assert sitk.ReadImage(str(path)).GetSize() == from_slicer.size_ijk


def test_parent_transform_is_applied(scene, oblique_volume):
    node = mrml.volume_to_node(oblique_volume, scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -7.0, 2.5)  # RAS millimetres
    transform.SetMatrixTransformToParent(mrml.to_vtk_matrix(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = mrml.volume_from_node(node)
    np.testing.assert_allclose(np.subtract(moved.origin, oblique_volume.origin), (-5.0, 7.0, 2.5), atol=1e-9)


def test_multicomponent_and_empty_nodes_are_refused(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        mrml.volume_from_node(empty)
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    image = vtk.vtkImageData()
    image.SetDimensions(4, 4, 4)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    rgb.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="3 components"):
        mrml.volume_from_node(rgb)


def test_roi_crop_keeps_world_position(scene, oblique_volume):
    from deepseg_slicer.tasks import crop_to_corners

    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    node = mrml.volume_to_node(oblique_volume, scene)
    centre_lps = oblique_volume.ijk_to_lps() @ np.array([12.0, 10.0, 6.0, 1.0])
    roi.SetCenter(-centre_lps[0], -centre_lps[1], centre_lps[2])
    roi.SetSize(8.0, 8.0, 10.0)
    cropped = crop_to_corners(mrml.volume_from_node(node), mrml.roi_corners_lps(roi))
    assert all(c < f for c, f in zip(cropped.shape, oblique_volume.shape))
    # every kept voxel is the same voxel of the full volume: map cropped index 0 back to the full grid
    ijk0 = np.linalg.inv(oblique_volume.ijk_to_lps()) @ np.r_[cropped.origin, 1.0]
    i, j, k = np.round(ijk0[:3]).astype(int)
    np.testing.assert_allclose(ijk0[:3], (i, j, k), atol=1e-9)
    kk, jj, ii = cropped.shape
    np.testing.assert_array_equal(cropped.array, oblique_volume.array[k:k + kk, j:j + jj, i:i + ii])
    # the ROI centre lies inside the crop
    centre_ijk = np.linalg.inv(cropped.ijk_to_lps()) @ centre_lps
    assert np.all(centre_ijk[:3] >= 0) and np.all(centre_ijk[:3] <= np.array(cropped.size_ijk) - 1)
