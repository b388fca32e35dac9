"""``SegmentOptions``: the run options of a segmentation, declared once.

The Python API (``deepseg.segment``), the CLI (``deepseg segment`` / ``deepseg explain``), cohort
runs and the Slicer tasks all take this one dataclass.  Each field carries its command-line flag and
help, so the same declaration registers the argparse options (``add_arguments``), reads them back
(``from_args``) and writes the command line of a background run (``to_argv``).

Adding an option = one field here (``_option(default, help=..., [type=, choices=, flag=])``) + the code
that uses it (+ the panel that shows it); the CLI flag, its parsing, the Slicer command line and the
provenance record follow from the field.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .errors import InputError
from .inference.backend_names import BACKENDS

CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "layer-sum")  # gradient maps (explain/cam.py)
PERTURBATION_METHODS = ("occlusion",)  # re-run the model on perturbed inputs (explain/occlusion.py)
EXPLAIN_METHODS = CAM_METHODS + PERTURBATION_METHODS  # ``deepseg explain --method``
REMOVALS = ("impute", "constant")  # how perturbations remove voxels (explain/removal.py)
FAST_OVERLAP = 0.25  # the panels' "fast" mode: about 3x fewer windows than nnU-Net's 50 %


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_folds(text: str) -> list["int | str"]:
    """``"0,3"`` -> ``[0, 3]``; ``"all"`` -> ``["all"]`` (fold names as in ``fold_<name>``)."""
    return [int(f) if f.isdigit() else f for f in _split(text)]


def _join(values) -> str:
    return ",".join(str(v) for v in values)


def _option(default: Any = None, *, help: str, flag: Optional[str] = None, type: Optional[Callable] = None,
            format: Callable[[Any], str] = str, metavar: Optional[str] = None, choices: Optional[tuple] = None) -> Any:
    """A dataclass field plus its command line: ``bool`` defaults become on/off flags; others take a value
    parsed by ``type`` (checked against ``choices``) and written back by ``format``."""
    meta = {"help": help, "flag": flag, "type": type, "format": format, "metavar": metavar, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SegmentOptions:
    """How to run a model on one case (the outputs to write are not options: they belong to the call)."""

    device: str = _option("auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    backend: str = _option("auto", choices=BACKENDS,
                           help="inference backend: auto (OpenVINO on the CPU when installed, else PyTorch), torch, "
                                "openvino, onnxruntime; compiled networks are cached in the model store")
    tta: bool = _option(False, help="mirroring test-time augmentation (slower, smoother)")
    folds: Optional[tuple] = _option(None, type=parse_folds, format=_join, metavar="NAMES",
                                     help="folds to ensemble by name, e.g. 0,3 or all (default: every fold found)")
    overlap: Optional[float] = _option(None, type=float, format=lambda v: f"{v:g}",
                                       help="sliding-window overlap 0-0.9 (default: the model's)")
    keep_largest: bool = _option(False, help="keep only the largest component per structure")
    min_component_ml: float = _option(0.0, type=float, format=lambda v: f"{v:g}", metavar="ML",
                                      help="remove components smaller than this (mL)")
    fill_holes: bool = _option(False, help="fill enclosed holes in each structure")
    structures: Optional[tuple] = _option(None, type=_split, format=_join, metavar="NAMES",
                                          help="comma-separated structure names or label values to keep")
    use_tg263: bool = _option(False, flag="--tg263", help="name segments with AAPM TG-263 names where known")
    uncertainty: Union[bool, str, Path] = _option(
        False, metavar="PATH", help="also compute a voxel uncertainty map (fold disagreement with several folds, "
        "else mirroring variance with --tta, else entropy) and rank structures by it; PATH: write the map there")
    overwrite: bool = _option(False, help="replace existing output files")
    assume_spacing: Optional[tuple] = _option(
        None, type=str, format=_join, metavar="MM",
        help="voxel size (X or X,Y,Z mm) for an input that stores no geometry (NIfTI qform/sform code 0); such "
             "inputs are refused without it; used for no other input, and recorded in the provenance")

    def __post_init__(self) -> None:
        # lists are stored as tuples so options stay hashable and can't be changed behind a caller's back
        for name in ("folds", "structures"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple([value] if isinstance(value, (str, int)) else value) or None)
        if self.assume_spacing is not None:
            from .io.integrity import parse_spacing

            object.__setattr__(self, "assume_spacing", parse_spacing(self.assume_spacing))
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"Unknown {f.name} {getattr(self, f.name)!r}.", f"Choose one of: {', '.join(choices)}.")
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise InputError(f"The sliding-window overlap {self.overlap:g} is outside [0, 1).",
                             "Give an overlap such as 0.5 (or 0.25 for speed).")
        if self.min_component_ml < 0:
            raise InputError(f"The minimum component size {self.min_component_ml:g} mL is negative.",
                             "Give 0 (keep all) or a positive size in mL.")

    # ---- Python API ---------------------------------------------------------------------------
    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, options: "SegmentOptions | None" = None, **changes: Any) -> "SegmentOptions":
        """``options`` (default: all defaults) with ``changes`` applied; unknown names raise ``TypeError``."""
        unknown = sorted(set(changes) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown segment option(s) {', '.join(unknown)}; valid: {', '.join(cls.names())}")
        return dataclasses.replace(options or cls(), **changes)

    def replace(self, **changes: Any) -> "SegmentOptions":
        return self.build(self, **changes)

    def settings(self) -> dict:
        """JSON-ready values (for provenance)."""
        return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(self).items()}

    # ---- command line -------------------------------------------------------------------------
    @classmethod
    def _fields(cls, names: Optional[Iterable[str]]):
        chosen = cls.names() if names is None else tuple(names)
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        return [by_name[n] for n in chosen]

    @staticmethod
    def _flag(f) -> str:
        return f.metadata["flag"] or "--" + f.name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: Optional[Iterable[str]] = None) -> None:
        """Register the options ``names`` (default: all) on ``parser``."""
        for f in cls._fields(names):
            m, kw = f.metadata, {"dest": f.name, "help": f.metadata["help"]}
            if f.name == "uncertainty":  # bare flag: compute and report; with PATH: also write the map
                kw.update(nargs="?", const=True, default=False, metavar=m["metavar"])
            elif isinstance(f.default, bool):
                kw.update(action="store_true", default=f.default)
            else:
                kw.update(type=m["type"], default=f.default)
                kw.update({k: m[k] for k in ("metavar", "choices") if m[k]})
            parser.add_argument(cls._flag(f), **kw)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SegmentOptions":
        """The options found in parsed ``args`` (the others keep their defaults)."""
        return cls(**{n: getattr(args, n) for n in cls.names() if hasattr(args, n)})

    def to_argv(self, names: Optional[Iterable[str]] = None) -> list[str]:
        """Command-line arguments that reproduce these options (only those differing from the default)."""
        argv: list[str] = []
        for f in self._fields(names):
            value = getattr(self, f.name)
            if value == f.default or value is None:
                continue
            if value is True:
                argv.append(self._flag(f))
            else:
                argv += [self._flag(f), f.metadata["format"](value)]
        return argv


# the run options ``deepseg explain`` takes (the rest shape a written segmentation, not an explanation)
EXPLAIN_OPTIONS = ("device", "tta", "folds", "overlap", "uncertainty", "overwrite")
