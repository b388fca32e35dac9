"""Baseline vs follow-up segmentation of one patient: volume change per structure, lesions matched
by overlap, new and disappeared lesions, and a volumetric response category.

Structures are paired as in ``compare`` (SNOMED CT code, then name).  Lesions are the 26-connected
components of a structure; the follow-up map is brought onto the baseline grid (nearest neighbour
in patient coordinates, after an optional SimpleITK rigid registration) and components that share
at least one voxel are matched: 1:1 "matched", several baseline -> one follow-up "merged", one
baseline -> several follow-up "split", none "disappeared" / "new".  Structure volumes use each
scan's own grid; lesion volumes use the baseline grid.

Volumetric response (the sum over the target structures, thresholds = a sphere's volume at
RECIST 1.1's -30% / +20% diameter change, 0.7^3 - 1 and 1.2^3 - 1):
  CR  all lesions gone and none new;
  PD  total volume change >= +73% or any new lesion;
  PR  total volume change <= -65%;
  SD  otherwise; NE (not evaluable) when the baseline volume is 0 and nothing is new.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..models.card import LabelInfo
from ..progress import Progress
from ..volume import Volume
from .compare import match_segments
from .grid import resample_labels, rigid_register
from .segments import default_labels, label_array, present_values
from .shape import FULL_CONNECTIVITY
from .table import Measurement


@dataclass(frozen=True)
class ResponseThresholds:
    partial_response_percent: float = -65.0
    progression_percent: float = 73.0


STRUCTURE_CHANGE = [
    Measurement("segment", "Segment", "", "Structure name (baseline, else follow-up)."),
    Measurement("matched_by", "Matched by", "", "How baseline and follow-up structures were paired."),
    Measurement("baseline_volume_mL", "Baseline volume", "mL", "Volume at baseline."),
    Measurement("followup_volume_mL", "Follow-up volume", "mL", "Volume at follow-up."),
    Measurement("volume_change_mL", "Volume change", "mL", "Follow-up minus baseline."),
    Measurement("volume_change_percent", "Volume change", "%", "Change as % of the baseline volume."),
    Measurement("baseline_lesions", "Baseline lesions", "count", "Connected components at baseline."),
    Measurement("followup_lesions", "Follow-up lesions", "count", "Connected components at follow-up."),
    Measurement("new_lesions", "New lesions", "count", "Follow-up components overlapping no baseline one."),
    Measurement("disappeared_lesions", "Disappeared lesions", "count", "Baseline components overlapping none."),
    Measurement("response", "Volumetric response", "", "CR/PR/SD/PD/NE for this structure alone (see thresholds)."),
    Measurement("note", "Note", "", "Why a cell is empty."),
]

LESIONS = [
    Measurement("segment", "Segment", "", "Structure the lesion belongs to."),
    Measurement("baseline_lesion", "Baseline lesion", "id", "Component number at baseline (largest = 1)."),
    Measurement("followup_lesion", "Follow-up lesion", "id", "Component number(s) at follow-up (largest = 1)."),
    Measurement("status", "Status", "", "matched, merged, split, new or disappeared."),
    Measurement("baseline_volume_mL", "Baseline volume", "mL", "Lesion volume at baseline."),
    Measurement("followup_volume_mL", "Follow-up volume", "mL", "Matched follow-up volume (on the baseline grid)."),
    Measurement("volume_change_percent", "Volume change", "%", "Change as % of the baseline lesion volume."),
]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component image numbered by decreasing size (1 = largest) and the sizes."""
    comp, n = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(comp.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    relabel = np.zeros(n + 1, np.int32)
    relabel[order + 1] = np.arange(1, n + 1)
    return relabel[comp], sizes[order]


def match_lesions(baseline: np.ndarray, followup: np.ndarray, voxel_mL: float, name: str) -> list[dict]:
    """Lesion rows for one structure's two boolean masks on one grid."""
    cb, sb = _components(baseline)
    cf, sf = _components(followup)
    overlap = np.bincount(cb.ravel().astype(np.int64) * (len(sf) + 1) + cf.ravel(),
                          minlength=(len(sb) + 1) * (len(sf) + 1)).reshape(len(sb) + 1, len(sf) + 1)[1:, 1:] > 0
    rows = []
    for b in range(len(sb)):
        partners = np.nonzero(overlap[b])[0]
        if len(partners) == 0:
            status = "disappeared"
        elif len(partners) > 1:
            status = "split"
        else:
            status = "merged" if overlap[:, partners[0]].sum() > 1 else "matched"
        fu = float(sf[partners].sum() * voxel_mL)
        base = float(sb[b] * voxel_mL)
        rows.append({"segment": name, "baseline_lesion": b + 1, "followup_lesion": [int(p) + 1 for p in partners],
                     "status": status, "baseline_volume_mL": base, "followup_volume_mL": fu,
                     "volume_change_percent": 100.0 * (fu - base) / base})
    for f in np.nonzero(~overlap.any(axis=0))[0]:
        rows.append({"segment": name, "baseline_lesion": None, "followup_lesion": [int(f) + 1], "status": "new",
                     "baseline_volume_mL": 0.0, "followup_volume_mL": float(sf[f] * voxel_mL)})
    return rows


def response_category(baseline_mL: float, followup_mL: float, new_lesions: int,
                      thresholds: ResponseThresholds = ResponseThresholds()) -> str:
    """CR/PR/SD/PD/NE from total volumes and the number of new lesions (module doc)."""
    if new_lesions:
        return "PD"
    if baseline_mL <= 0:
        return "NE"
    if followup_mL <= 0:
        return "CR"
    change = 100.0 * (followup_mL - baseline_mL) / baseline_mL
    if change >= thresholds.progression_percent:
        return "PD"
    return "PR" if change <= thresholds.partial_response_percent else "SD"


def followup_change(baseline: Volume, followup: Volume, baseline_labels: Optional[Sequence[LabelInfo]] = None,
                    followup_labels: Optional[Sequence[LabelInfo]] = None, baseline_image: Optional[Volume] = None,
                    followup_image: Optional[Volume] = None, register: bool = False,
                    targets: Optional[Sequence[str]] = None, thresholds: ResponseThresholds = ResponseThresholds(),
                    progress: Optional[Progress] = None) -> dict:
    """Structure rows, lesion rows and the overall response over ``targets`` (names; all when None)."""
    progress = progress or Progress()
    baseline_labels = baseline_labels or default_labels(present_values(baseline))
    followup_labels = followup_labels or default_labels(present_values(followup))
    transform = None
    if register and not baseline.same_grid(followup):
        progress.stage("register")
        fixed = baseline_image or baseline.with_array((label_array(baseline) > 0).astype(np.float32))
        moving = followup_image or followup.with_array((label_array(followup) > 0).astype(np.float32))
        transform = rigid_register(fixed, moving)
    progress.stage("follow-up")
    fu_on_base = label_array(resample_labels(followup, baseline, transform))
    base_arr, fu_arr = label_array(baseline), label_array(followup)
    vb, vf = baseline.voxel_volume_mm3 / 1000.0, followup.voxel_volume_mm3 / 1000.0
    counts_b, counts_f = np.bincount(base_arr.ravel()), np.bincount(fu_arr.ravel())
    structures, lesions = [], []
    totals = {"baseline_mL": 0.0, "followup_mL": 0.0, "new_lesions": 0}
    pairs = match_segments(baseline_labels, followup_labels)
    for n, (b, f, how) in enumerate(pairs):
        progress.step(n, len(pairs))
        name = (b or f).name
        base_mL = float(counts_b[b.value] * vb) if b and b.value < len(counts_b) else 0.0
        fu_mL = float(counts_f[f.value] * vf) if f and f.value < len(counts_f) else 0.0
        mb = base_arr == b.value if b else np.zeros(base_arr.shape, bool)
        mf = fu_on_base == f.value if f else np.zeros(base_arr.shape, bool)
        rows = match_lesions(mb, mf, vb, name)
        lesions += rows
        new = sum(r["status"] == "new" for r in rows)
        row = {"segment": name, "matched_by": how, "baseline_volume_mL": base_mL, "followup_volume_mL": fu_mL,
               "volume_change_mL": fu_mL - base_mL, "baseline_lesions": sum(r["baseline_lesion"] is not None for r in rows),
               "followup_lesions": len({i for r in rows for i in r["followup_lesion"]}), "new_lesions": new,
               "disappeared_lesions": sum(r["status"] == "disappeared" for r in rows),
               "response": response_category(base_mL, fu_mL, new, thresholds), "note": ""}
        if base_mL > 0:
            row["volume_change_percent"] = 100.0 * (fu_mL - base_mL) / base_mL
        else:
            row["note"] = "no baseline volume: % change undefined"
        if not (b and f):
            row["note"] = (f"only in the {'baseline' if b else 'follow-up'} segmentation; " + row["note"]).strip("; ")
        structures.append(row)
        if targets is None or name in targets:
            totals["baseline_mL"] += base_mL
            totals["followup_mL"] += fu_mL
            totals["new_lesions"] += new
    progress.finish()
    change = (100.0 * (totals["followup_mL"] - totals["baseline_mL"]) / totals["baseline_mL"]
              if totals["baseline_mL"] > 0 else None)
    response = {"category": response_category(totals["baseline_mL"], totals["followup_mL"], totals["new_lesions"],
                                              thresholds),
                "targets": list(targets) if targets else "all structures", **totals, "volume_change_percent": change,
                "thresholds": {"PR_at_or_below_percent": thresholds.partial_response_percent,
                               "PD_at_or_above_percent": thresholds.progression_percent,
                               "PD_if_new_lesion": True, "CR": "all target volume gone, no new lesion"},
                "registered": transform is not None}
    return {"structures": structures, "lesions": lesions, "response": response}
