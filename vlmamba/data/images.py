# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The one image-reading path, `open_image`, lives with the image processor (it ships with the weights, so remote
code reads files the same way) and is re-exported here. The loaders do not open images (with `check_images=True`
they read headers only); the training collator, evaluation and prediction do, through this function."""

from ..models.image_processing_vlmamba import open_image


__all__ = [
    "open_image",
]
