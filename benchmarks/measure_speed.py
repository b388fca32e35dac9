"""Measurement speed: the TotalSegmentator example label maps (with their CT/MR) and a synthetic
512x512x300 label map with hundreds of segments, each timed against SimpleITK's label shape +
intensity statistics (Feret diameter and perimeter on) in the same run, plus the DICOM SEG and
RT-STRUCT export of the example CT series.

    OMP_NUM_THREADS=1 python benchmarks/measure_speed.py [--segments 300] [--markdown]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "totalseg"


def _time(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _sitk_stats(labels, image):
    import SimpleITK as sitk

    from deepseg.io import volume_to_sitk

    lab = sitk.Cast(volume_to_sitk(labels), sitk.sitkUInt16)
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.ComputeFeretDiameterOn()
    shape.ComputePerimeterOn()
    shape.Execute(lab)
    if image is not None:
        sitk.LabelIntensityStatisticsImageFilter().Execute(lab, volume_to_sitk(image))


def synthetic(n_segments: int, shape=(300, 512, 512), seed=0):
    """Ellipsoids of organ, bone and lesion sizes (10 large, 30% medium, the rest small), later ones
    overwriting earlier ones, on 0.8 x 0.8 x 1.5 mm voxels, with a CT-like int16 image."""
    from deepseg.volume import Volume

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    n_large, n_medium = 10, int(0.3 * n_segments)
    for v in range(1, n_segments + 1):
        r = rng.uniform(25, 60) if v <= n_large else rng.uniform(6, 15) if v <= n_large + n_medium else rng.uniform(1.5, 5)
        radii = r * rng.uniform(0.6, 1.4, 3) * np.array([0.55, 1.0, 1.0])  # fewer voxels along k (1.5 mm slices)
        c = [rng.uniform(rr, s - rr) for rr, s in zip(radii, shape)]
        box = tuple(slice(max(int(cc - rr) - 1, 0), min(int(cc + rr) + 2, s)) for cc, rr, s in zip(c, radii, shape))
        k, j, i = np.ogrid[box]
        inside = ((k - c[0]) / radii[0]) ** 2 + ((j - c[1]) / radii[1]) ** 2 + ((i - c[2]) / radii[2]) ** 2 <= 1
        labels[box][inside] = v
    image = rng.normal(0, 15, shape).astype(np.int16) - 1000
    image[labels > 0] += (1000 + 3 * labels[labels > 0] % 200).astype(np.int16)
    geo = dict(spacing=(0.8, 0.8, 1.5), origin=(-200.0, -200.0, -400.0))
    return Volume(labels, **geo), Volume(image, **geo)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    from deepseg.io import read_volume
    from deepseg.measure import measure_segmentation, read_segmentation

    rows = []
    cases = [("TotalSegmentator CT example_seg (122x101x30, 3 mm)", "example_seg.nii.gz", "labels_total.json",
              "example_ct_sm.nii.gz"),
             ("TotalSegmentator MR example_seg_mr (117x91x20, 3 mm)", "example_seg_mr.nii.gz", "labels_total_mr.json",
              "example_mr_sm.nii.gz"),
             ("TotalSegmentator CT example_seg_dicom (512x512x20)", "example_seg_dicom.nii.gz", "labels_total.json",
              None)]
    if SHARED.exists():
        for title, seg, lab, img in cases:
            labels, info = read_segmentation(SHARED / seg, SHARED / lab, only_present=True)
            image = read_volume(SHARED / img) if img else None
            t_ours, (table, _) = _time(lambda: measure_segmentation(labels, info, image))
            t_itk, _ = _time(lambda: _sitk_stats(labels, image))
            rows.append((title, len(table), t_ours, t_itk))
            print(f"{title}: {len(table)} segments, {t_ours:.2f} s (SimpleITK stats {t_itk:.2f} s)", flush=True)
        from deepseg.export.dicom_ref import read_reference_series
        from deepseg.export.dicom_seg import write_dicom_seg
        from deepseg.export.rtstruct import write_rtstruct
        import tempfile

        ref = read_reference_series(SHARED / "example_ct_dicom_uids")
        labels, info = read_segmentation(SHARED / "example_seg_dicom.nii.gz", SHARED / "labels_total.json",
                                         only_present=True)
        with tempfile.TemporaryDirectory() as tmp:
            t_seg, _ = _time(lambda: write_dicom_seg(Path(tmp) / "seg.dcm", labels, info, ref))
            t_rt, _ = _time(lambda: write_rtstruct(Path(tmp) / "rt.dcm", labels, info, ref))
        print(f"export of example_seg_dicom ({len(info)} segments, 20 slices): DICOM SEG {t_seg:.2f} s, "
              f"RT-STRUCT {t_rt:.2f} s", flush=True)
    else:
        print(f"{SHARED} not found: TotalSegmentator cases skipped", file=sys.stderr)
    t_make, (labels, image) = _time(lambda: synthetic(args.segments))
    present = int((np.bincount(labels.array.ravel()) > 0).sum() - 1)
    t_ours, (table, _) = _time(lambda: measure_segmentation(labels, None, image))
    t_itk, _ = _time(lambda: _sitk_stats(labels, image))
    title = f"synthetic 512x512x300, {present} segments, with CT image"
    rows.append((title, len(table), t_ours, t_itk))
    print(f"{title}: {t_ours:.2f} s (SimpleITK stats {t_itk:.2f} s; volume made in {t_make:.1f} s)", flush=True)
    if args.markdown:
        print("\n| case | segments | deepseg measure (s) | SimpleITK shape+intensity stats (s) | ratio |")
        print("|---|---|---|---|---|")
        for title, n, a, b in rows:
            print(f"| {title} | {n} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
