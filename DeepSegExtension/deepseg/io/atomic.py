"""Write outputs so that a failure or a cancel never leaves a partial file behind, and claim them first.

Every output is first written to a hidden temporary file in the destination folder; only when
*all* outputs of a job are complete are they renamed into place (``os.replace`` is atomic on one
file system).  Existing files are replaced only then, only if the caller allowed it, and all or none:
if one rename fails, the outputs already renamed are taken back and the earlier files put back.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError

# detached-header formats (header + data file) -> the one-file format with the same content
SINGLE_FILE = {".mhd": ".mha", ".nhdr": ".nrrd"}


def full_suffix(path: Path) -> str:
    """``.seg.nrrd``, ``.nii.gz``... (the part the writers look at), or the plain suffix."""
    name = path.name.lower()
    for multi in (".seg.nrrd", ".nii.gz"):
        if name.endswith(multi):
            return multi
    return path.suffix


def write_atomically(path: "str | Path", write: Callable[[Path], None]) -> Path:
    """Write one file through a hidden temporary sibling renamed over ``path`` (readers never see half a
    file; on failure the temporary file is removed and ``path`` is unchanged).  No claim, no overwrite
    check: for files a job owns and rewrites, such as a table kept up to date."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{full_suffix(path)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


class AtomicOutputs:
    """Claim outputs at the start of a job, write each to a temporary sibling, move them all in at the end.

    ``reserve`` runs before any long computation: it refuses outputs that exist (unless ``overwrite``)
    or whose folder is missing, and claims each one by exclusively creating a lock file next to it.
    That proves the folder is writable (a read-only folder fails at once with the system's own error)
    and makes a second job writing the same output fail at its start, not after its whole run.

    >>> with AtomicOutputs(overwrite=False).reserve("case.seg.nrrd") as out:
    ...     out.add("case.seg.nrrd", lambda tmp: write_seg(tmp))
    """

    def __init__(self, overwrite: bool = True) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []
        self._locks: dict[Path, Path] = {}  # final path -> its lock file

    def check(self, *paths: "str | Path | None") -> None:
        """Refuse outputs that exist (without ``overwrite``) or have no folder."""
        for path in paths:
            if path is None:
                continue
            final = _final(path)
            single = SINGLE_FILE.get(full_suffix(final).lower())
            if single:
                raise InputError(f"Output {final} would keep its voxels in a second file, which cannot be "
                                 "written and moved into place with the header in one step.",
                                 f"Write {final.name[: -len(full_suffix(final))]}{single} instead: the same "
                                 "image in one file.")
            if final.is_dir():
                raise InputError(f"Output {final} is a folder.", "Give the output a file name inside it, or "
                                 "another path: a folder is never replaced by a file.")
            if final.exists() and not self.overwrite:
                raise InputError(f"Output {final} already exists.", "Choose another path or pass --overwrite.")
            if not final.parent.is_dir():
                raise InputError(f"Output folder {final.parent} does not exist.",
                                 "Create it first or choose another path.")

    def reserve(self, *paths: "str | Path | None") -> "AtomicOutputs":
        """``check`` the outputs, then claim each with an exclusively created lock file (released by
        ``commit``/``discard``).  On any refusal the claims made so far are released."""
        self.check(*paths)
        try:
            for path in paths:
                if path is not None and _final(path) not in self._locks:
                    final = _final(path)
                    self._locks[final] = _claim(final)
        except BaseException:
            self._release()
            raise
        return self

    def add(self, path: "str | Path", write: Callable[[Path], None]) -> Path:
        self.reserve(path)
        final = _final(path)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial{full_suffix(final)}")
        self._pending.append((tmp, final))
        write(tmp)
        return final

    def commit(self) -> None:
        """Move every written output into place, all or nothing.  An existing file is first given a hidden
        second name (``_keep_previous``); if any move fails, the outputs already moved are taken back, every
        earlier file is as it was, and the error names the output that could not be moved."""
        moved: list[tuple[Path, Optional[Path]]] = []  # (final, its earlier file's second name or None)
        try:
            for tmp, final in self._pending:
                previous = _keep_previous(final)
                try:
                    os.replace(tmp, final)
                except OSError:
                    if previous is not None:  # ``final`` itself was not touched
                        previous.unlink(missing_ok=True)
                    raise
                moved.append((final, previous))
        except OSError as exc:
            kept = _take_back(moved)
            raise InputError(
                f"Could not move output {final} into place: [Errno {exc.errno}] {exc.strerror}. None of this "
                "run's outputs were written" + (f", but the earlier {', '.join(f'{f} is now {p}' for f, p in kept)}"
                                                if kept else " and every earlier file is unchanged") + ".",
                f"Make {final} replaceable (a file, not a folder, in a folder you can write to), then run again.",
            ) from exc
        else:
            for _, previous in moved:
                if previous is not None:
                    with contextlib.suppress(OSError):
                        previous.unlink()
            self._pending.clear()
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove temporary files and claims; a failure to clean up never hides the error that led here."""
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._pending.clear()
        self._release()

    def _release(self) -> None:
        for lock in self._locks.values():
            with contextlib.suppress(OSError):
                lock.unlink(missing_ok=True)
        self._locks.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _keep_previous(final: Path) -> Optional[Path]:
    """A hidden second name for the file at ``final`` (a hard link; a copy where the file system has none),
    so a failed commit can put it back; None when ``final`` does not exist."""
    if not os.path.lexists(final):
        return None
    kept = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.previous{full_suffix(final)}")
    try:
        os.link(final, kept, follow_symlinks=False)
    except (OSError, NotImplementedError):  # no hard links here (FAT, some network shares)
        try:
            shutil.copy2(final, kept, follow_symlinks=False)  # a folder fails here: it is never replaced
        except OSError:
            with contextlib.suppress(OSError):
                kept.unlink(missing_ok=True)  # a copy cut short (disk full) is not left behind
            raise
    return kept


def _take_back(moved: list[tuple[Path, Optional[Path]]]) -> list[tuple[Path, Path]]:
    """Undo the moves of a failed commit, last first: earlier files back in place, new ones removed.
    Returns the earlier files that could not be put back, with the name they are kept under."""
    kept = []
    for final, previous in reversed(moved):
        try:
            if previous is None:
                final.unlink(missing_ok=True)
            else:
                os.replace(previous, final)
        except OSError:
            if previous is not None:
                kept.append((final, previous))
    return kept


def _final(path: "str | Path") -> Path:
    return Path(path).expanduser().resolve()


def lock_path(final: Path) -> Path:
    """The lock file that claims output ``final`` while a job writes it."""
    return final.with_name(f".{final.name}.deepseg-lock")


def _claim(final: Path) -> Path:
    """Create ``final``'s lock file exclusively (``O_EXCL``: atomic, one winner); take over a lock left by
    a process of this machine that no longer runs."""
    lock = lock_path(final)
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if attempt == 0 and owner.get("host") == socket.gethostname() and not _alive(owner.get("pid")):
                _take_over(lock, owner)
                continue
            raise InputError(f"Output {final} is being written by another DeepSeg run (process {owner.get('pid', '?')} "
                             f"on {owner.get('host', '?')}, since {owner.get('started', '?')}).",
                             f"Wait for that run to finish or choose another output path; if no such run is "
                             f"active, delete {lock}.") from None
        except OSError as exc:  # read-only folder, no permission, disk full: the system's own words
            raise InputError(f"Cannot write in the output folder {final.parent}: [Errno {exc.errno}] {exc.strerror}.",
                             "Choose a folder you can write to (or fix its permissions); nothing was run.") from exc
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, fh)
        return lock
    raise AssertionError("unreachable")  # pragma: no cover


def _take_over(lock: Path, stale: dict) -> None:
    """Delete ``lock`` if it still holds the ``stale`` claim (read before).  Done under a second,
    exclusively created file, so that of two runs taking over one stale claim, the later one never
    deletes the claim the earlier one has just made in its place."""
    guard = lock.with_name(f"{lock.name}.takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # another run is taking it over now: the next attempt meets its claim
    try:
        if _owner(lock) == stale:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            guard.unlink()


def _owner(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: object) -> bool:
    """Whether process ``pid`` runs (POSIX); unknown (Windows, bad record) counts as alive, never taken over."""
    if not isinstance(pid, int) or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
