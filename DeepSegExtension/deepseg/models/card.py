"""Model cards: what a model takes (named channels, normalisation, spacing) and what it outputs
(labels with names, colours and DICOM/SNOMED CT terminology).

The same ``LabelInfo`` travels with every result, so the Slicer segmentation, the DICOM SEG, the
RT-STRUCT and the measurement table all name and colour a structure the same way.
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError

CARD_FILE = "deepseg-card.json"  # the model card inside a model folder (every format but raw nnU-Net/MeshNet)


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM triplet), e.g. ``Code("10200004", "SCT", "Liver")``."""

    value: str
    scheme: str
    meaning: str

    @classmethod
    def from_json(cls, d: Optional[dict]) -> Optional["Code"]:
        if not d:
            return None
        return cls(str(d["value"]), str(d.get("scheme", "SCT")), str(d["meaning"]))


# DICOM CID 7150 categories used for most outputs.
TISSUE = Code("85756007", "SCT", "Tissue")
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("49755003", "SCT", "Morphologically Altered Structure")


def distinct_color(value: int) -> tuple[int, int, int]:
    """The colour of label ``value`` when nothing gives one (a name-only label list): hues a golden
    angle apart with alternating saturation, so every label of a list looks different."""
    rgb = colorsys.hsv_to_rgb((value * 0.381966) % 1.0, (0.45, 0.7, 0.9)[value % 3], (0.95, 0.75)[value // 3 % 2])
    return tuple(round(c * 255) for c in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class LabelInfo:
    """One output structure: label value in the label map, display name, RGB colour (0-255; when
    not given, ``distinct_color(value)``), SNOMED CT category/type(/modifier) codes and, for organs
    at risk, the AAPM TG-263 name."""

    value: int
    name: str
    color: tuple[int, int, int] = None  # type: ignore[assignment]  # None -> distinct_color(value)
    category: Code = ANATOMICAL_STRUCTURE
    type: Optional[Code] = None
    modifier: Optional[Code] = None
    tg263: Optional[str] = None
    interpreted_type: str = "ORGAN"  # RT ROI Interpreted Type: ORGAN, GTV, AVOIDANCE, ...

    def __post_init__(self) -> None:
        if self.color is None:
            object.__setattr__(self, "color", distinct_color(self.value))

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]

    def display_name(self, use_tg263: bool = False) -> str:
        return self.tg263 if use_tg263 and self.tg263 else self.name

    @classmethod
    def from_json(cls, d: dict) -> "LabelInfo":
        return cls(
            value=int(d["value"]),
            name=str(d["name"]),
            color=tuple(int(c) for c in d["color"]) if d.get("color") else None,  # type: ignore[arg-type]
            category=Code.from_json(d.get("category")) or ANATOMICAL_STRUCTURE,
            type=Code.from_json(d.get("type")),
            modifier=Code.from_json(d.get("modifier")),
            tg263=d.get("tg263"),
            interpreted_type=d.get("interpreted_type", "ORGAN"),
        )

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class InputSpec:
    """A named input channel; ``pattern`` is a glob (case-insensitive) used to auto-assign files/nodes."""

    name: str
    modality: str = "CT"
    pattern: str = "*"

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        return cls(str(d["name"]), str(d.get("modality", "CT")), str(d.get("pattern", "*")))


@dataclass
class ModelCard:
    """Everything needed to run and describe a model, independent of its weight format.

    ``preprocessing`` holds per-format settings (normalisation per channel, target spacing,
    patch size, overlap, mirror axes...); loaders interpret it.
    """

    id: str
    title: str
    format: str
    labels: list[LabelInfo]
    inputs: list[InputSpec] = field(default_factory=lambda: [InputSpec("image")])
    version: str = "1"
    description: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    citation: str = ""

    def label(self, key: "int | str") -> LabelInfo:
        """Find a label by value or (case-insensitive) name or TG-263 name; clear error otherwise."""
        for lab in self.labels:
            if (isinstance(key, int) or str(key).isdigit()) and lab.value == int(key):
                return lab
            if isinstance(key, str) and key.lower() in {lab.name.lower(), (lab.tg263 or "").lower()}:
                return lab
        names = ", ".join(f"{lab.value}={lab.name}" for lab in self.labels)
        raise ModelError(f"Model {self.id!r} has no label {key!r}.", f"Choose one of: {names}.")

    @classmethod
    def from_json(cls, d: dict) -> "ModelCard":
        try:
            return cls(
                id=str(d["id"]), title=str(d.get("title", d["id"])), format=str(d["format"]),
                labels=[LabelInfo.from_json(x) for x in d["labels"]],
                inputs=[InputSpec.from_json(x) for x in d.get("inputs", [{"name": "image"}])],
                version=str(d.get("version", "1")), description=str(d.get("description", "")),
                architecture=dict(d.get("architecture", {})), preprocessing=dict(d.get("preprocessing", {})),
                license=str(d.get("license", "")), citation=str(d.get("citation", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"Model card is malformed: {exc!r}.",
                             "Compare it with Resources/model-card.schema.json.") from exc

    @classmethod
    def load(cls, path: "str | Path") -> "ModelCard":
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise ModelError(f"Model card {path} does not exist.", "Check the model folder.") from exc
        except json.JSONDecodeError as exc:
            raise ModelError(f"Model card {path} is not valid JSON ({exc}).", "Repair or re-download it.") from exc

    def to_json(self) -> dict:
        return {
            "id": self.id, "title": self.title, "format": self.format, "version": self.version,
            "description": self.description, "inputs": [asdict(i) for i in self.inputs],
            "labels": [lab.to_json() for lab in self.labels], "architecture": self.architecture,
            "preprocessing": self.preprocessing, "license": self.license, "citation": self.citation,
        }
