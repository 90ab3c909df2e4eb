# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Boxes as text: the reference's `[x1,y1,x2,y2]` format and location tokens.

Boxes are XYXY. In pixels they refer to the original image; written in a prompt or a target they are normalized to
[0, 1] by the original width and height (images are squashed to a square, so this is also their position in the
model's input). Image sizes are `(height, width)`, as transformers' `post_process_*` methods take them.
"""

import math
from dataclasses import dataclass


# The reference writes normalized coordinates with two decimals.
BOX_DECIMALS = 2
BOX_FORMATS = ("text", "location")
# Location tokens are `<loc_0>` ... `<loc_{bins - 1}>`, one per coordinate (x1, y1, x2, y2).
LOCATION_TOKEN_PREFIX = "<loc_"
DEFAULT_LOCATION_BINS = 1000


@dataclass(frozen=True)
class BoxFormat:
    """How boxes are written in text.

    Args:
        kind: `"text"`, the reference format `[0.12,0.05,0.87,1.00]` (`decimals` decimals), or `"location"`, one
            location token per coordinate (`<loc_120><loc_50><loc_870><loc_999>`), the value's bin among `num_bins`
            equal bins of [0, 1].
        num_bins: number of location tokens (location format only).
        decimals: decimals of the text format.
    """

    kind: str = "text"
    num_bins: int = DEFAULT_LOCATION_BINS
    decimals: int = BOX_DECIMALS

    def __post_init__(self):
        if self.kind not in BOX_FORMATS:
            raise ValueError(f"Box format kind must be one of {BOX_FORMATS}, got {self.kind!r}.")
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"num_bins must be an integer >= 2, got {self.num_bins!r}.")
        if not isinstance(self.decimals, int) or not 1 <= self.decimals <= 6:
            raise ValueError(f"decimals must be an integer in [1, 6], got {self.decimals!r}.")


def location_tokens(num_bins: int = DEFAULT_LOCATION_BINS) -> list[str]:
    """The location tokens of a `num_bins` format, in bin order."""
    return [f"{LOCATION_TOKEN_PREFIX}{index}>" for index in range(num_bins)]


def _as_box(box, name: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(value) for value in box)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got {box!r}.") from None
    if len(values) != 4:
        raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got {len(values)}: {box!r}.")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"{name} has a non-finite coordinate: {box!r}.")
    if values[2] < values[0] or values[3] < values[1]:
        raise ValueError(f"{name} {box!r} has a negative width or height; boxes are (x1, y1, x2, y2) with x1 <= x2.")
    return values


def _as_size(image_size, name: str) -> tuple[float, float]:
    try:
        height, width = (float(value) for value in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width), got {image_size!r}.") from None
    if not (height > 0 and width > 0 and math.isfinite(height) and math.isfinite(width)):
        raise ValueError(f"{name} must be a positive (height, width), got {image_size!r}.")
    return height, width


def normalize_box(box, image_size, clip: bool = False, name: str = "box") -> tuple[float, float, float, float]:
    """Pixel XYXY box of an image of `image_size` `(height, width)` -> XYXY in [0, 1].

    A box reaching outside the image is an error unless `clip`, which clips it to the image first.
    """
    x1, y1, x2, y2 = _as_box(box, name)
    height, width = _as_size(image_size, f"image size of {name}")
    if clip:
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ValueError(
            f"{name} {box!r} lies outside the {width:g}x{height:g} (width x height) image; pass clip=True to clip it."
        )
    return x1 / width, y1 / height, x2 / width, y2 / height


def denormalize_box(box, image_size) -> tuple[float, float, float, float]:
    """XYXY in [0, 1] -> pixel XYXY of an image of `image_size` `(height, width)`."""
    height, width = _as_size(image_size, "image size")
    x1, y1, x2, y2 = box
    return x1 * width, y1 * height, x2 * width, y2 * height


def format_box(box, box_format: BoxFormat | None = None) -> str:
    """Writes a normalized XYXY box (values in [0, 1]) in `box_format` (the reference text format by default)."""
    box_format = box_format or BoxFormat()
    values = _as_box(box, "box")
    if not all(0.0 <= value <= 1.0 for value in values):
        raise ValueError(f"box {box!r} is not normalized to [0, 1]; use normalize_box for pixel boxes.")
    if box_format.kind == "location":
        bins = box_format.num_bins
        return "".join(f"{LOCATION_TOKEN_PREFIX}{min(int(value * bins), bins - 1)}>" for value in values)
    return "[" + ",".join(f"{value:.{box_format.decimals}f}" for value in values) + "]"


__all__ = [
    "BOX_DECIMALS",
    "BOX_FORMATS",
    "DEFAULT_LOCATION_BINS",
    "LOCATION_TOKEN_PREFIX",
    "BoxFormat",
    "location_tokens",
    "normalize_box",
    "denormalize_box",
    "format_box",
]
