# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Train Mamba-VL or Pythia-VL: one stage of the paper (the flags and the code: `vlmamba.training`).

    python training/train.py --config training/recipes/stage2.json --model_name_or_path DIR --output_dir out
    accelerate launch --config_file training/accelerate/ddp.yaml training/train.py --config ... [overrides]
"""

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from vlmamba.training import *  # noqa: E402, F401, F403  (the public names, for code that imports this script)
from vlmamba.training import main  # noqa: E402


if __name__ == "__main__":
    raise SystemExit(main())
