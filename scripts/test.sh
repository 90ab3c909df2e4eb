#!/usr/bin/env bash
# Sets up the venv (the locked versions; VLMAMBA_DEPS=newest for the newest releases the ranges allow), lints, and
# runs the whole test suite (slow tests included). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -c "import torch, transformers; print(f'transformers {transformers.__version__}, torch {torch.__version__}')"
ruff check vlmamba tests training benchmarks scripts
python -m pytest -n 2 --durations=15 "$@" tests
