"""Geometry between the core (LPS) and Slicer (RAS): VTK matrices, IJK-to-RAS, parent transforms, ROIs."""
from __future__ import annotations

import numpy as np

from deepseg.errors import InputError
from deepseg.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_vtk_matrix(m: np.ndarray):
    """A ``vtkMatrix4x4`` holding the 4x4 array ``m``."""
    import vtk

    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def from_vtk_matrix(vm) -> np.ndarray:
    """The 4x4 array of a ``vtkMatrix4x4``."""
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """Slicer's IJK-to-RAS matrix of a core (LPS) ``Volume``."""
    return LPS_TO_RAS @ volume.ijk_to_lps()


def volume_from_ijk_to_ras(array: np.ndarray, m_ras: np.ndarray, name: str) -> Volume:
    """A core ``Volume`` (LPS) from an array and Slicer's IJK-to-RAS matrix."""
    m = LPS_TO_RAS @ m_ras
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    return Volume(array, tuple(spacing), tuple(m[:3, 3]), m[:3, :3] / spacing, name=name)


def node_to_world(node) -> np.ndarray:
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


def roi_corners_lps(roi_node) -> np.ndarray:
    """The 8 corners (LPS mm, shape (8, 3)) of a markups ROI, rotation and transforms included."""
    m = from_vtk_matrix(roi_node.GetObjectToWorldMatrix())
    half = np.asarray(roi_node.GetSize()) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    corners = np.c_[signs * half, np.ones(8)] @ m.T
    return (corners @ LPS_TO_RAS.T)[:, :3]
