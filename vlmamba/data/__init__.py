# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Training and evaluation data as structured examples: the source loaders, mixtures, the one image-reading path,
the synthetic shapes scenes (`vlmamba.data.shapes`) and the training collator (`vlmamba.data.collator`)."""

from .sources import *  # noqa: F403
from .sources import __all__ as _sources_all


__all__ = list(_sources_all)
