"""Shape measures of one segment crop, in millimetres of patient space.

Definitions (stated in the measurement spec too):

* volume = voxel count x voxel volume;
* surface area and the mesh volume used for sphericity come from the closed surface: marching
  cubes at the 0.5 level of the binary mask, then 20 Taubin smoothing passes (lambda 0.5, mu -0.53),
  which like Slicer's windowed-sinc smoothing removes the voxel staircase (raw marching cubes
  over-estimates a sphere's area by ~9%) without shrinking the surface;
  sphericity = pi^(1/3) (6 V_mesh)^(2/3) / A (1 for a sphere);
* diameters are distances between voxel centres (as ITK's Feret diameter): the maximum 3D
  diameter over the whole segment, and RECIST's longest in-slice diameter (over the acquisition
  slices, i.e. axial for an axial series) with the longest extent perpendicular to it in that slice;
* connected components use full (26-) connectivity.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.spatial import ConvexHull, QhullError

from ..volume import Volume
from .segments import SegmentCrop

FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


def _hull_points(points: np.ndarray) -> np.ndarray:
    """The convex-hull vertices of ``points`` (all points when too few or degenerate for Qhull)."""
    if len(points) <= points.shape[1] + 1:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):  # all points on a line or plane: no full-dimensional hull
        return points


def _farthest_pair(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest distance between two of ``points`` and the unit vector joining them."""
    pts = _hull_points(points)
    best, vec = 0.0, np.zeros(points.shape[1])
    for start in range(0, len(pts), 2048):  # chunked so huge hulls never build an n^2 matrix at once
        diff = pts[start:start + 2048, None, :] - pts[None, :, :]
        d2 = np.einsum("abk,abk->ab", diff, diff)
        a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
        if d2[a, b] > best ** 2:
            best, vec = float(np.sqrt(d2[a, b])), diff[a, b]
    return best, (vec / best if best > 0 else vec)


def _boundary(mask: np.ndarray, structure=None) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=structure)


def taubin_smooth(verts: np.ndarray, faces: np.ndarray, passes: int = 20, lam: float = 0.5,
                  mu: float = -0.53) -> np.ndarray:
    """Taubin's non-shrinking Laplacian smoothing of a triangle mesh (uniform neighbour weights)."""
    n = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.coo_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]],
                                                             np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0
    mean_of_neighbours = sparse.diags(1.0 / np.asarray(adjacency.sum(1)).ravel()) @ adjacency
    for _ in range(passes):
        verts = verts + lam * (mean_of_neighbours @ verts - verts)
        verts = verts + mu * (mean_of_neighbours @ verts - verts)
    return verts


def _mesh_area_volume(mask: np.ndarray, spacing_kji: np.ndarray) -> tuple[float, float]:
    from skimage.measure import marching_cubes, mesh_surface_area

    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5, spacing=tuple(spacing_kji))
    verts = taubin_smooth(verts, faces)
    tri = verts[faces]
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    return float(mesh_surface_area(verts, faces)), volume


def axial_diameters(mask: np.ndarray, volume: Volume) -> tuple[float, float, int]:
    """RECIST-style long and short axis (mm) over the slices of ``mask`` (k = slice), and the crop
    slice index where the long axis is largest."""
    sx, sy = volume.spacing[0], volume.spacing[1]
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # (k, j) and (k, i) occupancy
    slices = np.nonzero(rows.any(axis=1))[0]
    extent = [(np.ptp(np.nonzero(rows[k])[0]) * sy, np.ptp(np.nonzero(cols[k])[0]) * sx) for k in slices]
    diagonal = np.hypot(*np.asarray(extent, float).T)
    best = (0.0, 0.0, -1)
    for n in np.argsort(-diagonal, kind="stable"):  # a slice's diameter <= its bounding-box diagonal: prune
        k = int(slices[n])
        if best[2] >= 0 and diagonal[n] < best[0]:
            break
        j, i = np.nonzero(_boundary(mask[k]))
        pts2 = np.stack([i * sx, j * sy], 1)  # in-plane mm (the direction matrix is orthonormal)
        long_mm, axis = _farthest_pair(pts2)
        if long_mm > best[0] or best[2] < 0 or (long_mm == best[0] and k < best[2]):
            perp = np.array([-axis[1], axis[0]])
            proj = pts2 @ perp
            best = (long_mm, float(proj.max() - proj.min()) if long_mm > 0 else 0.0, k)
    return best


def shape_measures(seg: SegmentCrop, volume: Volume) -> dict:
    """Every shape measure of one segment (keys as in ``table.SHAPE``)."""
    count = seg.voxel_count
    vox = volume.voxel_volume_mm3
    out: dict = {"voxel_count": count, "volume_mm3": count * vox, "volume_mL": count * vox / 1000.0}
    if count == 0:
        return out
    mask = seg.mask
    spacing_kji = np.asarray(volume.spacing[::-1])
    area, mesh_volume = _mesh_area_volume(mask, spacing_kji)
    out["surface_area_mm2"] = area
    out["sphericity"] = float(np.pi ** (1 / 3) * (6 * mesh_volume) ** (2 / 3) / area) if area > 0 else 0.0

    k, j, i = seg.indices()
    ijk = np.stack([i, j, k], 1).astype(float)
    centroid = volume.ijk_to_lps() @ np.append(ijk.mean(0), 1.0)
    out.update(centroid_L_mm=float(centroid[0]), centroid_P_mm=float(centroid[1]), centroid_S_mm=float(centroid[2]))
    lo, hi = ijk.min(0).astype(int), ijk.max(0).astype(int)
    out.update({f"bbox_{a}_min": int(v) for a, v in zip("ijk", lo)})
    out.update({f"bbox_{a}_max": int(v) for a, v in zip("ijk", hi)})
    out.update({f"bbox_{a}_size_mm": float((h - l + 1) * s) for a, l, h, s in zip("ijk", lo, hi, volume.spacing)})

    bk, bj, bi = np.nonzero(_boundary(mask))
    corner = np.asarray(seg.offset[::-1], float)
    pts = (np.stack([bi, bj, bk], 1) + corner) @ (volume.direction @ np.diag(volume.spacing)).T
    out["max_diameter_mm"] = _farthest_pair(pts)[0]
    long_mm, short_mm, kk = axial_diameters(mask, volume)
    out.update(axial_long_diameter_mm=long_mm, axial_short_diameter_mm=short_mm,
               axial_slice_k=int(kk + seg.offset[0]))

    components, n = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    sizes = np.sort(np.bincount(components.ravel())[1:])[::-1]
    out["component_count"] = int(n)
    out["component_volumes_mL"] = [float(s * vox / 1000.0) for s in sizes]
    return out
