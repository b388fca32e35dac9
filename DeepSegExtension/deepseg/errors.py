"""Errors that name the problem and the fix, so users never see a bare traceback."""
from __future__ import annotations


class DeepSegError(Exception):
    """Base error: ``problem`` says what is wrong, ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip() if not fix else f"{problem}\n  Fix: {fix}")


class InputError(DeepSegError):
    """The image(s) given to a model cannot be used (2D, NaN, wrong channels, corrupt file...)."""


class ModelError(DeepSegError):
    """A model folder, card or checkpoint is missing, malformed or unsafe."""


class StoreError(DeepSegError):
    """A model download, checksum or cache operation failed."""


class DownloadUnavailable(StoreError):
    """The package index could not be reached or had no such file: nothing was fetched (unlike a checksum
    mismatch or a corrupt archive, which are errors in what was fetched)."""


class ExportError(DeepSegError):
    """A result cannot be written in the requested clinical format."""


class Cancelled(DeepSegError):
    """The user cancelled a long-running operation; nothing was written."""

    def __init__(self) -> None:
        super().__init__("Cancelled by the user.", "Nothing was written.")
