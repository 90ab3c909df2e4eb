# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
# Runs the Mamba scan benchmark from the repository root: bash benchmarks/run.sh [--quick] [--systems ...] [...]
# Sets up .venv through scripts/env.sh, adds mambapy (for the "mambapy" row) if missing, then runs the script.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
python -c "import mambapy" 2>/dev/null || pip install --quiet --disable-pip-version-check "mambapy==1.2.0"
python benchmarks/bench_mamba_scan.py "$@"
