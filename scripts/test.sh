#!/usr/bin/env bash
# Sets up .venv, lints, and runs the whole test suite (slow tests included). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check vlmamba tests training benchmarks
python -m pytest -n 2 --durations=15 "$@" tests
