#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs the package with its test tools.
# Sourced by the other scripts; afterwards `python` is the venv's interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLMAMBA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.vlmamba-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ]; then
    # torch 2.14.1 and torchvision 0.29.1 load together; transformers imports torchvision whenever it is installed.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[dev]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Nothing is downloaded at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$ROOT"
