"""The model catalog: ``Resources/models.json`` (validated against ``models.schema.json``).

Users pick a model by task (organs at risk, tumour/lesion, anatomy, brain); each entry says what it
segments (labels with SNOMED CT codes and TG-263 names), where its files come from (https with
sha256, a PyPI wheel member, or a local folder/zip), its licence and how to cite it.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError, StoreError
from ..resources import resource_path
from .card import ModelCard

CATALOG_FILE = "models.json"
SCHEMA_FILE = "models.schema.json"
TASK_GROUPS = {"organs-at-risk": "organs at risk", "tumour-lesion": "tumour / lesion", "anatomy": "anatomy",
               "brain": "brain"}


def resources_dir() -> Path:
    """The folder holding ``models.json`` (installed ``deepseg_resources`` package or ``Resources/``)."""
    return resource_path(CATALOG_FILE).parent


@dataclass(frozen=True)
class CatalogEntry:
    """One model of the catalog; ``data`` is the validated JSON object."""

    data: dict = field(repr=False)

    def __getattr__(self, name: str) -> Any:  # id, title, format, layout, license, sources...
        try:
            return self.data[name]
        except KeyError:
            if name in {"convert", "model_path", "homepage", "resources", "upstream", "limitations"}:
                return None
            raise AttributeError(name) from None

    def sources_of(self, kind: str) -> list[dict]:
        return [s for s in self.data["sources"] if s["type"] == kind]

    def download_plan(self) -> list[tuple[str, Optional[int]]]:
        """What ``fetch`` downloads from the first downloadable source: ``(what, bytes or None)``."""
        for src in self.data["sources"]:
            if src["type"] == "url":
                return [(f["url"], f.get("size") or f.get("approx_size")) for f in src["files"]]
            if src["type"] == "pypi":
                wheel = src.get("wheel") or {}
                return [(f"{src['requirement']} from the Python package index ({wheel.get('filename', 'wheel')})",
                         wheel.get("size"))]
        return []

    def download_size(self) -> Optional[int]:
        """Total bytes of ``download_plan`` (pinned or approximate), ``None`` if unknown."""
        sizes = [size for _, size in self.download_plan()]
        return sum(sizes) if sizes and None not in sizes else None

    def card(self) -> ModelCard:
        """The model card this entry describes (labels with terminology, inputs, licence, citation)."""
        d = self.data
        return ModelCard.from_json({
            "id": d["id"], "title": d["title"], "format": d["format"], "labels": d["labels"], "inputs": d["inputs"],
            "description": d["description"], "license": d["license"]["id"], "citation": d["citation"]})


@dataclass
class Catalog:
    models: dict[str, CatalogEntry]
    samples: dict[str, dict]
    path: Optional[Path] = None

    def get(self, model_id: str) -> CatalogEntry:
        if model_id in self.models:
            return self.models[model_id]
        close = difflib.get_close_matches(model_id, list(self.models), n=3)
        hint = f"Did you mean {', '.join(close)}? " if close else ""
        raise StoreError(f"No model {model_id!r} in the catalog.",
                         f"{hint}Run `deepseg models list` to see the available ids, or pass a model folder.")

    def sample(self, sample_id: str) -> dict:
        if sample_id not in self.samples:
            raise StoreError(f"No sample {sample_id!r} in the catalog.", "Choose one of: " + ", ".join(self.samples))
        return self.samples[sample_id]


def _where(error, data: dict) -> str:
    """``models[3] ('totalseg-organs').labels[2].color`` for a jsonschema error inside the catalog."""
    out, path = "", list(error.absolute_path)
    for i, part in enumerate(path):
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
        if i == 1 and path[0] in ("models", "samples"):
            try:
                out += f" ({data[path[0]][part]['id']!r})"
            except (KeyError, IndexError, TypeError):
                pass
    return out.lstrip(".") or "top level"


def validate_catalog(data: dict, source: str = CATALOG_FILE, schema: Optional[dict] = None) -> None:
    """Raise ``ModelError`` naming the entry and field when ``data`` breaks the schema or the
    rules the schema cannot express (unique ids and label values, known formats)."""
    import jsonschema

    from .formats import LOADERS

    schema = schema or json.loads((resources_dir() / SCHEMA_FILE).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise ModelError(f"Model catalog {source} is invalid at {_where(err, data)}: {err.message[:300]}",
                         f"Correct that entry ({SCHEMA_FILE} describes every field).")
    seen: set[str] = set()
    for kind in ("models", "samples"):
        for item in data.get(kind, []):
            if item["id"] in seen:
                raise ModelError(f"Model catalog {source}: id {item['id']!r} appears twice.", "Give each entry its own id.")
            seen.add(item["id"])
    for model in data["models"]:
        values = [lab["value"] for lab in model["labels"]]
        if len(values) != len(set(values)):
            raise ModelError(f"Model catalog {source}: {model['id']!r} uses a label value twice.",
                             "Give each label its own value.")
        if model["runnable"] and model["format"] not in LOADERS:
            raise ModelError(f"Model catalog {source}: {model['id']!r} has format {model['format']!r}, which no "
                             "loader reads.", "Use one of: " + ", ".join(sorted(LOADERS)) + ", or set runnable=false.")


def load_catalog(path: "str | Path | None" = None) -> Catalog:
    """Read and validate a catalog (default: the shipped ``models.json``, cached)."""
    if path is None:
        return _default_catalog()
    return _read(Path(path))


@lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return _read(resources_dir() / CATALOG_FILE)


def _read(path: Path) -> Catalog:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"Model catalog {path} does not exist.", "Reinstall deepseg.") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"Model catalog {path} is not valid JSON ({exc}).", "Repair the file.") from exc
    validate_catalog(data, str(path))
    return Catalog({m["id"]: CatalogEntry(m) for m in data["models"]},
                   {s["id"]: s for s in data.get("samples", [])}, path)
