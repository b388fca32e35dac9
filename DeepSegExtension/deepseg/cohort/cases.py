"""The cases of a cohort, from a folder, a glob pattern or a manifest CSV.

* Folder or glob: each image file or DICOM series folder is one case, named after it.  For a model with
  several input channels, when every image file follows nnU-Net's ``<case>_<XXXX>.<ext>`` naming, the
  files of one case are its channels, in ``XXXX`` order (so multi-channel models run on an nnU-Net
  ``imagesTs`` folder as it is).  For a one-channel model every file is a case: ``patient_0001`` and
  ``patient_0002`` are two patients, and an ``imagesTs`` folder's ``p1_0000`` is case ``p1``.
* Manifest: one row per case, a ``case`` column and one column per model input channel (paths relative
  to the manifest's folder or absolute).
"""
from __future__ import annotations

import csv
import glob
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..io import full_suffix
from ..io.readers import NIBABEL_SUFFIXES, NIFTI_SUFFIXES, SITK_SUFFIXES

IMAGE_SUFFIXES = (NIFTI_SUFFIXES | SITK_SUFFIXES | NIBABEL_SUFFIXES) - {".seg.nrrd"}  # what read_volume reads
_NNUNET_NAME = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Case:
    name: str                  # folder name under OUT/
    inputs: tuple[str, ...]    # one path per model channel (files or DICOM series folders)


def find_cases(source: "str | Path", exclude: Optional[Path] = None, channels: Optional[int] = None) -> list[Case]:
    """Cases of ``source`` (folder, glob pattern or ``.csv`` manifest); ``exclude`` (the output folder) is
    skipped.  ``channels`` is the model's number of input images (None: unknown, nnU-Net names group)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        cases = _from_manifest(path)
    elif path.is_dir():
        cases = _from_paths(sorted(path.iterdir()), exclude, channels)
    elif any(ch in text for ch in "*?["):
        cases = _from_paths([Path(p) for p in sorted(glob.glob(str(path), recursive=True))], exclude, channels)
    else:
        raise InputError(f"Cohort input {text} is neither a folder, a glob pattern nor a .csv manifest.",
                         "Give a folder of images/DICOM series, a pattern such as 'scans/*.nii.gz', or a manifest CSV.")
    if not cases:
        raise InputError(f"No cases found in {text}.",
                         "Cases are image files (.nii.gz, .nrrd, .mha, .mgz...) or DICOM series folders.")
    _check_names(cases, text)
    _check_channels(cases, channels)
    return cases


def _from_paths(paths: list[Path], exclude: Optional[Path], channels: Optional[int]) -> list[Case]:
    exclude = exclude.resolve() if exclude else None
    folders, files = [], []
    for p in paths:
        if p.name.startswith(".") or (exclude and (p.resolve() == exclude or exclude in p.resolve().parents)):
            continue
        if p.is_dir():
            folders.append(p)
        elif full_suffix(p).lower() in IMAGE_SUFFIXES:
            files.append(p)
    stems = {p: p.name[: -len(full_suffix(p))] for p in files}
    cases = [Case(p.name, (str(p),)) for p in folders]
    nnunet_named = bool(files) and all(_NNUNET_NAME.match(s) for s in stems.values())
    if nnunet_named and channels == 1:  # one image per case: only an imagesTs "_0000" is not part of the name
        single = all(_NNUNET_NAME.match(s)["channel"] == "0000" for s in stems.values())
        cases += [Case(_NNUNET_NAME.match(stems[p])["case"] if single else stems[p], (str(p),)) for p in files]
    elif nnunet_named:
        groups: dict[str, dict[int, str]] = defaultdict(dict)
        for p, stem in stems.items():
            m = _NNUNET_NAME.match(stem)
            groups[m["case"]][int(m["channel"])] = str(p)
        for name, by_index in groups.items():
            if sorted(by_index) != list(range(channels or len(by_index))):
                raise InputError(f"Case {name} has channels {sorted(by_index)}; nnU-Net naming needs _0000, _0001, ... "
                                 + (f"up to _{channels - 1:04d} (the model takes {channels} images)." if channels
                                    else "without gaps."),
                                 "Rename the files or list the cases in a manifest CSV.")
            cases.append(Case(name, tuple(by_index[i] for i in range(len(by_index)))))
    else:
        cases += [Case(stems[p], (str(p),)) for p in files]
    return sorted(cases, key=lambda c: c.name)


def _from_manifest(path: Path) -> list[Case]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in (reader.fieldnames or []) if c != "case"]
        if "case" not in (reader.fieldnames or []) or not columns:
            raise InputError(f"Manifest {path} needs a 'case' column and one column per model input channel "
                             f"(it has {reader.fieldnames}).", "Add a header such as: case,CT")
        cases = []
        for row in reader:
            paths = []
            for c in columns:
                value = (row.get(c) or "").strip()
                if not value:
                    raise InputError(f"Manifest {path}: case {row['case']!r} has no {c!r} input.",
                                     "Fill in every channel column.")
                p = Path(value).expanduser()
                paths.append(str(p if p.is_absolute() else path.parent / p))
            cases.append(Case(row["case"].strip(), tuple(paths)))
    return cases


def _check_channels(cases: list[Case], channels: Optional[int]) -> None:
    """Every case has the model's number of input images (``channels``; None: not known), so a folder of
    single images for a multi-image model is refused before any worker starts, not case by case."""
    wrong = [c for c in cases if channels is not None and len(c.inputs) != channels]
    if wrong:
        raise InputError(f"The model takes {channels} image(s) per case, but case {wrong[0].name!r} has "
                         f"{len(wrong[0].inputs)} ({len(wrong)} of {len(cases)} cases differ).",
                         "Name each case's images <case>_0000, <case>_0001, ... (nnU-Net naming) or list them "
                         "in a manifest CSV with a 'case' column and one column per input.")


def _check_names(cases: list[Case], source: str) -> None:
    seen: dict[str, Case] = {}
    for case in cases:
        if not _SAFE_NAME.match(case.name):
            raise InputError(f"Case name {case.name!r} (from {source}) cannot be used as a folder name.",
                             "Use letters, digits, '.', '_', '+' or '-' (a manifest's 'case' column can rename it).")
        if case.name in seen:
            raise InputError(f"Two inputs give the case name {case.name!r}: {seen[case.name].inputs[0]} and "
                             f"{case.inputs[0]}.", "Rename one of them, or list the cases in a manifest CSV.")
        seen[case.name] = case
