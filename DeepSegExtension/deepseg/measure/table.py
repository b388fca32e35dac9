"""Per-segment measurement table: the measurement spec (stable keys, names, units, descriptions,
exposed to Slicer's Segment Statistics plugin), the one entry point that fills it, and CSV/JSON
writers.  Units are part of every key (``volume_mL``, ``surface_area_mm2``...), so a column
never loses its unit; cells that are undefined are empty and the ``note`` column says why."""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..models.card import LabelInfo
from ..progress import Progress
from ..volume import Volume
from .intensity import STATS, check_same_grid, intensity_measures, intensity_unit
from .segments import iter_segments
from .shape import shape_measures


@dataclass(frozen=True)
class Measurement:
    """One column: ``key`` (stable, includes the unit), display ``name``, ``unit`` and ``description``."""

    key: str
    name: str
    unit: str
    description: str


IDENTITY = [
    Measurement("label_value", "Label value", "", "Value of the segment in the label map."),
    Measurement("segment", "Segment", "", "Segment name."),
    Measurement("terminology", "Terminology", "", "SNOMED CT type code of the segment (scheme:value meaning)."),
]

SHAPE = [
    Measurement("voxel_count", "Voxel count", "voxels", "Number of voxels in the segment."),
    Measurement("volume_mm3", "Volume", "mm3", "Voxel count x voxel volume."),
    Measurement("volume_mL", "Volume", "mL", "Voxel count x voxel volume, in millilitres (cm3)."),
    Measurement("surface_area_mm2", "Surface area", "mm2",
                "Area of the closed surface (marching cubes at the 0.5 level of the mask, 20 Taubin smoothing passes)."),
    Measurement("sphericity", "Sphericity", "", "pi^(1/3) (6 V)^(2/3) / A of the closed surface; 1 for a sphere."),
    Measurement("max_diameter_mm", "Maximum 3D diameter", "mm",
                "Largest distance between two voxel centres of the segment (Feret diameter)."),
    Measurement("axial_long_diameter_mm", "Longest axial diameter", "mm",
                "RECIST long axis: largest in-slice distance between voxel centres over the acquisition slices."),
    Measurement("axial_short_diameter_mm", "Perpendicular short axis", "mm",
                "RECIST short axis: extent of the segment perpendicular to the long axis, in the long axis' slice."),
    Measurement("axial_slice_k", "Long-axis slice", "index", "Slice index k (0-based) of the longest axial diameter."),
    *[Measurement(f"centroid_{a}_mm", f"Centroid {a}", "mm", f"Centre of mass, patient LPS coordinate {a} "
                  "(DICOM/ITK; RAS = -L, -P, +S).") for a in "LPS"],
    *[Measurement(f"bbox_{a}_{e}", f"Bounding box {a} {e}", "index", f"{e.capitalize()} voxel index along {a}.")
      for a in "ijk" for e in ("min", "max")],
    *[Measurement(f"bbox_{a}_size_mm", f"Bounding box size {a}", "mm", f"Bounding-box extent along the image {a} axis.")
      for a in "ijk"],
    Measurement("component_count", "Connected components", "count",
                "Number of 26-connected components (lesion count for a lesion segment)."),
    Measurement("component_volumes_mL", "Component volumes", "mL", "Volume of each component, largest first."),
]

INTENSITY_DESCRIPTIONS = {
    "mean": "Mean intensity.", "sd": "Sample standard deviation (n-1).", "min": "Minimum intensity.",
    "max": "Maximum intensity.", "median": "Median intensity.", "p5": "5th percentile (linear interpolation).",
    "p95": "95th percentile (linear interpolation).",
}

NOTE = Measurement("note", "Note", "", "Why a cell is empty (e.g. the segment has no voxels).")


def measurement_spec(intensity: Optional[str] = None) -> list[Measurement]:
    """Every column, in order; ``intensity`` is the intensity unit (``HU``/``au``) when an image is given."""
    cols = IDENTITY + SHAPE
    if intensity:
        cols = cols + [Measurement(f"intensity_{s}_{intensity}", f"Intensity {s}", intensity,
                                   INTENSITY_DESCRIPTIONS[s]) for s in STATS]
    return cols + [NOTE]


def _terminology(lab: LabelInfo) -> str:
    return f"{lab.type.scheme}:{lab.type.value} {lab.type.meaning}" if lab.type else ""


def measure_segmentation(labels: Volume, label_info: Optional[Sequence[LabelInfo]] = None,
                         image: Optional[Volume] = None, modality: Optional[str] = None,
                         progress: Optional[Progress] = None) -> tuple[list[dict], list[Measurement]]:
    """Measure every segment: rows (one dict per segment, keys from the returned spec) and the spec."""
    progress = progress or Progress()
    unit = None
    if image is not None:
        check_same_grid(image, labels)
        unit = intensity_unit(image, modality)
    progress.stage("measure")
    rows = []
    for seg in iter_segments(labels, label_info, progress):
        row = {"label_value": seg.label.value, "segment": seg.label.name, "terminology": _terminology(seg.label)}
        row.update(shape_measures(seg, labels))
        if image is not None:
            row.update(intensity_measures(seg, image, unit))
        row["note"] = "" if seg.voxel_count else "segment is empty: only the counts are defined"
        rows.append(row)
    progress.finish()
    return rows, measurement_spec(unit)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: Sequence[dict], spec: Sequence[Measurement], path: "str | Path") -> None:
    """CSV with one row per segment; list cells are ``;``-joined, undefined cells empty."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([m.key for m in spec])
        for row in rows:
            writer.writerow([_cell(row.get(m.key)) for m in spec])


def table_json(rows: Sequence[dict], spec: Sequence[Measurement], **extra) -> dict:
    """JSON document: the spec (so every key's unit and meaning travel with the numbers) and rows
    with undefined values as null."""
    return {"columns": [asdict(m) for m in spec], "rows": [{m.key: row.get(m.key) for m in spec} for row in rows],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def write_json(document: dict, path: "str | Path") -> None:
    Path(path).write_text(json.dumps(document, indent=1))
