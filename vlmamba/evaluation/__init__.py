# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Benchmark evaluation (`vlmamba evaluate`): the benchmark registry and runner (`runner`), the metrics as `evaluate`
modules (`metrics`), and box scoring and drawing (`boxes`)."""

from .runner import *  # noqa: F403
from .runner import __all__ as _runner_all


__all__ = list(_runner_all)
