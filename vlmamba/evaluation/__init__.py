# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Benchmark evaluation (`vlmamba evaluate`): the benchmark registry as a table (`benchmarks`), the runner with its
resume and result tables (`runner`), the metrics as `evaluate` modules (`metrics`), and box scoring and drawing
(`boxes`)."""

from .benchmarks import *  # noqa: F403
from .benchmarks import __all__ as _benchmarks_all
from .runner import *  # noqa: F403
from .runner import __all__ as _runner_all


__all__ = [*_benchmarks_all, *_runner_all]
