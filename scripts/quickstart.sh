#!/usr/bin/env bash
# Sets up .venv and runs the offline quickstart: synthetic shapes data, a small Mamba-VL and a small Pythia-VL of
# equal size trained from scratch, saved as Hub-ready folders, reloaded through the Auto classes with
# trust_remote_code=True in a fresh process, evaluated on held-out scenes and compared in a table.
# Extra arguments go to `vlmamba quickstart` (e.g. --steps 200 for a shorter run).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
vlmamba quickstart --output-dir outputs/quickstart "$@"
