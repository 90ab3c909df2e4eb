# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The one image-reading path: `open_image` opens a row's image file and converts it to RGB, with errors naming the path
and the row. The loaders do not open images (with `check_images=True` they read headers only); the training collator
and the evaluation runner do, through this function."""

import os

from PIL import Image, UnidentifiedImageError


def open_image(path, row=None) -> Image.Image:
    """Opens an image file and converts it to RGB (the image data is read here, so a truncated file fails here).

    Args:
        path: the image file (a row's `image`).
        row: the row's index or id, named in errors.

    Returns:
        The `PIL.Image.Image` in RGB mode.

    Raises:
        ValueError: the path is not a path, the file is missing, or it is not a readable image.
    """
    where = "" if row is None else f" (row {row!r})"
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Image path must be a string or a path, got {path!r}{where}.")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"Image file not found: {os.fspath(path)!r}{where}.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read image {os.fspath(path)!r}{where}: {error}") from error


__all__ = [
    "open_image",
]
