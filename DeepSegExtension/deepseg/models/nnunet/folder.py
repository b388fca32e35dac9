"""Find the parts of an nnU-Net v2 results folder: which ``Trainer__Plans__configuration`` folder, which
folds, and the files each needs, with errors that name the missing file and the fix; and what each fold's
network is, from the files alone (no PyTorch here: a run compiles a cached network while PyTorch loads)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Optional, Sequence

from ...errors import ModelError
from ..base import fold_name, select_folds
from ..card import CARD_FILE, InputSpec, ModelCard
from ..download import sha256_file
from .plans import batch_size_for, read_configuration

CONFIG_PREFERENCE = ("3d_fullres", "2d", "3d_lowres")


def _trainer_folders(folder: Path) -> list[Path]:
    """``Trainer__Plans__config`` folders in ``folder`` or one level down (a ``DatasetXXX_Name`` folder,
    as a published zip unpacks)."""
    found = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.count("__") == 2]
    if not found:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            found += [p for p in sorted(sub.iterdir()) if p.is_dir() and p.name.count("__") == 2]
    return found


def select_training_folder(folder: Path, configuration: Optional[str] = None) -> Path:
    """The folder holding ``plans.json``/``dataset.json``/``fold_N`` for ``configuration``.

    ``folder`` may be that folder itself, or a results folder holding one ``Trainer__Plans__config``
    folder per configuration (default: 3d_fullres, else the only one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"nnU-Net model folder {folder} does not exist.", "Check the path, or fetch the model again.")
    if (folder / "plans.json").exists() or (folder / "dataset.json").exists() or any(folder.glob("fold_*")):
        return folder
    candidates = _trainer_folders(folder)
    if not candidates:
        raise ModelError(f"{folder} is not an nnU-Net v2 results folder: it has no plans.json, dataset.json, "
                         "fold_N/ or Trainer__Plans__configuration/ folder.",
                         "Point to the folder nnUNetv2_train wrote (…/nnUNet_results/DatasetXXX_Name/"
                         "nnUNetTrainer__nnUNetPlans__3d_fullres) or to an unpacked model zip.")
    by_config: dict[str, list[Path]] = {}
    for c in candidates:
        by_config.setdefault(c.name.split("__")[2], []).append(c)
    if configuration is None:
        configuration = next((c for c in CONFIG_PREFERENCE if c in by_config), None)
        if configuration is None and len(by_config) == 1:
            configuration = next(iter(by_config))
    if configuration not in by_config:
        raise ModelError(f"{folder} has no trained configuration {configuration!r}.",
                         "Choose one of: " + ", ".join(sorted(by_config)) + ".")
    if len(by_config[configuration]) > 1:
        names = ", ".join(p.name for p in by_config[configuration])
        raise ModelError(f"{folder} holds several trainings of {configuration!r} ({names}).",
                         "Point to one of those folders directly.")
    return by_config[configuration][0]


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ModelError(f"{path.name} is missing from the nnU-Net model folder {path.parent} ({what}).",
                         f"Copy {path.name} from the original nnU-Net results folder (it sits next to the fold_N "
                         "folders), or fetch the model again.")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}).", "Repair the file or fetch the model again.") from exc


def fold_checkpoints(folder: Path, folds: Optional[Sequence["int | str"]], checkpoint: str) -> dict[str, Path]:
    """Fold name -> checkpoint path of the requested folds (by name: ``"0"``, ``"3"``, ``"all"``).

    Default: every numbered ``fold_N`` holding ``checkpoint``, else ``fold_all`` (what
    ``nnUNetv2_train ... all`` writes), as nnU-Net's predictor chooses."""
    present = sorted((fold_name(p.name) for p in folder.glob("fold_*") if p.is_dir()),
                     key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    if folds is None:
        with_ckpt = [n for n in present if (folder / f"fold_{n}" / checkpoint).is_file()]
        names = [n for n in with_ckpt if n != "all"] or with_ckpt
        if not names:
            found = sorted(str(p.relative_to(folder)) for p in folder.glob("fold_*/*.pth"))
            raise ModelError(f"No fold in {folder} has {checkpoint}" +
                             (f" (found: {', '.join(found)})." if found else "."),
                             "Fetch the model's weights again, or choose an existing checkpoint file "
                             "(e.g. checkpoint=\"checkpoint_best.pth\") if that is what was published.")
    else:
        names = select_folds(present, folds, str(folder))
    paths = {n: folder / f"fold_{n}" / checkpoint for n in names}
    for p in paths.values():
        if not p.is_file():
            raise ModelError(f"Checkpoint {p} is missing.",
                             "Fetch the model again, or choose folds that exist: " + (", ".join(present) or "none found") + ".")
    return paths


def resolve_results(folder: "str | Path",
                    configuration: Optional[str] = None) -> tuple[Path, Optional[str], Optional[ModelCard]]:
    """The training folder a model folder's networks load from, the configuration asked for (the caller's, else
    the card's) and the folder's ``deepseg-card.json`` (None without one), which may set
    ``preprocessing.configuration`` and ``preprocessing.results_folder`` (the results' path inside the folder)."""
    folder = Path(folder)
    card = ModelCard.load(folder / CARD_FILE) if (folder / CARD_FILE).is_file() else None
    if card is not None:
        configuration = configuration or card.preprocessing.get("configuration")
        folder = folder / card.preprocessing.get("results_folder", ".")
    return select_training_folder(folder, configuration), configuration, card


def input_specs(dataset: dict) -> list[InputSpec]:
    """The model's input channels, in order, from a ``dataset.json`` dict."""
    names = dataset.get("channel_names") or dataset.get("modality")
    if not names:
        raise ModelError("dataset.json has no 'channel_names'.", "Use the dataset.json the model was trained with.")
    ordered = [str(names[k]) for k in sorted(names, key=int)]
    return [InputSpec(name=n, modality=_dicom_modality(n), pattern="*" if len(ordered) == 1 else f"*_{i:04d}*")
            for i, n in enumerate(ordered)]


def _dicom_modality(channel_name: str) -> str:
    """DICOM modality of an nnU-Net channel name (free text); "" when it cannot be told."""
    n = channel_name.lower().replace("-", "").replace("_", "")
    if n in ("ct", "cect", "ncct", "cta"):
        return "CT"
    if n in ("pet", "pt", "suv"):
        return "PT"
    if n.startswith(("t1", "t2", "flair", "adc", "dwi", "mr", "hbv", "pd")):
        return "MR"
    return ""


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return sha256_file(path)


Stamp = tuple[int, int, int]


def file_stamp(path: Path) -> Stamp:
    """(size, modification time, inode) of ``path``: a file rewritten or replaced gets another."""
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def identity_files(train_dir: Path, checkpoint_path: Path) -> tuple[Path, Path, Path]:
    """The files a fold's network is made from: its checkpoint, ``plans.json`` and ``dataset.json``."""
    return Path(checkpoint_path), train_dir / "plans.json", train_dir / "dataset.json"


def network_identity(train_dir: Path, checkpoint_path: Path, configuration: Optional[str],
                     stamps: Optional[Sequence[Optional[Stamp]]] = None) -> Optional[str]:
    """What a fold's network is, from its files: the bytes of its checkpoint, ``plans.json`` and ``dataset.json``
    (weights, architecture, channels, classes), the configuration asked for and the version of
    dynamic_network_architectures (whose classes the plans name). Each file is hashed once per process.
    ``stamps``: the files' ``file_stamp`` s when the network was loaded from them; None if any changed since
    (the bytes are no longer the loaded network's: its compiled files must not take their name)."""
    parts = []
    for n, path in enumerate(identity_files(train_dir, checkpoint_path)):
        stamp = file_stamp(path)
        digest = _file_sha256(str(path), *stamp)
        if file_stamp(path) != stamp or (stamps is not None and stamps[n] != stamp):
            return None
        parts.append(digest)
    try:
        dna = importlib.metadata.version("dynamic_network_architectures")
    except importlib.metadata.PackageNotFoundError:
        dna = ""
    text = "|".join(["nnunetv2", *parts, train_dir.name, configuration or "", dna])
    return hashlib.sha256(text.encode()).hexdigest()


def compiled_inputs(folder: Path, folds: Optional[Sequence["int | str"]] = None,
                    checkpoint: str = "checkpoint_final.pth") -> list[tuple[Callable[[], Optional[str]], tuple[int, ...]]]:
    """(identity, network input shape) of each selected fold's network, as ``load_nnunet_folder`` will load it,
    read from the files alone; 2D configurations (whose patches are reshaped on their way in) give none. The
    identity is a function (``network_identity``): hashing the checkpoint is left to whoever needs it."""
    train_dir, configuration, _ = resolve_results(folder)
    plans = read_json(train_dir / "plans.json", "preprocessing and network architecture")
    channels = len(input_specs(read_json(train_dir / "dataset.json", "input channels")))
    config = read_configuration(plans, configuration or train_dir.name.split("__")[-1])
    if config.is_2d:
        return []
    shape = (batch_size_for(config.patch_size), channels, *config.patch_size)
    return [(partial(network_identity, train_dir, path, configuration), shape)
            for path in fold_checkpoints(train_dir, folds, checkpoint).values()]
