"""Per-segment measurements, cross-checked against SimpleITK's label statistics (an independent
implementation) and against analytic shapes."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.io import read_volume, volume_to_sitk
from deepseg.measure import measure_segmentation, read_segmentation, write_csv
from deepseg.models.card import LabelInfo
from deepseg.volume import Volume

sitk = pytest.importorskip("SimpleITK")
torch = pytest.importorskip("torch")


def _sitk_shape(labels: Volume):
    f = sitk.LabelShapeStatisticsImageFilter()
    f.ComputeFeretDiameterOn()
    f.ComputePerimeterOn()
    f.Execute(sitk.Cast(volume_to_sitk(labels), sitk.sitkUInt16))
    return f


def _phantom(oblique: Volume) -> Volume:
    """Ellipsoid (1), two separate blobs (2) and a small cube (3) on an oblique, anisotropic grid."""
    k, j, i = np.mgrid[:12, :20, :24].astype(float)
    arr = np.zeros((12, 20, 24), np.uint8)
    arr[((i - 8) / 5) ** 2 + ((j - 9) / 6) ** 2 + ((k - 5) / 3) ** 2 <= 1] = 1
    arr[2:4, 2:5, 17:21] = 2
    arr[8:11, 14:18, 18:22] = 2
    arr[7:9, 15:17, 3:6] = 3
    return oblique.with_array(arr, name="phantom")


def test_shape_matches_simpleitk_on_oblique_grid(oblique_volume):
    labels = _phantom(oblique_volume)
    rows, spec = measure_segmentation(labels)
    f = _sitk_shape(labels)
    assert [r["label_value"] for r in rows] == [1, 2, 3]
    for r in rows:
        v = r["label_value"]
        assert r["voxel_count"] == f.GetNumberOfPixels(v)
        assert r["volume_mm3"] == pytest.approx(f.GetPhysicalSize(v), rel=1e-9)
        assert r["volume_mL"] == pytest.approx(f.GetPhysicalSize(v) / 1000, rel=1e-9)
        assert [r["centroid_L_mm"], r["centroid_P_mm"], r["centroid_S_mm"]] == pytest.approx(f.GetCentroid(v), abs=1e-6)
        assert r["max_diameter_mm"] == pytest.approx(f.GetFeretDiameter(v), abs=1e-6)
        bb = f.GetBoundingBox(v)  # (i, j, k) start then size
        assert [r[f"bbox_{a}_min"] for a in "ijk"] == list(bb[:3])
        assert [r[f"bbox_{a}_max"] - r[f"bbox_{a}_min"] + 1 for a in "ijk"] == list(bb[3:])
    assert rows[1]["component_count"] == 2
    assert sum(rows[1]["component_volumes_mL"]) == pytest.approx(rows[1]["volume_mL"])
    assert rows[0]["component_count"] == rows[2]["component_count"] == 1
    keys = {m.key for m in spec}
    assert all(set(r) <= keys for r in rows)


@pytest.mark.parametrize("radius", [6, 12])
def test_sphere_area_sphericity_diameter(radius):
    n = 2 * radius + 6
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2
    spacing = 0.7
    labels = Volume(((x ** 2 + y ** 2 + z ** 2) <= radius ** 2).astype(np.uint8), spacing=(spacing,) * 3)
    row = measure_segmentation(labels)[0][0]
    r_mm = radius * spacing
    assert row["surface_area_mm2"] == pytest.approx(4 * np.pi * r_mm ** 2, rel=0.05)
    assert row["sphericity"] == pytest.approx(1.0, abs=0.03)
    assert row["max_diameter_mm"] == pytest.approx(2 * r_mm, abs=spacing)
    assert row["axial_long_diameter_mm"] == pytest.approx(2 * r_mm, abs=spacing)
    assert row["axial_short_diameter_mm"] == pytest.approx(2 * r_mm, abs=2 * spacing)
    assert row["axial_slice_k"] == pytest.approx((n - 1) / 2, abs=radius / 2)


def test_recist_axes_of_a_rotated_ellipse():
    """An in-plane ellipse with semi-axes 20 and 8 mm, rotated 30 degrees, on 0.5 x 0.8 mm pixels."""
    sx, sy = 0.5, 0.8
    j, i = np.mgrid[:80, :100].astype(float)
    x, y = (i - 50) * sx, (j - 40) * sy
    a = np.deg2rad(30)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    arr = np.zeros((3, 80, 100), np.uint8)
    arr[1] = (u / 20) ** 2 + (v / 8) ** 2 <= 1
    row = measure_segmentation(Volume(arr, spacing=(sx, sy, 5.0)))[0][0]
    assert row["axial_long_diameter_mm"] == pytest.approx(40, abs=1.0)
    assert row["axial_short_diameter_mm"] == pytest.approx(16, abs=1.0)
    assert row["axial_slice_k"] == 1


def test_empty_segment_has_a_reason_not_nan(tmp_path):
    arr = np.zeros((5, 6, 7), np.uint8)
    arr[1:3, 1:3, 1:3] = 1
    rows, spec = measure_segmentation(Volume(arr), [LabelInfo(1, "a"), LabelInfo(2, "absent")])
    assert rows[1]["voxel_count"] == 0 and rows[1]["volume_mL"] == 0
    assert "empty" in rows[1]["note"] and "surface_area_mm2" not in rows[1]
    write_csv(rows, spec, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert "nan" not in text.lower()
    assert text.splitlines()[0].split(",")[:6] == ["label_value", "segment", "terminology", "voxel_count",
                                                   "volume_mm3", "volume_mL"]


def test_intensity_matches_simpleitk(oblique_volume):
    labels = _phantom(oblique_volume)
    rows, spec = measure_segmentation(labels, image=oblique_volume, modality="CT")
    f = sitk.LabelIntensityStatisticsImageFilter()
    f.Execute(sitk.Cast(volume_to_sitk(labels), sitk.sitkUInt16), volume_to_sitk(oblique_volume))
    assert "intensity_mean_HU" in {m.key for m in spec}
    for r in rows:
        v = r["label_value"]
        assert r["intensity_mean_HU"] == pytest.approx(f.GetMean(v), rel=1e-5)
        assert r["intensity_sd_HU"] == pytest.approx(f.GetStandardDeviation(v), rel=1e-4)
        assert r["intensity_min_HU"] == pytest.approx(f.GetMinimum(v), rel=1e-6)
        assert r["intensity_max_HU"] == pytest.approx(f.GetMaximum(v), rel=1e-6)
        # ITK's median comes from a 128-bin histogram: agree within one bin
        bin_width = (f.GetMaximum(v) - f.GetMinimum(v)) / 128
        assert r["intensity_median_HU"] == pytest.approx(f.GetMedian(v), abs=2 * bin_width)
        assert r["intensity_min_HU"] <= r["intensity_p5_HU"] <= r["intensity_median_HU"] <= r["intensity_p95_HU"]
        # percentiles against torch's quantile (same linear-interpolation definition, other code)
        values = torch.from_numpy(oblique_volume.array[labels.array == v].astype(np.float64))
        expected = torch.quantile(values, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
        assert [r["intensity_p5_HU"], r["intensity_median_HU"], r["intensity_p95_HU"]] == pytest.approx(expected)


def test_image_on_another_grid_is_refused(oblique_volume):
    from deepseg.errors import InputError

    labels = _phantom(oblique_volume)
    with pytest.raises(InputError, match="same voxel grid"):
        measure_segmentation(labels, image=Volume(oblique_volume.array))


def test_totalsegmentator_labels_match_simpleitk(shared):
    """Every structure of the TotalSegmentator example: exact counts/volume/centroid/Feret, surface
    area within 5% of ITK's Crofton estimate for structures of >= 500 voxels (10% from 50)."""
    ts = shared / "data" / "totalseg"
    labels, info = read_segmentation(ts / "example_seg.nii.gz", ts / "labels_total.json", only_present=True)
    image = read_volume(ts / "example_ct_sm.nii.gz")
    rows, _ = measure_segmentation(labels, info, image)
    f = _sitk_shape(labels)
    assert len(rows) == len(f.GetLabels()) == 41
    assert rows[0]["segment"] == "spleen" and "intensity_mean_HU" in rows[0]
    for r in rows:
        v = r["label_value"]
        assert r["voxel_count"] == f.GetNumberOfPixels(v)
        assert [r["centroid_L_mm"], r["centroid_P_mm"], r["centroid_S_mm"]] == pytest.approx(f.GetCentroid(v), abs=1e-4)
        assert r["max_diameter_mm"] == pytest.approx(f.GetFeretDiameter(v), abs=1e-4)
        if r["voxel_count"] >= 50:
            tol = 0.05 if r["voxel_count"] >= 500 else 0.10
            assert r["surface_area_mm2"] == pytest.approx(f.GetPerimeter(v), rel=tol), r["segment"]
            assert r["sphericity"] == pytest.approx(f.GetRoundness(v), abs=0.1), r["segment"]
    liver = next(r for r in rows if r["segment"] == "liver")
    assert 20 < liver["intensity_median_HU"] < 120  # enhanced liver parenchyma in HU


def test_components_and_axial_axes_against_brute_force(shared):
    """Lesion counts against SimpleITK's fully connected components; the RECIST long axis against
    all pairs of in-slice voxel centres (no convex hull) and the short axis against a projection of
    all the slice's voxel centres, on real TotalSegmentator structures."""
    ts = shared / "data" / "totalseg"
    labels, info = read_segmentation(ts / "example_seg.nii.gz", ts / "labels_total.json", only_present=True)
    rows = {r["segment"]: r for r in measure_segmentation(labels, info)[0]}
    sx, sy = labels.spacing[:2]
    for lab in info:
        r = rows[lab.name]
        mask = labels.array == lab.value
        cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
        sizes = sorted(np.bincount(sitk.GetArrayFromImage(cc).ravel())[1:], reverse=True)
        assert r["component_count"] == len(sizes), lab.name
        assert r["component_volumes_mL"] == pytest.approx([s * labels.voxel_volume_mm3 / 1000 for s in sizes])
        if not 2 <= r["voxel_count"] <= 15000:  # brute force is quadratic: skip liver/spleen/colon
            continue
        best, short = 0.0, 0.0
        for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
            j, i = np.nonzero(mask[k])
            pts = np.stack([i * sx, j * sy], 1)
            d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
            if d.max() > best + 1e-9:
                a, b = np.unravel_index(np.argmax(d), d.shape)
                u = (pts[b] - pts[a]) / d[a, b]
                proj = pts @ np.array([-u[1], u[0]])
                best, short = d.max(), proj.max() - proj.min()
        assert r["axial_long_diameter_mm"] == pytest.approx(best, abs=1e-6), lab.name
        assert r["axial_short_diameter_mm"] == pytest.approx(short, abs=1e-6), lab.name
