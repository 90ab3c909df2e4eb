# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The metrics of vlmamba's evaluation suite, as `evaluate` modules.

Each metric is an `evaluate` module in its own folder, `vlmamba/evaluation/metrics/<name>/<name>.py`, so it also
loads with `evaluate.load("/path/to/vlmamba/evaluation/metrics/<name>")`; `load(name)` finds the folder inside the
installed package.
Scores are percentages (0-100), as published tables report them; MME's are sums of them, as MME reports.

| name | predictions | references | output |
|---|---|---|---|
| `cider` | captions | list of captions | `cider` (CIDEr-D x 100, pycocoevalcap) |
| `vqa_accuracy` | answers | list of human answers | `vqa_accuracy` |
| `exact_match` | answers | answers | `exact_match` |
| `grounding_accuracy` | XYXY boxes or `None` | XYXY boxes | `grounding_accuracy` (IoU > 0.5) |
| `pope` | yes/no answers | `"yes"`/`"no"` | `accuracy`, `precision`, `recall`, `f1`, `yes_ratio` |
| `multiple_choice` | answers | option letters | `accuracy` |
| `image_text_match` | true/false answers | bools | `accuracy`, `f1`, `unparsed` (a count) |
| `mme` | yes/no answers | `{answer, category, group}` | `perception`, `cognition`, `subtasks`, `unparsed` |
| `circular_choice` | answers | `{answer (a letter), group, category}` | `circular_accuracy`, `accuracy`, `categories` |

An `evaluate` module is copied alone into evaluate's module cache before it is imported, so the files import
nothing from each other: `normalize_vqa_answer` lives in `vqa_accuracy/vqa_accuracy.py` (which imports nothing from
vlmamba) and is re-exported here. The grounding metric imports `vlmamba.evaluation.boxes`, `mme` the subtask lists
of `vlmamba.data.vl_benchmarks`, `circular_choice` the letter reading of `multiple_choice`, and `exact_match` imports
`normalize_vqa_answer` from here when asked for it, since vlmamba is installed wherever its metrics run.
"""

from pathlib import Path

import evaluate

from .vqa_accuracy.vqa_accuracy import normalize_vqa_answer


METRICS = (
    "cider",
    "vqa_accuracy",
    "exact_match",
    "grounding_accuracy",
    "pope",
    "multiple_choice",
    "image_text_match",
    "mme",
    "circular_choice",
)
METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> Path:
    """The folder of metric `name` (one of `METRICS`), the path `evaluate.load` takes."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; vlmamba's metrics are {', '.join(METRICS)}.")
    return METRICS_DIR / name


def load(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Loads vlmamba metric `name` (one of `METRICS`) with `evaluate.load`, from its folder in this package (no
    network access).

    Unlike `evaluate.load`, the module keeps what it is given in memory unless told otherwise: evaluation sets are
    small, and no cache file or lock is left behind when a computation raises. Pass `keep_in_memory=False` (needed
    for `num_process > 1`) for evaluate's file-backed storage.

    Args:
        name: the metric's name, e.g. `"vqa_accuracy"`.
        **kwargs: passed to `evaluate.load` (e.g. `experiment_id`, `num_process`, `process_id`).

    Returns:
        The `evaluate.EvaluationModule`; call `.compute(predictions=..., references=...)`.
    """
    path = metric_path(name)
    kwargs.setdefault("keep_in_memory", kwargs.get("num_process", 1) == 1)
    return evaluate.load(str(path), **kwargs)


__all__ = ["METRICS", "METRICS_DIR", "metric_path", "load", "normalize_vqa_answer"]
