"""Write outputs so that a failure or a cancel never leaves a partial file behind.

Every output is first written to a hidden temporary file in the destination folder; only when
*all* outputs of a job are complete are they renamed into place (``os.replace`` is atomic on one
file system).  Existing files are replaced only then, and only if the caller allowed it.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from ..errors import InputError


def full_suffix(path: Path) -> str:
    """``.seg.nrrd``, ``.nii.gz``... (the part the writers look at), or the plain suffix."""
    name = path.name.lower()
    for multi in (".seg.nrrd", ".nii.gz"):
        if name.endswith(multi):
            return multi
    return path.suffix


class AtomicOutputs:
    """Collect several outputs, write each to a temporary sibling, move them all in at the end.

    >>> with AtomicOutputs(overwrite=False) as out:
    ...     out.add("case.seg.nrrd", lambda tmp: write_seg(tmp))
    """

    def __init__(self, overwrite: bool = True) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def check(self, *paths: "str | Path | None") -> None:
        """Refuse up front (before any long computation) outputs that exist or have no folder."""
        for path in paths:
            if path is None:
                continue
            final = Path(path).expanduser().resolve()
            if final.exists() and not self.overwrite:
                raise InputError(f"Output {final} already exists.", "Choose another path or pass --overwrite.")
            if not final.parent.is_dir():
                raise InputError(f"Output folder {final.parent} does not exist.",
                                 "Create it first or choose another path.")

    def add(self, path: "str | Path", write: Callable[[Path], None]) -> Path:
        self.check(path)
        final = Path(path).expanduser().resolve()
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial{full_suffix(final)}")
        self._pending.append((tmp, final))
        write(tmp)
        return final

    def commit(self) -> None:
        for tmp, final in self._pending:
            os.replace(tmp, final)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
