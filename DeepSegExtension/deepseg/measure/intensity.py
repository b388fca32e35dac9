"""Intensity statistics of the image voxels inside a segment.

SD is the sample standard deviation (n-1, as ITK's LabelStatistics); percentiles and the median
use linear interpolation between order statistics (numpy's default).  On CT the unit is HU.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .segments import SegmentCrop

STATS = ("mean", "sd", "min", "max", "median", "p5", "p95")


def intensity_unit(image: Volume, modality: Optional[str] = None) -> str:
    """``HU`` for CT (given, or recognised by air below -500 in an integer or HU-range image),
    otherwise ``au`` (arbitrary units, e.g. MR)."""
    if modality:
        return "HU" if modality.upper() == "CT" else "au"
    meta = getattr(image, "meta", None) or {}
    if meta.get("modality"):
        return "HU" if str(meta["modality"]).upper() == "CT" else "au"
    return "HU" if float(image.array.min()) <= -500 else "au"


def check_same_grid(image: Volume, labels: Volume) -> None:
    if not image.same_grid(labels, tol=1e-3):
        raise InputError(
            f"The image (shape {image.shape}, spacing {image.spacing}) and the segmentation (shape {labels.shape}, "
            f"spacing {labels.spacing}) are not on the same voxel grid.",
            "Give the image the segmentation was made on (or resample one onto the other first).")


def intensity_measures(seg: SegmentCrop, image: Volume, unit: str) -> dict:
    """Mean, SD, min, max, median, 5th/95th percentile of ``image`` inside the segment."""
    if seg.voxel_count == 0:
        return {}
    values = image.array[seg.indices()].astype(np.float64)
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    stats = dict(mean=values.mean(), sd=values.std(ddof=1) if values.size > 1 else 0.0, min=values.min(),
                 max=values.max(), median=median, p5=p5, p95=p95)
    return {f"intensity_{k}_{unit}": float(v) for k, v in stats.items()}
