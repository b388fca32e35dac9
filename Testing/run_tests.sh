#!/usr/bin/env bash
# Create (or reuse) a virtual environment with pinned torch, install DeepSeg with its test extras,
# and run the test suite.  Usage: bash Testing/run_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DEEPSEG_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# The genuine nnU-Net model the format tests need ships trained (Testing/fixtures/nnunet_tiny_results.tar.gz);
# unpack it once under Testing/_fixtures here, outside pytest's per-test timeout.
"$VENV/bin/python" -c "import sys; sys.path.insert(0, 'Testing'); from pathlib import Path; \
from fixtures.make_nnunet_model import ensure_nnunet_fixture; ensure_nnunet_fixture(Path('Testing/_fixtures'))"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
