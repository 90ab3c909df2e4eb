# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Runs a script in a new Python process in which `import vlmamba` fails, so that a saved folder is used exactly as a
user without vlmamba would use it: through its remote code."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path


# Put in front of every script: the vlmamba package cannot be imported, only the code saved next to the weights.
_BLOCK_VLMAMBA = 'import sys\nsys.modules["vlmamba"] = None\n'


def run_without_vlmamba(script: str, arguments: list, what: str) -> str:
    """Runs `script` with `arguments` (its `sys.argv[1:]`) offline, without vlmamba; returns its standard output.

    The child runs in the system's temporary folder, away from any checkout of vlmamba, so `Path` arguments are made
    absolute first (a path relative to the caller's working directory would name nothing there). Raises a
    `RuntimeError` naming `what`, with the end of the child's error output, when the child fails.
    """
    arguments = [str(Path(value).resolve()) if isinstance(value, Path) else str(value) for value in arguments]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_VLMAMBA + script, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed in a fresh process without vlmamba:\n{result.stderr[-4000:]}")
    return result.stdout


__all__ = ["run_without_vlmamba"]
