#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs the package with its test tools, then makes
# `python` the venv's interpreter. Sourced by the other scripts.
#
#   VLMAMBA_DEPS=lock    (default) exactly the versions in requirements-lock.txt, the set CI tests
#   VLMAMBA_DEPS=newest  the newest releases setup.py's ranges allow (what `pip install vlmamba` gets today), torch
#                        and its CUDA libraries held at the lock
#   VLMAMBA_VENV=DIR     the venv's folder (default .venv; .venv-newest for VLMAMBA_DEPS=newest)
#
# The venv is brought in line whenever the lock, setup.py or the mode changed since it was last installed, so an old
# venv never stands in for the tested set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${VLMAMBA_DEPS:-lock}"
case "$DEPS" in
    lock) VENV="${VLMAMBA_VENV:-$ROOT/.venv}" ;;
    newest) VENV="${VLMAMBA_VENV:-$ROOT/.venv-newest}" ;;
    *) echo "VLMAMBA_DEPS must be 'lock' or 'newest', got '$DEPS'" >&2; exit 2 ;;
esac
LOCK="$ROOT/requirements-lock.txt"
PYTHON="${PYTHON:-python3.11}"
# This machine's torch build, which torchvision 0.29.1 loads beside (transformers imports torchvision whenever it
# is installed). The lock holds the same pins.
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" --disable-pip-version-check --quiet)
STAMP="$VENV/.vlmamba-installed"
WANTED="$DEPS $(cat "$ROOT/setup.py" "$LOCK" | sha256sum | cut -d' ' -f1)"
if [ "$DEPS" = newest ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANTED" ]; then
    rm -f "$STAMP"
    if [ "$DEPS" = lock ]; then
        "${PIP[@]}" install --constraint "$LOCK" -e "$ROOT[dev]"
        # Every locked distribution at its locked version, nothing in conflict.
        "$VENV/bin/python" "$ROOT/scripts/check_lock.py" "$LOCK"
    else
        # torch's own runtime (torch, torchvision, triton and the CUDA libraries, several GB that a CPU never uses)
        # stays at the locked versions: this mode is for the releases vlmamba is written against, and holding
        # torch's stack keeps the second venv from downloading a new CUDA stack.
        TORCH_STACK="$VENV/.torch-stack.txt"
        grep -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' "$LOCK" > "$TORCH_STACK"
        "${PIP[@]}" install --upgrade --upgrade-strategy eager --constraint "$TORCH_STACK" "${TORCH_PINS[@]}" \
            -e "$ROOT[dev]"
        "$VENV/bin/python" "$ROOT/scripts/check_lock.py" --report "$LOCK"
    fi
    "$VENV/bin/pip" check --disable-pip-version-check >/dev/null
    echo "$WANTED" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Nothing is downloaded at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$ROOT"
