# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Boxes as text: the reference's `[x1,y1,x2,y2]` format and location tokens.

Boxes are XYXY. In pixels they refer to the original image; written in a prompt or a target they are normalized to
[0, 1] by the original width and height (images are squashed to a square, so this is also their position in the
model's input). Image sizes are `(height, width)`, as transformers' `post_process_*` methods take them.

Two ways of computing the normalized value exist (`BoxFormat.reference_size`): the direct `x / W`, and the
reference's `(x * (S / W)) / S` (the box scaled to the S x S model input, then divided by S). They are the same
number up to float rounding, which is enough to move about 1% of two-decimal coordinates of integer pixel boxes by
0.01 (a value on a rounding tie, such as 48 / 640 = 0.075, lands on either side).
"""

import math
import re
from dataclasses import dataclass


# The reference writes normalized coordinates with two decimals.
BOX_DECIMALS = 2
BOX_FORMATS = ("text", "location")
# Location tokens are `<loc_0>` ... `<loc_{bins - 1}>`, one per coordinate (x1, y1, x2, y2).
LOCATION_TOKEN_PREFIX = "<loc_"
DEFAULT_LOCATION_BINS = 1000
# The reference's image size: its boxes were scaled to the 336 x 336 model input before being divided by 336.
REFERENCE_IMAGE_SIZE = 336


@dataclass(frozen=True)
class BoxFormat:
    """How boxes are written in text.

    Args:
        kind: `"text"`, the reference format `[0.12,0.05,0.87,1.00]` (`decimals` decimals), or `"location"`, one
            location token per coordinate (`<loc_120><loc_50><loc_870><loc_999>`), the value's bin among `num_bins`
            equal bins of [0, 1].
        num_bins: number of location tokens (location format only).
        decimals: decimals of the text format.
        reference_size: `None` normalizes a pixel box directly (`x / W`, `y / H`); an image size `S` computes it the
            reference's way, `(x * (S / W)) / S` (see the module docstring; `REFERENCE_IMAGE_SIZE` for the paper's
            models), and writes a box that reaches past the right or bottom border of the image as it is, with values
            above 1, as the reference wrote its Visual7W pointing and Visual Genome boxes.
    """

    kind: str = "text"
    num_bins: int = DEFAULT_LOCATION_BINS
    decimals: int = BOX_DECIMALS
    reference_size: int | None = None

    def __post_init__(self):
        if self.kind not in BOX_FORMATS:
            raise ValueError(f"Box format kind must be one of {BOX_FORMATS}, got {self.kind!r}.")
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"num_bins must be an integer >= 2, got {self.num_bins!r}.")
        if not isinstance(self.decimals, int) or not 1 <= self.decimals <= 6:
            raise ValueError(f"decimals must be an integer in [1, 6], got {self.decimals!r}.")
        size = self.reference_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"reference_size must be a positive image size in pixels or None, got {size!r}.")


def location_tokens(num_bins: int = DEFAULT_LOCATION_BINS) -> list[str]:
    """The location tokens of a `num_bins` format, in bin order."""
    return [f"{LOCATION_TOKEN_PREFIX}{index}>" for index in range(num_bins)]


def as_box(box, name: str) -> tuple[float, float, float, float]:
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


def normalize_box(
    box, image_size, clip: bool = False, name: str = "box", reference_size: int | None = None
) -> tuple[float, float, float, float]:
    """Pixel XYXY box of an image of `image_size` `(height, width)` -> XYXY in [0, 1].

    A box reaching outside the image is an error unless `clip`, which clips it to the image first. With
    `reference_size` `S` the values are computed as the reference did, `(x * (S / W)) / S`, and a box reaching past
    the right or bottom border is kept as it is (values above 1); negative coordinates are still an error.
    """
    x1, y1, x2, y2 = as_box(box, name)
    height, width = _as_size(image_size, f"image size of {name}")
    if clip:
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    elif x1 < 0 or y1 < 0 or (reference_size is None and (x2 > width or y2 > height)):
        raise ValueError(
            f"{name} {box!r} lies outside the {width:g}x{height:g} (width x height) image; pass clip=True to clip it."
        )
    if reference_size is not None:
        # The reference scales the box by the resize factors, then divides by the resized size.
        x_scale, y_scale = reference_size / width, reference_size / height
        return tuple(value * scale / reference_size for value, scale in zip((x1, y1, x2, y2), (x_scale, y_scale) * 2))
    return x1 / width, y1 / height, x2 / width, y2 / height


def denormalize_box(box, image_size) -> tuple[float, float, float, float]:
    """XYXY in [0, 1] -> pixel XYXY of an image of `image_size` `(height, width)`."""
    height, width = _as_size(image_size, "image size")
    x1, y1, x2, y2 = box
    return x1 * width, y1 * height, x2 * width, y2 * height


def format_box(box, box_format: BoxFormat | None = None) -> str:
    """Writes a normalized XYXY box (values in [0, 1]) in `box_format` (the reference text format by default). A
    format with `reference_size` also writes values above 1 (a box past the right or bottom border, see `BoxFormat`);
    location tokens put them in the last bin."""
    box_format = box_format or BoxFormat()
    values = as_box(box, "box")
    upper = math.inf if box_format.reference_size is not None else 1.0
    if not all(0.0 <= value <= upper for value in values):
        raise ValueError(f"box {box!r} is not normalized to [0, 1]; use normalize_box for pixel boxes.")
    if box_format.kind == "location":
        bins = box_format.num_bins
        return "".join(f"{LOCATION_TOKEN_PREFIX}{min(int(value * bins), bins - 1)}>" for value in values)
    return "[" + ",".join(f"{value:.{box_format.decimals}f}" for value in values) + "]"


# The reference's grounded captions write each grounded chunk as `||{chunk} [box][box]||`.
CHUNK_MARKER = "||"
# Stripped from both ends of a phrase: a box's own punctuation (`[..].`) and list labels (`A: [..]`).
_PHRASE_STRIP = " \t\n\r\f\v.,;:!?[]"
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# `[` and comma-separated numbers, the `]` optional. A match that is not a box (not 4 numbers, unfinished) is still a
# box fragment: it bounds phrases and is removed from captions.
_TEXT_BOX = re.compile(rf"\[\s*({_NUMBER}(?:\s*,\s*{_NUMBER})*)(\s*(?:,\s*)?\])?")
_MORE_NUMBERS = re.compile(rf"\s*(?:,|{_NUMBER})")
_LOCATION_TOKEN = re.compile(re.escape(LOCATION_TOKEN_PREFIX) + r"([0-9]*)(>?)")
_CHUNK_MARKER = re.compile(re.escape(CHUNK_MARKER))


@dataclass(frozen=True)
class GroundedBox:
    """A box read out of generated text.

    Args:
        phrase: the phrase the box belongs to, `""` when none (see `parse_grounding`).
        box_normalized: XYXY in [0, 1].
        box: pixel XYXY of the original image, or `None` when no image size was given.
        span: `(start, end)` character offsets of the box's text (`[..]` or its 4 location tokens) in the parsed text.
    """

    phrase: str
    box_normalized: tuple[float, float, float, float]
    box: tuple[float, float, float, float] | None
    span: tuple[int, int]

    def to_dict(self) -> dict:
        """JSON-ready dict: `phrase`, `box_normalized`, `box` (lists, `box` `None` without image size), `span`."""
        return {
            "phrase": self.phrase,
            "box_normalized": list(self.box_normalized),
            "box": None if self.box is None else list(self.box),
            "span": list(self.span),
        }


@dataclass(frozen=True)
class _Fragment:
    """Text that looks like a box: `box` is the normalized box, or `None` when the fragment is dropped."""

    start: int
    end: int
    box: tuple[float, float, float, float] | None


def _check_format(box_format) -> BoxFormat:
    if box_format is None:
        return BoxFormat()
    if not isinstance(box_format, BoxFormat):
        raise ValueError(f"box_format must be a BoxFormat or None, got {type(box_format).__name__}: {box_format!r}.")
    return box_format


def _clipped_box(values) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (min(max(value, 0.0), 1.0) for value in values)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _unclosed_box_is_complete(text: str, end: int, last_number: str, decimals: int) -> bool:
    if end == len(text):
        # A generation cut off here may have stopped mid-number (`0.4` of `0.45`): trust only a full-precision number.
        return len(last_number.partition(".")[2]) >= decimals
    # A comma or another number next means more than 4 numbers were meant.
    return _MORE_NUMBERS.match(text, end) is None


def _text_fragments(text: str, box_format: BoxFormat) -> list[_Fragment]:
    fragments = []
    for match in _TEXT_BOX.finditer(text):
        numbers = [number.strip() for number in match.group(1).split(",")]
        closed = match.group(2) is not None
        box = None
        if len(numbers) == 4 and (
            closed or _unclosed_box_is_complete(text, match.end(), numbers[-1], box_format.decimals)
        ):
            values = [float(number) for number in numbers]
            # Normalized coordinates are at most 1: a larger value is a pixel coordinate in the wrong format, and
            # clipping it would make a box that was never meant ([64,48,320,240] -> [1,1,1,1]).
            box = _clipped_box(values) if max(values) <= 1.0 else None
        fragments.append(_Fragment(match.start(), match.end(), box))
    return fragments


def _bin_index(digits: str, num_bins: int) -> int:
    digits = digits.lstrip("0") or "0"
    # Compare lengths first: int() refuses very long digit strings.
    if len(digits) > len(str(num_bins)):
        return num_bins - 1
    return min(int(digits), num_bins - 1)


def _location_fragments(text: str, box_format: BoxFormat) -> list[_Fragment]:
    bins = box_format.num_bins
    fragments, runs = [], [[]]
    for match in _LOCATION_TOKEN.finditer(text):
        digits, closed = match.groups()
        run = runs[-1]
        if run and text[run[-1][1] : match.start()].strip():
            runs.append([])
        if digits and closed:
            runs[-1].append((match.start(), match.end(), _bin_index(digits, bins)))
        else:
            fragments.append(_Fragment(match.start(), match.end(), None))
            runs.append([])
    for run in runs:
        complete = len(run) - len(run) % 4
        for first in range(0, complete, 4):
            group = run[first : first + 4]
            box = _clipped_box((index + 0.5) / bins for _, _, index in group)
            fragments.append(_Fragment(group[0][0], group[-1][1], box))
        if complete < len(run):
            fragments.append(_Fragment(run[complete][0], run[-1][1], None))
    return sorted(fragments, key=lambda fragment: fragment.start)


def _regions(text: str) -> list[tuple[int, int, bool]]:
    """`(start, end, in_chunk)` of the text between `||` markers; an unclosed chunk runs to the end of the text."""
    regions, position, in_chunk = [], 0, False
    for match in _CHUNK_MARKER.finditer(text):
        regions.append((position, match.start(), in_chunk))
        position, in_chunk = match.end(), not in_chunk
    regions.append((position, len(text), in_chunk))
    return regions


def _without(text: str, start: int, end: int, fragments: list[_Fragment]) -> str:
    """`text[start:end]` with `fragments` (all inside it) replaced by spaces."""
    pieces, position = [], start
    for fragment in fragments:
        pieces.append(text[position : fragment.start])
        position = fragment.end
    pieces.append(text[position:end])
    return " ".join(pieces)


def _phrase(text: str) -> str:
    return " ".join(text.split()).strip(_PHRASE_STRIP)


def _fragments(text: str, box_format: BoxFormat) -> list[_Fragment]:
    """Every box-like fragment of `text` in `box_format` (`box` is `None` for a dropped one)."""
    if box_format.kind == "location":
        return _location_fragments(text, box_format)
    return _text_fragments(text, box_format)


def _checked_fragments(text, box_format: BoxFormat | None) -> list[_Fragment]:
    """`_fragments` of the public functions' arguments, checked."""
    box_format = _check_format(box_format)
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}.")
    return _fragments(text, box_format)


def _grounded_fragments(text: str, box_format: BoxFormat) -> list[tuple[_Fragment, str]]:
    """The boxes of `text` with their phrases, in text order."""
    fragments = _fragments(text, box_format)
    found, next_fragment = [], 0
    for start, end, in_chunk in _regions(text):
        inside = []
        while next_fragment < len(fragments) and fragments[next_fragment].start < end:
            inside.append(fragments[next_fragment])
            next_fragment += 1
        if in_chunk:
            phrase = _phrase(_without(text, start, end, inside))
            found.extend((fragment, phrase) for fragment in inside if fragment.box is not None)
            continue
        phrase, position = "", start
        for fragment in inside:
            # Boxes with nothing but spaces and punctuation between them share a phrase (`two dogs [..][..]`).
            phrase = _phrase(text[position : fragment.start]) or phrase
            position = fragment.end
            if fragment.box is not None:
                found.append((fragment, phrase))
    return found


def parse_grounding(text: str, image_size=None, box_format: BoxFormat | None = None) -> list[GroundedBox]:
    """Reads the boxes, and the phrase each belongs to, out of generated text.

    Model output is never trusted: any string parses, and only bad arguments (`text` not a string, `image_size`,
    `box_format`) raise.

    Boxes in the text format (the default, `[0.12,0.05,0.87,1.00]`): 4 comma-separated numbers in square brackets,
    with any spaces around the numbers and commas; numbers may be written `1`, `.5`, `1.` or with a sign. A box whose
    closing `]` is missing counts when its fourth number is clearly finished (followed by text that is neither a comma
    nor another number; at the very end of the text, only with the format's full `decimals` decimals, since a cut-off
    generation may have stopped inside the number). Brackets holding fewer or more than 4 numbers are dropped: with 5
    or more there is no telling which 4 were meant.

    Boxes in the location format: 4 consecutive location tokens (`<loc_i>`, whitespace allowed between them), each
    read as its bin centre `(i + 0.5) / num_bins`; an index past the last bin means the last bin. A run of 4k + r
    tokens gives k boxes and drops the r trailing tokens (a cut-off box), as does a malformed token (`<loc_12`).

    Negative values are clipped to 0 and each axis ordered (x1 <= x2, y1 <= y2). A text box holding a value above 1
    (pixels written in the normalized format, `[64,48,320,240]`) is dropped, not clipped. Dropped boxes give no
    `GroundedBox` (`count_dropped_boxes` counts them) but, like boxes, end the phrase before them.

    Phrases:
        - In a grounded caption, every box inside a `||...||` chunk gets the chunk's text without its boxes, e.g.
          `||two squares [..][..]||` gives two boxes with phrase `"two squares"`. Markers pair up from the start; a
          `||` left open runs to the end of the text (a cut-off caption).
        - Outside chunks, a box's phrase is the text between it and the previous box (or the previous chunk, or the
          start of the text), whitespace runs collapsed and surrounding whitespace and `.,;:!?[]` stripped:
          `"the cat [..] and the dog [..]"` gives `"the cat"` and `"and the dog"`, `"A: [..].\\nB: [..]."` gives
          `"A"` and `"B"`. When that text is empty (only spaces or punctuation), the box keeps the phrase of the box
          (kept or dropped) before it (`"two dogs [..], [..]"`), or gets `""` if it is the first of its stretch
          (`"[..]."`). Phrases are the literal text: no words (`"and"`) are removed.

    Args:
        text: generated text (special tokens such as `<loc_i>` kept for the location format).
        image_size: `(height, width)` of the original image, to also get pixel boxes.
        box_format: how boxes are written; `BoxFormat()` (the reference text format) by default.

    Returns:
        `list[GroundedBox]` in text order, with `box` in pixels of `image_size` (`None` without it).
    """
    box_format = _check_format(box_format)
    size = None if image_size is None else _as_size(image_size, "image_size")
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}.")
    return [
        GroundedBox(
            phrase=phrase,
            box_normalized=fragment.box,
            box=None if size is None else denormalize_box(fragment.box, size),
            span=(fragment.start, fragment.end),
        )
        for fragment, phrase in _grounded_fragments(text, box_format)
    ]


def count_dropped_boxes(text: str, box_format: BoxFormat | None = None) -> int:
    """How many box-like fragments of `text` `parse_grounding` drops (incomplete, malformed or out of range)."""
    return sum(fragment.box is None for fragment in _checked_fragments(text, box_format))


_BOX_SEPARATOR = re.compile(r"\s*[,;]\s*")


def strip_boxes(text: str, box_format: BoxFormat | None = None) -> str:
    """The readable caption of generated text: `text` without its boxes (kept or dropped, see `parse_grounding`) and
    `||` markers, whitespace runs within a line collapsed, no space before punctuation, and stripped.

    `"||a red circle [0.10,0.20,0.30,0.40]|| next to ||two squares [..][..]||."` -> `"a red circle next to two
    squares."`.
    """
    fragments = _checked_fragments(text, box_format)
    # The separators of a list of boxes go with the boxes: "squares [a], [b]." reads "squares.", not "squares,.".
    fragments = sorted(fragments, key=lambda fragment: fragment.start)
    separators = [
        _Fragment(before.end, after.start, None)
        for before, after in zip(fragments, fragments[1:])
        if _BOX_SEPARATOR.fullmatch(text, before.end, after.start)
    ]
    markers = [_Fragment(*match.span(), None) for match in _CHUNK_MARKER.finditer(text)]
    removed = _without(text, 0, len(text), sorted(fragments + separators + markers, key=lambda item: item.start))
    lines = (re.sub(r" (?=[,.;:!?](?:\s|$))", "", " ".join(line.split())) for line in removed.splitlines())
    return "\n".join(lines).strip()


__all__ = [
    "BOX_DECIMALS",
    "BOX_FORMATS",
    "DEFAULT_LOCATION_BINS",
    "LOCATION_TOKEN_PREFIX",
    "REFERENCE_IMAGE_SIZE",
    "BoxFormat",
    "as_box",
    "location_tokens",
    "normalize_box",
    "denormalize_box",
    "format_box",
    "CHUNK_MARKER",
    "GroundedBox",
    "parse_grounding",
    "count_dropped_boxes",
    "strip_boxes",
]
