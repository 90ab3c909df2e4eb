#!/usr/bin/env bash
# Regenerates requirements-lock.txt: installs the newest releases setup.py's ranges allow into a fresh venv and
# records every installed version. Run the whole suite on the new lock (bash scripts/test.sh) before committing it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
VLMAMBA_DEPS=newest VLMAMBA_VENV="$WORK/venv" bash -c "source '$ROOT/scripts/env.sh'"
{
    echo "# The exact set of versions the README's commands install and CI tests (Python 3.11, $(uname -m))."
    echo "# Regenerate with: bash scripts/lock.sh   (then: bash scripts/test.sh)"
    "$WORK/venv/bin/pip" freeze --exclude-editable --disable-pip-version-check
} > "$ROOT/requirements-lock.txt"
echo "Wrote $ROOT/requirements-lock.txt"
