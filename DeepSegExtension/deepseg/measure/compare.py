"""Compare a test segmentation (e.g. automatic) with a reference (manual contour, second observer).

Segments are paired by SNOMED CT type (+modifier) code when both sides have one, otherwise by
name (case, spaces and underscores ignored) or TG-263 name.  Per pair: Dice, Jaccard, Hausdorff,
HD95, average symmetric surface distance, surface Dice at a tolerance, volume difference,
sensitivity and precision.

Surface definitions follow MONAI (and are tested against it): a mask's surface is its voxels
removed by one face-connected erosion; distances are Euclidean between those voxel centres, in mm.
HD95 is the larger of the two directed 95th percentiles; ASSD is the mean of both directed
distance sets pooled; surface Dice is the fraction of both surfaces within the tolerance.

Empty segments never produce NaN:
* both empty: Dice = Jaccard = surface Dice = 1, distances 0; sensitivity/precision empty (0/0);
* one empty: Dice = Jaccard = surface Dice = 0; distances empty (no surface to measure to);
  sensitivity (reference empty) or precision (test empty) empty;
every empty cell is explained in the row's ``note``.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..models.card import LabelInfo
from ..progress import Progress
from ..volume import Volume
from .segments import default_labels, label_array, present_values
from .table import Measurement

COMPARISON = [
    Measurement("segment", "Segment", "", "Segment name (test side)."),
    Measurement("reference_segment", "Reference segment", "", "Paired reference segment name."),
    Measurement("matched_by", "Matched by", "", "How the pair was made: code, name or tg263."),
    Measurement("dice", "Dice", "", "2|A and B| / (|A| + |B|)."),
    Measurement("jaccard", "Jaccard", "", "|A and B| / |A or B|."),
    Measurement("hausdorff_mm", "Hausdorff distance", "mm", "Largest surface-to-surface distance, both directions."),
    Measurement("hd95_mm", "95% Hausdorff distance", "mm", "Larger of the two directed 95th percentile distances."),
    Measurement("assd_mm", "Average symmetric surface distance", "mm", "Mean of all surface distances, both directions."),
    Measurement("surface_dice", "Surface Dice", "", "Fraction of both surfaces within the tolerance of the other."),
    Measurement("surface_dice_tolerance_mm", "Surface Dice tolerance", "mm", "Tolerance used for surface Dice."),
    Measurement("volume_test_mL", "Test volume", "mL", "Volume of the test segment."),
    Measurement("volume_reference_mL", "Reference volume", "mL", "Volume of the reference segment."),
    Measurement("volume_difference_mL", "Volume difference", "mL", "Test minus reference volume."),
    Measurement("volume_difference_percent", "Volume difference", "%", "Test minus reference, % of reference."),
    Measurement("sensitivity", "Sensitivity", "", "|A and B| / |reference| (true-positive rate)."),
    Measurement("precision", "Precision", "", "|A and B| / |test| (positive predictive value)."),
    Measurement("note", "Note", "", "Why a cell is empty or how an edge case was scored."),
]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def _code_key(lab: LabelInfo):
    return (lab.type.scheme, lab.type.value, lab.modifier.value if lab.modifier else "") if lab.type else None


def match_segments(test: Sequence[LabelInfo], reference: Sequence[LabelInfo]
                   ) -> list[tuple[Optional[LabelInfo], Optional[LabelInfo], str]]:
    """Pairs (test, reference, matched_by); unpaired segments appear with ``None`` on the other side."""
    keys = (("code", _code_key), ("name", lambda lab: _norm(lab.name)),
            ("tg263", lambda lab: lab.tg263.lower() if lab.tg263 else None))
    pairs, used = [], set()
    for t in test:
        found = None
        for how, key in keys:  # the strongest evidence first
            kt = key(t)
            match = next((r for r in reference if id(r) not in used and kt is not None and key(r) == kt), None)
            if match is not None:
                found = (match, how)
                break
        if found:
            used.add(id(found[0]))
            pairs.append((t, found[0], found[1]))
        else:
            pairs.append((t, None, ""))
    pairs += [(None, r, "") for r in reference if id(r) not in used]
    return pairs


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels removed by one face-connected erosion (MONAI's edge definition)."""
    return mask ^ ndimage.binary_erosion(mask)


def _directed_distances(from_surface: np.ndarray, to_surface: np.ndarray, spacing_kji) -> np.ndarray:
    return ndimage.distance_transform_edt(~to_surface, sampling=spacing_kji)[from_surface]


def dice(test: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks alone (1.0 when both are empty, as in ``compare_masks``): for loops
    that need only overlap, such as training evaluation and faithfulness re-segmentations."""
    total = int(test.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(test, reference).sum()) / total


def compare_masks(test: np.ndarray, reference: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 2.0) -> dict:
    """All metrics for two boolean masks on one grid (``spacing`` in i, j, k order, mm)."""
    voxel_mL = float(np.prod(spacing)) / 1000.0
    n_t, n_r = int(test.sum()), int(reference.sum())
    tp = int(np.logical_and(test, reference).sum())
    out: dict = {"surface_dice_tolerance_mm": tolerance_mm, "volume_test_mL": n_t * voxel_mL,
                 "volume_reference_mL": n_r * voxel_mL, "volume_difference_mL": (n_t - n_r) * voxel_mL}
    notes = []
    if n_r:
        out["volume_difference_percent"] = 100.0 * (n_t - n_r) / n_r
        out["sensitivity"] = tp / n_r
    if n_t:
        out["precision"] = tp / n_t
    if n_t == 0 and n_r == 0:
        out.update(dice=1.0, jaccard=1.0, surface_dice=1.0, hausdorff_mm=0.0, hd95_mm=0.0, assd_mm=0.0)
        notes.append("both empty: scored as full agreement; sensitivity, precision and % volume difference are 0/0")
    elif n_t == 0 or n_r == 0:
        out.update(dice=0.0, jaccard=0.0, surface_dice=0.0)
        empty = "test" if n_t == 0 else "reference"
        notes.append(f"{empty} segment empty: no surface, so distances are undefined"
                     + ("; precision is 0/0" if n_t == 0 else "; sensitivity and % volume difference are 0/0"))
    else:
        out["dice"] = 2.0 * tp / (n_t + n_r)
        out["jaccard"] = tp / (n_t + n_r - tp)
        spacing_kji = tuple(float(s) for s in spacing[::-1])
        st, sr = surface_voxels(test), surface_voxels(reference)
        d_tr = _directed_distances(st, sr, spacing_kji)
        d_rt = _directed_distances(sr, st, spacing_kji)
        out["hausdorff_mm"] = float(max(d_tr.max(), d_rt.max()))
        out["hd95_mm"] = float(max(np.percentile(d_tr, 95), np.percentile(d_rt, 95)))
        out["assd_mm"] = float(np.concatenate([d_tr, d_rt]).mean())
        out["surface_dice"] = float(((d_tr <= tolerance_mm).sum() + (d_rt <= tolerance_mm).sum()) / (len(d_tr) + len(d_rt)))
    out["note"] = "; ".join(notes)
    return out


def _box(boxes: list, value: Optional[int]):
    return boxes[value - 1] if value and 0 < value <= len(boxes) else None


def compare_segmentations(test: Volume, reference: Volume, test_labels: Optional[Sequence[LabelInfo]] = None,
                          reference_labels: Optional[Sequence[LabelInfo]] = None, tolerance_mm: float = 2.0,
                          progress: Optional[Progress] = None) -> tuple[list[dict], list[Measurement]]:
    """One row per paired (or unpaired) segment; both maps must share one grid (see ``grid.resample_labels``)."""
    if not test.same_grid(reference, tol=1e-3):
        raise InputError(f"The test (shape {test.shape}) and reference (shape {reference.shape}) segmentations are "
                         "not on the same voxel grid.",
                         "Resample one onto the other first (deepseg measure does this itself, nearest neighbour).")
    progress = progress or Progress()
    progress.stage("compare")
    a, b = label_array(test), label_array(reference)
    test_labels = test_labels or default_labels(present_values(test))
    reference_labels = reference_labels or default_labels(present_values(reference))
    boxes_a, boxes_b = ndimage.find_objects(a), ndimage.find_objects(b)
    rows = []
    pairs = match_segments(test_labels, reference_labels)
    for n, (t, r, how) in enumerate(pairs):
        progress.step(n, len(pairs))
        row = {"segment": t.name if t else "", "reference_segment": r.name if r else "", "matched_by": how}
        spans = [bx for bx in (_box(boxes_a, t and t.value), _box(boxes_b, r and r.value)) if bx is not None]
        if spans:
            box = tuple(slice(max(min(s[d].start for s in spans) - 1, 0), min(max(s[d].stop for s in spans) + 1, a.shape[d]))
                        for d in range(3))
            mt = np.pad(a[box] == t.value if t else np.zeros_like(a[box], bool), 1)
            mr = np.pad(b[box] == r.value if r else np.zeros_like(b[box], bool), 1)
        else:
            mt = mr = np.zeros((1, 1, 1), bool)
        row.update(compare_masks(mt, mr, test.spacing, tolerance_mm))
        if not (t and r):
            row["note"] = f"no {'reference' if t else 'test'} segment with this code or name; " + row["note"]
        rows.append(row)
    progress.finish()
    return rows, COMPARISON
