# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Record checks and readers shared by every loader of `vlmamba.data`: the Arrow types of the structured-example fields
(`FIELD_FEATURES`), the JSON and JSON Lines readers, and `_Collector` and `_Record`, which check each record of an
annotation file and raise, or with `skip_bad=True` skip and report, a malformed one with the file, the row, the id
and the field (the rules are under "Bad input" in the package docstring)."""

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping

from datasets import Dataset, Features, Value
from PIL import Image, UnidentifiedImageError
from transformers.utils import logging


logger = logging.get_logger(__name__)


# The Arrow types of the structured-example fields; `answer` and `choices` differ per task, so loaders give them.
FIELD_FEATURES = {
    "id": Value("string"),
    "source": Value("string"),
    "task": Value("string"),
    "image": Value("string"),
    "image_size": [Value("int64")],
    "prompt": Value("string"),
    "caption": Value("string"),
    "references": [Value("string")],
    "conversations": [{"from": Value("string"), "value": Value("string")}],
    "question": Value("string"),
    "answers": [Value("string")],
    "ocr_tokens": [Value("string")],
    "expression": Value("string"),
    "box": [Value("float64")],
    "ocr": [[Value("string")]],
    "relation": Value("string"),
    # Written without lower-casing by the collator (see `vlmamba.data.collator`).
    "keep_case": Value("bool"),
}
_TEXT_CHOICES = [Value("string")]
_BOX_CHOICES = [[Value("float64")]]
# A COCO box may end a fraction of a pixel past the image border (float rounding); more than this is an error.
_BOX_TOLERANCE = 1.0


class _Malformed(Exception):
    """A record that cannot be read: the field (`None` for the whole record) and what is wrong with it."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class _BadJSON:
    """Stands for a JSON Lines line that does not parse, so that it is reported like any malformed record."""

    def __init__(self, message: str):
        self.message = message


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_KINDS = {
    "text": ("a non-empty string", lambda value: isinstance(value, str) and value.strip() != ""),
    "string": ("a string", lambda value: isinstance(value, str)),
    "integer": ("an integer", lambda value: isinstance(value, int) and not isinstance(value, bool)),
    "number": (
        "a finite number",
        lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
    ),
    "id": (
        "a string or an integer",
        lambda value: (
            (isinstance(value, str) and value.strip() != "") or (isinstance(value, int) and not isinstance(value, bool))
        ),
    ),
    "list": ("a list", lambda value: isinstance(value, (list, tuple))),
    "mapping": ("a dict", lambda value: isinstance(value, Mapping)),
}


class _Record:
    """One record of an annotation file while it is read; its errors name the file, the row, the id and the field."""

    def __init__(self, collector: "_Collector", file, index, data):
        self.collector = collector
        self.file = file
        self.index = index
        self.data = data
        self.id = None

    def fail(self, field: str | None, message: str):
        raise _Malformed(field, message)

    def describe(self, error: _Malformed) -> str:
        where = f"{self.file}"
        if self.index is not None:
            where += f": row {self.index}"
        if self.id is not None:
            where += f" (id {str(self.id)!r})"
        if error.field is None:
            return f"{where}: {error.message}."
        return f"{where}: field {error.field!r} {error.message}."

    def mapping(self) -> Mapping:
        """The record itself, which must be a dict (a JSON object)."""
        if isinstance(self.data, _BadJSON):
            self.fail(None, f"is not valid JSON ({self.data.message})")
        if not isinstance(self.data, Mapping):
            self.fail(None, f"must be a dict (a JSON object), got {_short(self.data)}")
        return self.data

    def check(self, label: str, value, kind: str):
        description, test = _KINDS[kind]
        if not test(value):
            self.fail(label, f"must be {description}, got {_short(value)}")
        return value

    def get(self, field: str, kind: str, container=None, label: str | None = None, required: bool = True):
        """`container[field]` (the record by default) checked to be of `kind`; `None` when missing and not
        `required`."""
        container = self.mapping() if container is None else container
        label = label or field
        value = container.get(field) if isinstance(container, Mapping) else None
        if value is None:
            if required:
                self.fail(label, "is missing")
            return None
        return self.check(label, value, kind)

    def set_id(self, value) -> str:
        self.id = str(value)
        return self.id

    def image(self, name: str, field: str = "image", expected_size=None) -> str:
        """The path of image `name` under the image root; with `check_images`, its header is read and, when
        `expected_size` `(height, width)` is given, its size compared."""
        path = os.path.join(self.collector.image_root, name)
        if self.collector.check_images:
            size = self.collector.header(path)
            if isinstance(size, str):
                self.fail(field, size)
            if expected_size is not None and tuple(size) != tuple(expected_size):
                self.fail(
                    field,
                    f"image {path!r} is {size[1]}x{size[0]} (width x height) but the annotations say "
                    f"{expected_size[1]}x{expected_size[0]}",
                )
        return path

    def image_size(self, path: str):
        """`(height, width)` of an image checked by `image`, `None` without `check_images`."""
        size = self.collector.headers.get(path)
        return None if size is None or isinstance(size, str) else list(size)


class _Collector:
    """Reads the records of one loader call: rows of good records; bad records raise or are skipped and reported."""

    def __init__(self, file, source, image_root, skip_bad, report, check_images):
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, got {source!r}.")
        if not isinstance(image_root, (str, os.PathLike)):
            raise ValueError(f"image_root must be a path, got {image_root!r}.")
        if report is not None and not isinstance(report, list):
            raise ValueError(f"report must be a list (skipped rows are appended to it) or None, got {report!r}.")
        for name, flag in (("skip_bad", skip_bad), ("check_images", check_images)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be a bool, got {flag!r}.")
        self.file = str(file)
        self.source = source
        self.image_root = os.fspath(image_root)
        self.skip_bad = skip_bad
        self.report = report
        self.check_images = check_images
        self.skipped: list[dict] = []
        # Image path -> (height, width), or why it cannot be read.
        self.headers: dict[str, tuple[int, int] | str] = {}

    def parse(self, index, data, function: Callable, file=None):
        """`function(record)` for the record `data` at row `index` of `file` (the loader's file by default): its
        result, or `None` when the record is malformed and skipped."""
        record = _Record(self, self.file if file is None else str(file), index, data)
        try:
            return function(record)
        except _Malformed as error:
            reason = record.describe(error)
            if not self.skip_bad:
                raise ValueError(reason) from None
            entry = {"file": record.file, "row": index, "reason": reason}
            self.skipped.append(entry)
            if self.report is not None:
                self.report.append(entry)
            return None

    def header(self, path: str):
        if path not in self.headers:
            try:
                with Image.open(path) as image:  # reads the header only
                    width, height = image.size
                self.headers[path] = (height, width)
            except FileNotFoundError:
                self.headers[path] = f"names an image that does not exist: {path!r}"
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                self.headers[path] = f"names an image that cannot be read: {path!r} ({type(error).__name__}: {error})"
        return self.headers[path]

    def finish(self, rows: list[dict], columns: dict) -> Dataset:
        if self.skipped:
            logger.warning(
                f"{self.source}: skipped {len(self.skipped)} malformed record(s) of {self.file} (kept "
                f"{len(rows)} row(s)); the reasons are in `report`. First: {self.skipped[0]['reason']}"
            )
        data = {name: [row.get(name) for row in rows] for name in columns}
        return Dataset.from_dict(data, features=Features(columns))


def _columns(*names: str, **features) -> dict:
    """The features of the columns `names`, in this order: `FIELD_FEATURES` unless given in `features`."""
    return {name: features[name] if name in features else FIELD_FEATURES[name] for name in names}


def _read_text(path) -> str:
    """The file's text, read as UTF-8; other bytes are an error naming the file and the position."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}).") from None


def _read_json(path, kind: type, description: str):
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    if not isinstance(data, kind):
        raise ValueError(f"{path}: expected {description}, got a JSON {type(data).__name__}.")
    return data


def _top_list(data: Mapping, key: str, path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a {key!r} list at the top level, got {_short(value)}.")
    return value


def _read_json_lines(path) -> list[tuple[int, object]]:
    """`(row, record)` pairs of a JSON Lines file (a file holding one JSON list is read as that list). Blank lines
    are not records; a line that does not parse becomes a `_BadJSON` record."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    records = []
    # Lines end at "\n" only: `str.splitlines` would also break at U+2028, U+2029 and U+0085, which JSON strings may
    # hold unescaped (`json.dumps(ensure_ascii=False)` writes them as they are).
    for index, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            records.append((index, json.loads(line)))
        except json.JSONDecodeError as error:
            records.append((index, _BadJSON(str(error))))
    return records


def _most_common(answers: list[str]) -> str:
    """The most frequent answer; among ties, the one seen first."""
    counts = Counter(answers)
    best = max(counts.values())
    return next(answer for answer in answers if counts[answer] == best)


def _xywh_to_xyxy(record: _Record, label: str, bbox, image_size=None, clamp_negative=False, clip=False) -> list:
    """A pixel XYWH box as XYXY. `clamp_negative` moves negative coordinates to 0. With `image_size`, the box must
    lie in the image (up to `_BOX_TOLERANCE` pixels, then clipped), or with `clip` is clipped to it."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        record.fail(label, f"must be 4 numbers (x, y, width, height), got {_short(bbox)}")
    for value in bbox:
        record.check(label, value, "number")
    x, y, width, height = (float(value) for value in bbox)
    if width < 0 or height < 0:
        record.fail(label, f"{_short(list(bbox))} has a negative width or height")
    box = [x, y, x + width, y + height]
    if clamp_negative:
        box = [max(value, 0.0) for value in box]
    if image_size is not None:
        image_height, image_width = image_size
        limits = [image_width, image_height] * 2
        if not clip and (
            min(box) < -_BOX_TOLERANCE
            or box[2] > image_width + _BOX_TOLERANCE
            or box[3] > image_height + _BOX_TOLERANCE
        ):
            record.fail(label, f"{_short(list(bbox))} lies outside the {image_width}x{image_height} image")
        box = [min(max(value, 0.0), limit) for value, limit in zip(box, limits)]
    return box


def _check_max_per_row(max_per_row) -> None:
    """Packing loaders' `max_per_row`: a positive number of turns per row, or `None` for all of an image's."""
    if max_per_row is None:
        return
    if isinstance(max_per_row, bool) or not isinstance(max_per_row, int) or max_per_row < 1:
        raise ValueError(f"max_per_row must be a positive integer or None, got {max_per_row!r}.")


def _chunks(items: list, size: int | None) -> list[list]:
    """`items` in consecutive groups of `size` (all in one group when `size` is `None`)."""
    size = size or max(len(items), 1)
    return [items[start : start + size] for start in range(0, len(items), size)]


def _check_pack(pack, max_per_row) -> None:
    if not isinstance(pack, bool):
        raise ValueError(f"pack must be a bool, got {pack!r}.")
    _check_max_per_row(max_per_row)


def _pack_by_image(rows: list[dict], fields: Mapping[str, str], max_per_row: int | None, drop=()) -> list[dict]:
    """Rows of one turn each -> rows of several turns about one image, as the reference trained: the rows of each
    `image` in first-seen order, in groups of up to `max_per_row`; each field `single` of `fields` becomes the list
    `fields[single]` (the multi-turn form of `vlmamba.models.tasks`), the columns `drop` (per-turn columns without a
    packed form) are left out, the other columns are the group's first row's, and the `id` is
    `"{image file stem}-{n}"` (`n` counts the image's groups)."""
    by_image: dict = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    packed = []
    for image, image_rows in by_image.items():
        stem = os.path.splitext(os.path.basename(image))[0]
        for number, group in enumerate(_chunks(image_rows, max_per_row)):
            row = {key: value for key, value in group[0].items() if key not in fields and key not in drop}
            row["id"] = f"{stem}-{number}"
            row.update({plural: [item[single] for item in group] for single, plural in fields.items()})
            packed.append(row)
    return packed


__all__ = [
    "FIELD_FEATURES",
]
