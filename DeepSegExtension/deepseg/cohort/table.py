"""``OUT/cohort.csv`` (one row per finished case, rewritten atomically as cases finish) and ``OUT/cohort.json``
(provenance of the run: command settings, model, cluster, software, per-worker statistics, counts)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Optional

from ..io.atomic import write_atomically

COLUMNS = ["case", "status", "seconds", "worker", "attempts", "error", "fix"]


class CohortTable:
    """The rows of the finished cases, in case order, with one ``<structure>_mL`` column per structure."""

    def __init__(self, out_dir: Path, case_order: list[str]) -> None:
        self.path = out_dir / "cohort.csv"
        self.rows: dict[str, dict] = {}
        self._order = {name: i for i, name in enumerate(case_order)}
        self._structures: list[str] = []
        self._written = 0.0

    def add(self, row: dict) -> None:
        self.rows[row["case"]] = row
        for v in row.get("volumes", []):
            if v["name"] not in self._structures:
                self._structures.append(v["name"])

    def write(self, at_most_every_s: float = 0.0) -> None:
        """Rewrite the CSV (temporary file + rename, so readers never see half a table); throttled when asked."""
        now = time.monotonic()
        if now - self._written < at_most_every_s:
            return
        self._written = now
        write_atomically(self.path, self._write_csv)

    def _write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS + [f"{s}_mL" for s in self._structures])
            for name in sorted(self.rows, key=lambda n: self._order.get(n, len(self._order))):
                row = self.rows[name]
                volumes = {v["name"]: v["volume_ml"] for v in row.get("volumes", [])}
                writer.writerow([row.get(c, "") for c in COLUMNS] + [volumes.get(s, "") for s in self._structures])

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "skipped": 0}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out


def write_provenance(out_dir: Path, document: dict, workers: Optional[dict] = None) -> Path:
    """Write ``cohort.json`` atomically (``workers``: per-worker statistics gathered from the rows)."""
    path = out_dir / "cohort.json"
    doc = dict(document)
    if workers is not None:
        doc["workers"] = workers
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2, default=str)))
