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
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
