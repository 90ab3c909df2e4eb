#!/usr/bin/env bash
# Sets up .venv and runs the offline demo: tiny Mamba-VL and Pythia-VL built from configs, saved as Hub-ready
# folders, reloaded in a fresh process through the Auto classes with trust_remote_code=True, and run.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
vlmamba demo --output-dir "${1:-outputs/demo}"
