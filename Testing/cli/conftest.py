"""Fixtures of the CLI tests: a small card model folder whose predictions do not matter (refusals,
outputs and imports are what these tests check)."""
from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import save_tiny_model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
