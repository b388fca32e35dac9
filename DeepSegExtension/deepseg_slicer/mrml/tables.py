"""Measurement rows -> table node -> CSV."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .volumes import save_node


def table_from_rows(rows: Sequence[Mapping[str, object]], scene, *, node=None, name: str = "DeepSeg measurements",
                    units: Optional[Mapping[str, str]] = None):
    """A table node with one row per mapping; numeric columns become double columns (empty cells
    NaN), the others strings; column order is first-seen order."""
    import vtk

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    was_modifying = node.StartModify()
    node.RemoveAllColumns()
    for col in columns:
        values = [row.get(col) for row in rows]
        numeric = all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
                      for v in values) and any(v is not None for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(col)
        for v in values:
            if numeric:
                array.InsertNextValue(float("nan") if v is None else float(v))
            else:
                array.InsertNextValue("" if v is None else str(v))
        table.AddColumn(array)
        if units and col in units:
            node.SetColumnUnitLabel(col, units[col])
    node.Modified()
    node.EndModify(was_modifying)
    return node


def write_table_csv(node, path: "str | Path") -> Path:
    """Write a table node as CSV with Slicer's table storage node (a .schema.csv goes beside it)."""
    return save_node(node, path)
