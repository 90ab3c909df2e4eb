# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Dataset loaders: public annotation files on local disk -> `datasets.Dataset`s of structured examples.

Every row is a structured example as `vlmamba.models.tasks` defines it (`build_prompt` takes it as it is), plus:

- `id`: the record's id in its source (a string), `source`: the source's name (e.g. `"refcoco"`);
- `image`: the image file's path as a string (joined to `image_root`; `None` for LLaVA's text-only rows). Images are
  not opened when loading, only by `open_image` later (the training collator), unless `check_images=True`.

Nothing is downloaded. Boxes are pixel XYXY of the original image and `image_size` is `(height, width)`.

| name | loader | task | rows | split |
|---|---|---|---|---|
| `llava` | `load_llava` | chat | one per record | the file |
| `llava_pretrain` | `load_llava(as_captioning=True)` | captioning, `prompt` = human turn | one per record | the file |
| `coco_captions` | `load_coco_captions` | captioning | train: one per caption; val/test: one per image | `split` |
| `nocaps` | `load_nocaps` | captioning | one per image | the file |
| `textcaps` | `load_textcaps` | captioning | train: one per caption; val/test: one per image | the file |
| `vqav2` | `load_vqav2` | vqa | one per question | the files |
| `gqa` | `load_gqa` | vqa | one per question | the file |
| `refcoco`, `refcoco+`, `refcocog` | `load_refcoco` | grounding | one per sentence | `split` |
| `textvqa` | `load_textvqa` | vqa | one per question | the file |
| `vsr` | `load_vsr` | image_text_match | one per line | the file |
| `pope` | `load_pope` | vqa (yes/no) | one per line | the file (one per subset) |
| `ai2d` | `load_ai2d` | multiple_choice with `ocr` | one per question | `ids` / `exclude_ids` |
| `visual7w` | `load_visual7w` | multiple_choice (pointing: box options) | one per question | `split` |

Files expected (image file names relative to `image_root`):

- LLaVA: a JSON list of `{"id", "image", "conversations"}`: `llava_v1_5_mix665k.json`, `llava_instruct_150k.json`,
  or LLaVA-Pretrain's `blip_laion_cc_sbu_558k.json`. Images: the records' `image`.
- COCO captions: Karpathy's `dataset_coco.json`; `split` is its `split` field, `"train"` with `restval`. Images:
  `{filepath}/{filename}`. Val/test rows hold all captions in `references`.
- NoCaps: `nocaps_val_4500_captions.json` (or any COCO-format caption file: `images` and `annotations`). Images:
  `file_name`.
- TextCaps: `TextCaps_0.1_{split}.json`. Images: `{image_id}.jpg`.
- VQAv2: `v2_OpenEnded_mscoco_{subtype}_questions.json` and `v2_mscoco_{subtype}_annotations.json` (none for test).
  Images: `COCO_{data_subtype}_{image_id:012d}.jpg`.
- GQA: `{split}_balanced_questions.json`. Images: `{imageId}.jpg`.
- RefCOCO, RefCOCO+, RefCOCOg: `refs(unc).p`, `refs(umd).p` or `refs(google).p` and the `instances.json` next to
  it; `split` is the refs' `split` field (`train`, `val`, `testA`, `testB`, `test`). Images: the instances'
  `file_name`.
- TextVQA: `TextVQA_0.5.1_{split}.json`, optionally a Rosetta OCR JSON. Images: `{image_id}.jpg`.
- VSR: a JSON Lines split file (`image`, `caption`, `label`). Images: `image`.
- POPE: a JSON Lines subset file (`question_id`, `image`, `text`, `label`). Images: `image`.
- AI2D: the folder holding `questions/` and `annotations/` (one `{n}.png.json` per diagram each). Images:
  `imageName`.
- Visual7W: `dataset_v7w_telling.json` or `dataset_v7w_pointing.json` (with a `boxes` list, or
  `v7w_pointing_answers.json`); `split` is the images' `split` field. Images: `filename`.

Split and row choices where the reference differs or is silent:

- RefCOCO evaluation: one row per sentence, every expression a sample (the standard protocol). The reference evaluates
  one sentence per object (the last); `per_object=True` reproduces that.
- COCO val/test rows also carry the first reference as `caption`, so that they work as loss examples too.
- VQAv2 and TextVQA: `answer` is the most frequent of the annotators' answers (the first one seen among ties).
- Visual7W and AI2D: one question per row, no augmentation (the reference puts the answer at every position for
  training). Visual7W's options are the answer and the wrong choices, shuffled per question by `shuffle_seed`.

Bad input: a malformed record (missing field, wrong type, a box with a negative size, an image or box the other files
do not know, with `check_images=True` a missing or unreadable image) raises a `ValueError` naming the file, the row
(0-based position of the record in its file, the line for JSON Lines), the id and the field. With `skip_bad=True`
the record is skipped instead (all its rows), recorded in `report` as `{"file", "row", "reason"}` and counted in one
logged warning. Only the records of the requested split are checked.
"""

import json
import math
import numbers
import os
import pickle
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets
from PIL import Image, UnidentifiedImageError
from transformers.utils import logging


try:  # datasets >= 4.7
    from datasets import Json
except ImportError:  # pragma: no cover
    Json = None


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
}
_TEXT_CHOICES = [Value("string")]
_BOX_CHOICES = [[Value("float64")]]

KARPATHY_SPLITS = ("train", "restval", "val", "test")
VISUAL7W_KINDS = ("telling", "pointing")
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
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                self.headers[path] = f"names an image that cannot be read: {path!r} ({error})"
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


def _read_json(path, kind: type, description: str):
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
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
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    records = []
    for index, line in enumerate(text.splitlines()):
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


# LLaVA


def load_llava(
    json_path,
    image_root,
    *,
    as_captioning: bool = False,
    source: str | None = None,
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """LLaVA-format conversations: a JSON list of `{"id", "image" (optional), "conversations": [{"from", "value"}]}`.

    Args:
        json_path: the JSON file (a JSON Lines file is read too).
        image_root: the folder the `image` paths are relative to.
        as_captioning: LLaVA-Pretrain (558K): every record is one human prompt and one gpt caption and becomes a
            `captioning` row with the human text as `prompt` (its `<image>` tag is removed by `build_prompt`).
            Otherwise (665K, 150K) every record is a `chat` row.
        source: the `source` column; `"llava_pretrain"` with `as_captioning`, else `"llava"`.
        skip_bad, report, check_images: see the module docstring.

    Returns:
        A `Dataset` with `id`, `source`, `task`, `image` (`None` for text-only records) and `prompt`, `caption`
        (captioning) or `conversations` (chat). A record without `id` gets its row number.
    """
    if not isinstance(as_captioning, bool):
        raise ValueError(f"as_captioning must be a bool, got {as_captioning!r}.")
    source = source if source is not None else ("llava_pretrain" if as_captioning else "llava")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    if str(json_path).endswith(".jsonl"):
        records = _read_json_lines(json_path)
    else:
        records = list(enumerate(_read_json(json_path, list, "a JSON list of conversations")))

    def parse(record: _Record) -> list[dict]:
        identifier = record.get("id", "id", required=False)
        record.set_id(record.index if identifier is None else identifier)
        image = record.get("image", "text", required=False)
        turns = record.get("conversations", "list")
        if not turns:
            record.fail("conversations", "is empty")
        conversation = []
        for position, turn in enumerate(turns):
            label = f"conversations[{position}]"
            record.check(label, turn, "mapping")
            role = record.get("from", "text", turn, f"{label}.from")
            if role not in ("human", "gpt"):
                record.fail(f"{label}.from", f"must be 'human' or 'gpt', got {role!r}")
            conversation.append({"from": role, "value": record.get("value", "text", turn, f"{label}.value")})
        if conversation[0]["from"] != "human":
            record.fail("conversations[0].from", "must be 'human': a conversation starts with the human")
        if conversation[-1]["from"] != "gpt":
            record.fail(f"conversations[{len(conversation) - 1}].from", "must be 'gpt': a conversation ends with it")
        row = {"id": record.id, "source": source, "image": None if image is None else record.image(image)}
        if not as_captioning:
            return [{**row, "task": "chat", "conversations": conversation}]
        if len(conversation) != 2:
            record.fail(
                "conversations",
                f"must be one human prompt and one gpt caption (as_captioning=True), got {len(conversation)} turns",
            )
        return [{**row, "task": "captioning", "prompt": conversation[0]["value"], "caption": conversation[1]["value"]}]

    rows = []
    for index, data in records:
        rows.extend(collector.parse(index, data, parse) or [])
    names = ("prompt", "caption") if as_captioning else ("conversations",)
    return collector.finish(rows, _columns("id", "source", "task", "image", *names))


# COCO captions (Karpathy splits)


def load_coco_captions(
    karpathy_json,
    image_root,
    split: str,
    *,
    include_restval: bool = True,
    source: str = "coco_captions",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """COCO captions in Karpathy's splits (`dataset_coco.json`: `images`, each with `filepath`, `filename`,
    `cocoid`, `split` and `sentences` holding `raw` captions).

    Args:
        karpathy_json: the Karpathy JSON file.
        image_root: the folder holding `filepath/filename` (e.g. the folder of `train2014/` and `val2014/`).
        split: `"train"`, `"restval"`, `"val"` or `"test"`.
        include_restval: `"train"` includes the restval images, as the reference trains on train + restval.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        For train and restval, one `captioning` row per caption (`id`: the sentence id). For val and test, one row
        per image (`id`: the COCO id) with all captions in `references` and the first in `caption`.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {KARPATHY_SPLITS}, got {split!r}.")
    collector = _Collector(karpathy_json, source, image_root, skip_bad, report, check_images)
    images = _top_list(_read_json(karpathy_json, dict, "a JSON object with an 'images' list"), "images", karpathy_json)
    wanted = {split, "restval"} if split == "train" and include_restval else {split}
    per_caption = split in ("train", "restval")
    seen = set()

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        identifier = record.get("cocoid", "id", required=False)
        record.set_id(identifier if identifier is not None else record.get("imgid", "id"))
        image_split = record.get("split", "text")
        seen.add(image_split)
        if image_split not in wanted:
            return []
        folder = record.get("filepath", "string", required=False) or ""
        path = record.image(os.path.join(folder, record.get("filename", "text")))
        sentences = record.get("sentences", "list")
        if not sentences:
            record.fail("sentences", "is empty")
        captions, sentence_ids = [], []
        for position, sentence in enumerate(sentences):
            label = f"sentences[{position}]"
            record.check(label, sentence, "mapping")
            captions.append(record.get("raw", "text", sentence, f"{label}.raw"))
            sentence_id = record.get("sentid", "id", sentence, f"{label}.sentid", required=False)
            sentence_ids.append(f"{record.id}-{position}" if sentence_id is None else str(sentence_id))
        row = {"source": source, "task": "captioning", "image": path}
        if per_caption:
            return [{**row, "id": key, "caption": caption} for key, caption in zip(sentence_ids, captions)]
        return [{**row, "id": record.id, "caption": captions[0], "references": captions}]

    rows = []
    for index, data in enumerate(images):
        rows.extend(collector.parse(index, data, parse) or [])
    if not seen & wanted:
        raise ValueError(f"{karpathy_json}: no image is in split {split!r}; the file has {sorted(seen)}.")
    names = ("caption",) if per_caption else ("caption", "references")
    return collector.finish(rows, _columns("id", "source", "task", "image", *names))


# NoCaps and TextCaps (captioning evaluation)


def load_nocaps(
    json_path,
    image_root,
    *,
    source: str = "nocaps",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """NoCaps, or any caption file in the COCO format: `images` (`id`, `file_name`, and optionally `height`,
    `width` and NoCaps' `domain`) and `annotations` (`image_id`, `caption`), e.g. `nocaps_val_4500_captions.json`.

    Args:
        json_path: the COCO-format JSON file. A file without `annotations` (`nocaps_test_image_info.json`) gives rows
            without captions, for generation.
        image_root: the folder of the images' `file_name`.
        source, skip_bad, report, check_images: see the module docstring. The unit of a bad record is an image
            entry (row: its position in `images`) or a caption (row: its position in `annotations`, file named
            `{json_path} annotations`).

    Returns:
        One `captioning` row per image (`id`: the image id) with `references` (its captions in file order),
        `caption` (the first), `image_size` (when the file gives it) and `domain` (NoCaps' `in-domain`,
        `near-domain` or `out-domain`; `None` elsewhere).
    """
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a COCO-format JSON object with 'images' and 'annotations' lists")
    images = _top_list(data, "images", json_path)
    has_captions = data.get("annotations") is not None
    image_ids = {str(image.get("id")) for image in images if isinstance(image, Mapping)}
    captions: dict[str, list[str]] = {}
    if has_captions:
        annotations_file = f"{json_path} annotations"

        def parse_annotation(record: _Record):
            identifier = record.get("id", "id", required=False)
            record.set_id(record.index if identifier is None else identifier)
            image_id = str(record.get("image_id", "id"))
            if image_id not in image_ids:
                record.fail("image_id", f"{image_id} is not the id of an entry of 'images'")
            return image_id, record.get("caption", "text")

        for index, entry in enumerate(_top_list(data, "annotations", json_path)):
            parsed = collector.parse(index, entry, parse_annotation, file=annotations_file)
            if parsed is not None:
                captions.setdefault(parsed[0], []).append(parsed[1])

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        image_id = record.set_id(record.get("id", "id"))
        width = record.get("width", "integer", required=False)
        height = record.get("height", "integer", required=False)
        image_size = [height, width] if width is not None and height is not None else None
        row = {
            "id": image_id,
            "source": source,
            "task": "captioning",
            "image": record.image(record.get("file_name", "text"), field="file_name", expected_size=image_size),
            "image_size": image_size,
            "domain": record.get("domain", "text", required=False),
        }
        if has_captions:
            if image_id not in captions:
                record.fail("id", "has no (readable) caption in 'annotations'")
            row.update(caption=captions[image_id][0], references=captions[image_id])
        return [row]

    rows = []
    for index, entry in enumerate(images):
        rows.extend(collector.parse(index, entry, parse) or [])
    names = ("caption", "references") if has_captions else ()
    columns = _columns("id", "source", "task", "image", "image_size", *names, "domain", domain=Value("string"))
    return collector.finish(rows, columns)


def load_textcaps(
    json_path,
    image_root,
    *,
    per_caption: bool | None = None,
    source: str = "textcaps",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """TextCaps: `TextCaps_0.1_{split}.json` (`dataset_type` and `data`, one entry per caption with `image_id`,
    `caption_id`, `caption_str`, `reference_strs` (all captions of the image), `image_width`, `image_height`; the test
    split's entries are images without captions).

    Args:
        json_path: the TextCaps JSON file.
        image_root: the folder of `{image_id}.jpg` (TextVQA's `train_images/` for train and val).
        per_caption: one row per caption (training) rather than per image (evaluation); by default per caption for
            the train split (`dataset_type` `"train"`) only.
        source, skip_bad, report, check_images: see the module docstring. The unit of a bad record is an entry of
            `data`.

    Returns:
        `captioning` rows with `image_size` (when the file gives it). Per caption: `id` the caption id, `caption`.
        Per image: `id` the image id, `references` (the first entry's `reference_strs`, or else the image's
        `caption_str`s in file order) and `caption` (the first reference); no caption in the test split.
    """
    if per_caption is not None and not isinstance(per_caption, bool):
        raise ValueError(f"per_caption must be a bool or None, got {per_caption!r}.")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a JSON object with a 'data' list")
    entries = _top_list(data, "data", json_path)
    if per_caption is None:
        per_caption = data.get("dataset_type") == "train"

    def parse(record: _Record) -> dict:
        record.mapping()
        image_id = str(record.get("image_id", "id"))
        record.set_id(image_id)
        width = record.get("image_width", "integer", required=False)
        height = record.get("image_height", "integer", required=False)
        image_size = [height, width] if width is not None and height is not None else None
        caption = record.get("caption_str", "text", required=per_caption)
        caption_id = record.get("caption_id", "id", required=False)
        references = record.get("reference_strs", "list", required=False)
        if references is not None:
            if not references:
                record.fail("reference_strs", "is empty")
            references = [record.check(f"reference_strs[{n}]", text, "text") for n, text in enumerate(references)]
        return {
            "image_id": image_id,
            "caption_id": None if caption_id is None else str(caption_id),
            "image": record.image(f"{image_id}.jpg", expected_size=image_size),
            "image_size": image_size,
            "caption": caption,
            "references": references,
        }

    parsed = [entry for index, data in enumerate(entries) if (entry := collector.parse(index, data, parse))]
    if per_caption:
        counts = Counter()
        rows = []
        for entry in parsed:
            image_id, caption_id = entry.pop("image_id"), entry.pop("caption_id")
            key = caption_id if caption_id is not None else f"{image_id}-{counts[image_id]}"
            counts[image_id] += 1
            rows.append({"id": key, "source": source, "task": "captioning", **entry})
        return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "caption"))
    by_image: dict[str, list[dict]] = {}
    for entry in parsed:
        by_image.setdefault(entry["image_id"], []).append(entry)
    rows = []
    for image_id, group in by_image.items():
        captions = [entry["caption"] for entry in group if entry["caption"] is not None]
        references = group[0]["references"] or captions or None
        row = {"id": image_id, "source": source, "task": "captioning", "image": group[0]["image"]}
        row.update(image_size=group[0]["image_size"], references=references, caption=references and references[0])
        rows.append(row)
    return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "caption", "references"))


# VQAv2


def load_vqav2(
    questions_json,
    annotations_json,
    image_root,
    *,
    source: str = "vqav2",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """VQAv2: the questions file (`data_subtype`, `questions` with `question_id`, `image_id`, `question`) and the
    annotations file (`annotations` with `question_id` and the 10 `answers`).

    Args:
        questions_json: `v2_OpenEnded_mscoco_{subtype}_questions.json`.
        annotations_json: `v2_mscoco_{subtype}_annotations.json`, or `None` (the test split has none).
        image_root: the folder of `COCO_{data_subtype}_{image_id:012d}.jpg`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question` and, with annotations, `answer` (the most
        frequent answer) and `answers` (all of them, in the file's order).
    """
    collector = _Collector(questions_json, source, image_root, skip_bad, report, check_images)
    questions_data = _read_json(questions_json, dict, "a JSON object with a 'questions' list")
    questions = _top_list(questions_data, "questions", questions_json)
    subtype = questions_data.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        raise ValueError(f"{questions_json}: field 'data_subtype' (e.g. 'val2014') is missing, got {_short(subtype)}.")

    answers_by_question = None
    if annotations_json is not None:
        annotations_data = _read_json(annotations_json, dict, "a JSON object with an 'annotations' list")

        def parse_annotation(record: _Record):
            question_id = record.set_id(record.get("question_id", "integer"))
            answers = record.get("answers", "list")
            if not answers:
                record.fail("answers", "is empty")
            texts = []
            for position, answer in enumerate(answers):
                label = f"answers[{position}]"
                record.check(label, answer, "mapping")
                texts.append(record.get("answer", "text", answer, f"{label}.answer"))
            return question_id, texts

        answers_by_question = {}
        for index, data in enumerate(_top_list(annotations_data, "annotations", annotations_json)):
            parsed = collector.parse(index, data, parse_annotation, file=annotations_json)
            if parsed is not None:
                answers_by_question[parsed[0]] = parsed[1]

    def parse(record: _Record) -> list[dict]:
        question_id = record.set_id(record.get("question_id", "integer"))
        image_id = record.get("image_id", "integer")
        row = {
            "id": question_id,
            "source": source,
            "task": "vqa",
            "question": record.get("question", "text"),
            "image": record.image(f"COCO_{subtype}_{image_id:012d}.jpg"),
        }
        if answers_by_question is not None:
            answers = answers_by_question.get(question_id)
            if answers is None:
                record.fail("question_id", f"has no (readable) annotation in {annotations_json}")
            row.update(answer=_most_common(answers), answers=answers)
        return [row]

    rows = []
    for index, data in enumerate(questions):
        rows.extend(collector.parse(index, data, parse) or [])
    names = ("answer", "answers") if annotations_json is not None else ()
    return collector.finish(rows, _columns("id", "source", "task", "image", "question", *names, answer=Value("string")))


# GQA


def load_gqa(
    questions_json,
    image_root,
    *,
    source: str = "gqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """GQA: a questions file, a JSON object keyed by question id, each with `imageId`, `question` and `answer`.

    Args:
        questions_json: e.g. `train_balanced_questions.json` or `testdev_balanced_questions.json`.
        image_root: the folder of `{imageId}.jpg`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question` and `answer`.
    """
    collector = _Collector(questions_json, source, image_root, skip_bad, report, check_images)
    questions = _read_json(questions_json, dict, "a JSON object of questions keyed by question id")

    def parse(record: _Record, question_id: str) -> list[dict]:
        record.set_id(question_id)
        image_id = record.get("imageId", "id")
        return [
            {
                "id": record.id,
                "source": source,
                "task": "vqa",
                "image": record.image(f"{image_id}.jpg"),
                "question": record.get("question", "text"),
                "answer": record.get("answer", "text"),
            }
        ]

    rows = []
    for index, (question_id, data) in enumerate(questions.items()):
        rows.extend(collector.parse(index, data, partial(parse, question_id=question_id)) or [])
    return collector.finish(
        rows, _columns("id", "source", "task", "image", "question", "answer", answer=Value("string"))
    )


# RefCOCO, RefCOCO+, RefCOCOg


def load_refcoco(
    refs_pickle,
    instances_json,
    image_root,
    split: str,
    *,
    per_object: bool = False,
    source: str = "refcoco",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """RefCOCO / RefCOCO+ / RefCOCOg: the refs pickle (a list of refs with `ref_id`, `ann_id`, `image_id`, `split`
    and `sentences` holding `raw` expressions) and the matching `instances.json` (COCO `images` with `file_name`,
    `width`, `height`, and `annotations` with an XYWH `bbox`). Only load pickles you trust: unpickling runs code.

    Args:
        refs_pickle: `refs(unc).p` (RefCOCO, RefCOCO+), `refs(umd).p` or `refs(google).p` (RefCOCOg).
        instances_json: the `instances.json` next to it.
        image_root: the folder of the COCO images' `file_name` (`train2014/`).
        split: a value of the refs' `split` field: `"train"`, `"val"`, `"testA"`, `"testB"` or `"test"`.
        per_object: one row per object with its last sentence, as the reference's evaluation; by default every
            sentence is a row (the standard protocol, and the training rows).
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        `grounding` rows (`id`: `"{ref_id}-{sent_id}"`, or the ref id with `per_object`) with `expression`, `box`
        (pixel XYXY, clipped to the image when it ends less than a pixel past it) and `image_size` (height, width).
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a refs split name such as 'train' or 'testA', got {split!r}.")
    if not isinstance(per_object, bool):
        raise ValueError(f"per_object must be a bool, got {per_object!r}.")
    collector = _Collector(refs_pickle, source, image_root, skip_bad, report, check_images)
    with open(refs_pickle, "rb") as file:
        refs = pickle.load(file)
    if not isinstance(refs, list):
        raise ValueError(f"{refs_pickle}: expected a list of refs, got a {type(refs).__name__}.")
    instances = _read_json(instances_json, dict, "a COCO instances JSON object")
    images = {
        image["id"]: image
        for image in _top_list(instances, "images", instances_json)
        if isinstance(image, Mapping) and "id" in image
    }
    annotations = {
        annotation["id"]: annotation
        for annotation in _top_list(instances, "annotations", instances_json)
        if isinstance(annotation, Mapping) and "id" in annotation
    }
    seen = set()

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        ref_id = record.set_id(record.get("ref_id", "integer"))
        ref_split = record.get("split", "text")
        seen.add(ref_split)
        if ref_split != split:
            return []
        ann_id = record.get("ann_id", "integer")
        image_id = record.get("image_id", "integer")
        sentences = record.get("sentences", "list")
        if not sentences:
            record.fail("sentences", "is empty")
        expressions = []
        for position, sentence in enumerate(sentences):
            label = f"sentences[{position}]"
            record.check(label, sentence, "mapping")
            sentence_id = record.get("sent_id", "id", sentence, f"{label}.sent_id", required=False)
            text = record.get("raw", "text", sentence, f"{label}.raw")
            expressions.append((f"{ref_id}-{position if sentence_id is None else sentence_id}", text))

        annotation = annotations.get(ann_id)
        if annotation is None:
            record.fail("ann_id", f"{ann_id} is not an annotation id of {instances_json}")
        image = images.get(image_id)
        if image is None:
            record.fail("image_id", f"{image_id} is not an image id of {instances_json}")
        if annotation.get("image_id") != image_id:
            record.fail(
                "image_id", f"is {image_id} but annotation {ann_id} belongs to image {annotation.get('image_id')}"
            )
        where = f" (in {instances_json})"
        height = record.get("height", "integer", image, f"images[id={image_id}].height{where}")
        width = record.get("width", "integer", image, f"images[id={image_id}].width{where}")
        if height <= 0 or width <= 0:
            record.fail(f"images[id={image_id}]{where}", f"has a non-positive size {width}x{height}")
        image_size = [height, width]
        bbox = record.get("bbox", "list", annotation, f"annotations[id={ann_id}].bbox{where}")
        box = _xywh_to_xyxy(record, f"annotations[id={ann_id}].bbox{where}", bbox, image_size)
        file_name = record.get("file_name", "text", image, f"images[id={image_id}].file_name{where}")
        path = record.image(file_name, expected_size=image_size)
        if per_object:
            expressions = [(record.id, expressions[-1][1])]
        row = {"source": source, "task": "grounding", "image": path, "image_size": image_size, "box": box}
        return [{**row, "id": key, "expression": text} for key, text in expressions]

    rows = []
    for index, data in enumerate(refs):
        rows.extend(collector.parse(index, data, parse) or [])
    if split not in seen:
        raise ValueError(f"{refs_pickle}: no ref is in split {split!r}; the file has {sorted(seen)}.")
    return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "expression", "box"))


# TextVQA


def load_textvqa(
    json_path,
    image_root,
    *,
    ocr_json=None,
    source: str = "textvqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """TextVQA: `TextVQA_0.5.1_{split}.json` (`dataset_type` and `data`, each with `question_id`, `image_id`,
    `question`, `image_width`, `image_height` and, except in the test split, 10 `answers`).

    Args:
        json_path: the TextVQA JSON file.
        image_root: the folder of `{image_id}.jpg` (`train_images/` for train and val).
        ocr_json: optional Rosetta OCR file (`data` with `image_id` and `ocr_tokens`) for records without
            `ocr_tokens` of their own. The vqa template does not write OCR tokens; the reference's evaluation puts
            them in the prompt, so they are kept in `ocr_tokens`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question`, `image_size` (when the file gives it),
        `answer` (the most frequent answer) and `answers` (none for the test split), and `ocr_tokens` (`None`
        without OCR).
    """
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a JSON object with a 'data' list")
    records = _top_list(data, "data", json_path)
    test = data.get("dataset_type") == "test"

    ocr_by_image = None
    if ocr_json is not None:

        def parse_ocr(record: _Record):
            image_id = record.set_id(record.get("image_id", "id"))
            tokens = record.get("ocr_tokens", "list")
            return image_id, [record.check(f"ocr_tokens[{n}]", token, "string") for n, token in enumerate(tokens)]

        ocr_data = _read_json(ocr_json, dict, "a JSON object with a 'data' list")
        ocr_by_image = {}
        for index, entry in enumerate(_top_list(ocr_data, "data", ocr_json)):
            parsed = collector.parse(index, entry, parse_ocr, file=ocr_json)
            if parsed is not None:
                ocr_by_image[parsed[0]] = parsed[1]

    def parse(record: _Record) -> list[dict]:
        record.set_id(record.get("question_id", "id"))
        image_id = str(record.get("image_id", "id"))
        width = record.get("image_width", "integer", required=False)
        height = record.get("image_height", "integer", required=False)
        image_size = [height, width] if width is not None and height is not None else None
        row = {
            "id": record.id,
            "source": source,
            "task": "vqa",
            "image": record.image(f"{image_id}.jpg", expected_size=image_size),
            "image_size": image_size,
            "question": record.get("question", "text"),
        }
        answers = record.get("answers", "list", required=not test)
        if answers is not None:
            if not answers:
                record.fail("answers", "is empty")
            answers = [record.check(f"answers[{n}]", answer, "text") for n, answer in enumerate(answers)]
            row.update(answer=_most_common(answers), answers=answers)
        tokens = record.get("ocr_tokens", "list", required=False)
        if tokens is not None:
            row["ocr_tokens"] = [record.check(f"ocr_tokens[{n}]", token, "string") for n, token in enumerate(tokens)]
        elif ocr_by_image is not None:
            if image_id not in ocr_by_image:
                record.fail("image_id", f"{image_id!r} has no (readable) OCR tokens in {ocr_json}")
            row["ocr_tokens"] = ocr_by_image[image_id]
        return [row]

    rows = []
    for index, entry in enumerate(records):
        rows.extend(collector.parse(index, entry, parse) or [])
    columns = ("id", "source", "task", "image", "image_size", "question", "answer", "answers", "ocr_tokens")
    return collector.finish(rows, _columns(*columns, answer=Value("string")))


# VSR


def load_vsr(
    jsonl_path,
    image_root,
    *,
    source: str = "vsr",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """VSR (Visual Spatial Reasoning): JSON Lines with `image`, `caption`, `label` (1 true, 0 false) and `relation`.

    Args:
        jsonl_path: one split's file, e.g. `vsr_random/test.jsonl`.
        image_root: the folder of the COCO 2017 images named by `image`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `image_text_match` row per line (`id`: the line number) with `caption`, `answer` (a bool) and `relation`.
    """
    collector = _Collector(jsonl_path, source, image_root, skip_bad, report, check_images)

    def parse(record: _Record) -> list[dict]:
        record.set_id(record.index)
        label = record.mapping().get("label")
        if label is None:
            record.fail("label", "is missing")
        if not (isinstance(label, bool) or (isinstance(label, int) and label in (0, 1))):
            record.fail("label", f"must be 1 (true), 0 (false) or a bool, got {_short(label)}")
        return [
            {
                "id": record.id,
                "source": source,
                "task": "image_text_match",
                "image": record.image(record.get("image", "text")),
                "caption": record.get("caption", "text"),
                "answer": bool(label),
                "relation": record.get("relation", "string", required=False),
            }
        ]

    rows = []
    for index, data in _read_json_lines(jsonl_path):
        rows.extend(collector.parse(index, data, parse) or [])
    return collector.finish(
        rows, _columns("id", "source", "task", "image", "caption", "answer", "relation", answer=Value("bool"))
    )


# POPE


def load_pope(
    jsonl_path,
    image_root,
    *,
    source: str = "pope",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """POPE: JSON Lines with `question_id`, `image`, `text` (the question) and `label` (`"yes"` or `"no"`);
    `question` and `answer` are read in their place when present.

    Args:
        jsonl_path: one subset's file, e.g. `coco_pope_adversarial.json` (JSON Lines despite the name).
        image_root: the folder of the COCO val2014 images named by `image`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per line (`id`: the question id, or the line number) with `question` and `answer`, `"yes"` or
        `"no"`.
    """
    collector = _Collector(jsonl_path, source, image_root, skip_bad, report, check_images)

    def parse(record: _Record) -> list[dict]:
        data = record.mapping()
        identifier = record.get("question_id", "id", required=False)
        record.set_id(record.index if identifier is None else identifier)
        question_field = "text" if "text" in data else "question"
        answer_field = "label" if "label" in data else "answer"
        answer = record.get(answer_field, "text").strip().lower()
        if answer not in ("yes", "no"):
            record.fail(answer_field, f"must be 'yes' or 'no', got {_short(data[answer_field])}")
        return [
            {
                "id": record.id,
                "source": source,
                "task": "vqa",
                "image": record.image(record.get("image", "text")),
                "question": record.get(question_field, "text"),
                "answer": answer,
            }
        ]

    rows = []
    for index, data in _read_json_lines(jsonl_path):
        rows.extend(collector.parse(index, data, parse) or [])
    return collector.finish(
        rows, _columns("id", "source", "task", "image", "question", "answer", answer=Value("string"))
    )


# AI2D


def _image_ids(value, name: str) -> set[str] | None:
    """AI2D image ids (`"12"`, `12` or `"12.png"` all mean image 12) from an iterable or a file of one id per line
    (the first comma-separated field, as in `ai2d_test_ids.csv`)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        with open(value, encoding="utf-8") as file:
            value = [line.split(",")[0] for line in file if line.strip()]
    elif not isinstance(value, Iterable):
        raise ValueError(f"{name} must be an iterable of image ids or the path of a file of ids, got {value!r}.")
    return {str(item).strip().split(".")[0] for item in value}


def _ai2d_sort_key(path: Path):
    stem = path.name.split(".")[0]
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def load_ai2d(
    annotation_dir,
    image_root,
    *,
    ids=None,
    exclude_ids=None,
    with_ocr: bool = True,
    source: str = "ai2d",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """AI2D: one JSON file per diagram in `questions/` (`imageName` and `questions`, a dict from the question text to
    `answerTexts`, `correctAnswer` and `questionId`) and, for the OCR text, in `annotations/` (`text`, a dict of
    entries with `replacementText` and `value`).

    Args:
        annotation_dir: the AI2D folder holding `questions/` and `annotations/`.
        image_root: the folder of the diagrams (`images/`).
        ids: only these diagrams (an iterable of ids, or the path of a file of ids such as `ai2d_test_ids.csv`).
        exclude_ids: all diagrams but these (same forms); the reference's train/val rows are the diagrams not in
            `ai2d_test_ids.csv`.
        with_ocr: read the OCR text into `ocr`: `(replacementText, value)` pairs sorted by replacementText, as in the
            reference. Entries with an empty label or text are left out (`build_prompt` writes no empty text).
        source, skip_bad, report, check_images: see the module docstring. The file of a bad record is its
            question file, and its row the question's position in that file (`None` for the whole file).

    Returns:
        One `multiple_choice` row per question (`id`: the question id) with `question`, `choices`, `answer` (the
        correct option's index) and `ocr` (`None` without `with_ocr`).
    """
    if not isinstance(with_ocr, bool):
        raise ValueError(f"with_ocr must be a bool, got {with_ocr!r}.")
    questions_dir = Path(annotation_dir) / "questions"
    if not questions_dir.is_dir():
        raise ValueError(f"{annotation_dir}: has no 'questions' folder (the AI2D layout: questions/, annotations/).")
    keep, drop = _image_ids(ids, "ids"), _image_ids(exclude_ids, "exclude_ids")
    collector = _Collector(questions_dir, source, image_root, skip_bad, report, check_images)

    def read_ocr(record: _Record, image_name: str) -> list[list[str]]:
        ocr_file = Path(annotation_dir) / "annotations" / f"{image_name}.json"
        if not ocr_file.is_file():
            record.fail("imageName", f"has no annotation file {str(ocr_file)!r} for the OCR text")
        try:
            with open(ocr_file, encoding="utf-8") as file:
                annotation = json.load(file)
        except json.JSONDecodeError as error:
            record.fail("imageName", f"has an annotation file that is not valid JSON: {ocr_file} ({error})")
        record.check(f"(the annotation file {ocr_file})", annotation, "mapping")
        texts = record.get("text", "mapping", annotation, f"text (in {ocr_file})", required=False) or {}
        ocr = []
        for key, entry in texts.items():
            label = f"text.{key} (in {ocr_file})"
            record.check(label, entry, "mapping")
            name = record.get("replacementText", "string", entry, f"{label}.replacementText")
            value = record.get("value", "string", entry, f"{label}.value")
            if name.strip() and value.strip():
                ocr.append([name, value])
        return sorted(ocr, key=lambda pair: pair[0])

    def parse_diagram(record: _Record, image_id: str, default_name: str):
        record.set_id(image_id)
        questions = record.get("questions", "mapping")
        image_name = record.get("imageName", "text", required=False) or default_name
        return questions, record.image(image_name), read_ocr(record, image_name) if with_ocr else None

    def parse_question(record: _Record, path: str, ocr) -> list[dict]:
        question, entry = record.data
        record.check("question", question, "text")
        label = f'questions["{question}"]'
        record.check(label, entry, "mapping")
        record.set_id(record.get("questionId", "id", entry, f"{label}.questionId"))
        choices = record.get("answerTexts", "list", entry, f"{label}.answerTexts")
        if not choices:
            record.fail(f"{label}.answerTexts", "is empty")
        for position, choice in enumerate(choices):
            record.check(f"{label}.answerTexts[{position}]", choice, "text")
        answer = record.get("correctAnswer", "integer", entry, f"{label}.correctAnswer")
        if not 0 <= answer < len(choices):
            record.fail(f"{label}.correctAnswer", f"is {answer}, but there are {len(choices)} answerTexts")
        return [
            {
                "id": record.id,
                "source": source,
                "task": "multiple_choice",
                "image": path,
                "question": question,
                "choices": list(choices),
                "answer": answer,
                "ocr": ocr,
            }
        ]

    rows = []
    for question_file in sorted(questions_dir.glob("*.json"), key=_ai2d_sort_key):
        image_id = question_file.name.split(".")[0]
        if (keep is not None and image_id not in keep) or (drop is not None and image_id in drop):
            continue
        try:
            with open(question_file, encoding="utf-8") as file:
                data = json.load(file)
        except json.JSONDecodeError as error:
            data = _BadJSON(str(error))
        default_name = question_file.name[: -len(".json")]
        diagram = partial(parse_diagram, image_id=image_id, default_name=default_name)
        parsed = collector.parse(None, data, diagram, file=question_file)
        if parsed is None:
            continue
        questions, path, ocr = parsed
        for position, item in enumerate(questions.items()):
            question = partial(parse_question, path=path, ocr=ocr)
            rows.extend(collector.parse(position, item, question, file=question_file) or [])
    columns = ("id", "source", "task", "image", "question", "choices", "answer", "ocr")
    return collector.finish(rows, _columns(*columns, choices=_TEXT_CHOICES, answer=Value("int64")))


# Visual7W


def load_visual7w(
    json_path,
    image_root,
    kind: str = "telling",
    *,
    split: str | None = None,
    boxes_json=None,
    shuffle_seed: int | None = 0,
    source: str | None = None,
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """Visual7W: `dataset_v7w_telling.json` or `dataset_v7w_pointing.json` (`images`, each with `image_id`,
    `filename`, `split` and `qa_pairs` holding `qa_id`, `question`, `answer` and `multiple_choices`). Pointing answers
    and choices are box ids, resolved through a `boxes` list (`box_id`, `x`, `y`, `width`, `height`).

    Args:
        json_path: the telling or pointing JSON file.
        image_root: the folder of the images' `filename` (`v7w_{image_id}.jpg`).
        kind: `"telling"` (text options) or `"pointing"` (box options).
        split: only the images of this `split` (`"train"`, `"val"` or `"test"`); all by default.
        boxes_json: for pointing, a file with the `boxes` list (`v7w_pointing_answers.json`) when `json_path` has
            none.
        shuffle_seed: the options are the answer followed by the wrong choices, shuffled per question with this seed
            (and the question id); `None` keeps the answer first.
        source: the `source` column, `"visual7w_{kind}"` by default.
        skip_bad, report, check_images: see the module docstring. The unit of a bad record is an image entry (all
            its questions). Pointing boxes are clamped to 0 where negative, as in the reference, and with
            `check_images` clipped to the image, whose size is then kept in `image_size`. Without it `image_size`
            is `None`, the image opened by the collator gives the size, and a box reaching past the image makes
            `build_prompt` fail; so load pointing data for training with `check_images=True`.

    Returns:
        One `multiple_choice` row per question (`id`: the qa id) with `question`, `choices` (strings, or pixel XYXY
        boxes for pointing) and `answer` (the correct option's index).
    """
    if kind not in VISUAL7W_KINDS:
        raise ValueError(f"kind must be one of {VISUAL7W_KINDS}, got {kind!r}.")
    if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)):
        raise ValueError(f"shuffle_seed must be an integer or None, got {shuffle_seed!r}.")
    pointing = kind == "pointing"
    source = source if source is not None else f"visual7w_{kind}"
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a JSON object with an 'images' list")
    images = _top_list(data, "images", json_path)
    boxes = {}
    boxes_file = json_path
    if pointing:
        if boxes_json is not None:
            boxes_file = boxes_json
            box_list = _top_list(_read_json(boxes_json, dict, "a JSON object with a 'boxes' list"), "boxes", boxes_json)
        elif isinstance(data.get("boxes"), list):
            box_list = data["boxes"]
        else:
            raise ValueError(f"{json_path}: has no 'boxes' list; pass boxes_json (v7w_pointing_answers.json).")
        boxes = {box["box_id"]: box for box in box_list if isinstance(box, Mapping) and "box_id" in box}
    seen = set()

    def option_box(record: _Record, label: str, box_id, image_size) -> list[float]:
        record.check(label, box_id, "integer")
        box = boxes.get(box_id)
        if box is None:
            record.fail(label, f"is box {box_id}, which is not in the boxes of {boxes_file}")
        values = [record.get(key, "number", box, f"boxes[id={box_id}].{key}") for key in ("x", "y", "width", "height")]
        return _xywh_to_xyxy(record, f"boxes[id={box_id}]", values, image_size, clamp_negative=True, clip=True)

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        record.set_id(record.get("image_id", "id"))
        image_split = record.get("split", "text")
        seen.add(image_split)
        if split is not None and image_split != split:
            return []
        path = record.image(record.get("filename", "text"))
        image_size = record.image_size(path) if pointing else None
        qa_rows = []
        for position, qa in enumerate(record.get("qa_pairs", "list")):
            label = f"qa_pairs[{position}]"
            record.check(label, qa, "mapping")
            qa_id = record.get("qa_id", "id", qa, f"{label}.qa_id")
            question = record.get("question", "text", qa, f"{label}.question")
            wrong = record.get("multiple_choices", "list", qa, f"{label}.multiple_choices")
            if not wrong:
                record.fail(f"{label}.multiple_choices", "is empty")
            if pointing:
                answer = record.get("answer", "integer", qa, f"{label}.answer")
                options = [option_box(record, f"{label}.answer", answer, image_size)]
                options += [
                    option_box(record, f"{label}.multiple_choices[{n}]", box_id, image_size)
                    for n, box_id in enumerate(wrong)
                ]
            else:
                options = [record.get("answer", "text", qa, f"{label}.answer")]
                options += [
                    record.check(f"{label}.multiple_choices[{n}]", text, "text") for n, text in enumerate(wrong)
                ]
            order = list(range(len(options)))
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}:{qa_id}").shuffle(order)
            row = {
                "id": str(qa_id),
                "source": source,
                "task": "multiple_choice",
                "image": path,
                "question": question,
                "choices": [options[index] for index in order],
                "answer": order.index(0),
            }
            if pointing:
                row["image_size"] = image_size
            qa_rows.append(row)
        return qa_rows

    rows = []
    for index, entry in enumerate(images):
        rows.extend(collector.parse(index, entry, parse) or [])
    if split is not None and split not in seen:
        raise ValueError(f"{json_path}: no image is in split {split!r}; the file has {sorted(seen)}.")
    names = ("id", "source", "task", "image") + (("image_size",) if pointing else ()) + ("question", "choices")
    choices = _BOX_CHOICES if pointing else _TEXT_CHOICES
    return collector.finish(rows, _columns(*names, "answer", choices=choices, answer=Value("int64")))


# Registry


def _preset(loader: Callable, **defaults) -> Callable:
    def load(*args, **kwargs):
        return loader(*args, **{**defaults, **kwargs})

    load.__name__ = loader.__name__
    load.__doc__ = f"`{loader.__name__}` with the defaults {defaults}."
    return load


SOURCES = {
    "llava": load_llava,
    "llava_pretrain": _preset(load_llava, as_captioning=True),
    "coco_captions": load_coco_captions,
    "nocaps": load_nocaps,
    "textcaps": load_textcaps,
    "vqav2": load_vqav2,
    "gqa": load_gqa,
    "refcoco": load_refcoco,
    "refcoco+": _preset(load_refcoco, source="refcoco+"),
    "refcocog": _preset(load_refcoco, source="refcocog"),
    "textvqa": load_textvqa,
    "vsr": load_vsr,
    "pope": load_pope,
    "ai2d": load_ai2d,
    "visual7w": load_visual7w,
}


def load_source(name: str, **kwargs) -> Dataset:
    """Loads the source `name` of `SOURCES` with its loader's keyword arguments (paths included)."""
    if name not in SOURCES:
        raise ValueError(f"Unknown source {name!r}; known sources: {sorted(SOURCES)}.")
    return SOURCES[name](**kwargs)


# Images


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


# Mixtures


def _is_null(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype == "null"


def _unify(datasets: list[Dataset]) -> list[Dataset]:
    """The datasets with the same columns: the union of all columns in first-seen order, a missing column filled
    with `None`. A column whose type differs between datasets (`answer`: a string in vqa, a bool in
    image_text_match, an index in multiple_choice; `choices`: strings or boxes) is stored as JSON (the `Json`
    feature of datasets >= 4.7), so each row reads back its own Python value."""
    features: dict = {}
    for dataset in datasets:
        for name, feature in dataset.features.items():
            known = features.get(name)
            if known is None or _is_null(known):
                features[name] = feature
            elif known != feature and not _is_null(feature):
                if Json is None:
                    raise ValueError(
                        f"Column {name!r} has different types in the sources ({known} and {feature}); mixing them "
                        "stores it as JSON, which needs datasets >= 4.7."
                    )
                features[name] = Json()
    features = Features(features)
    aligned = []
    for dataset in datasets:
        for name, feature in features.items():
            if name not in dataset.column_names:
                dataset = dataset.add_column(name, [None] * len(dataset), feature=feature)
        dataset = dataset.select_columns(list(features))
        if dataset.features != features:
            dataset = dataset.cast(features)
        aligned.append(dataset)
    return aligned


def mix_sources(datasets_with_weights, seed: int, num_samples: int | None = None) -> Dataset:
    """A weighted mixture of datasets: each row comes from dataset `i` with probability `weight_i / sum(weights)`.

    The source of every row is drawn with `numpy.random.default_rng(seed)`; each dataset's rows are then taken in a
    seeded random order, reshuffled each time the dataset is used up (a dataset drawn more often than it has rows is
    repeated, one drawn less often is subsampled without repeats). This is `datasets.interleave_datasets` with
    probabilities, except that the length is `num_samples` and rows are shuffled within each source. The result
    selects rows of the concatenated datasets (an indices mapping, no copy). The same seed gives the same mixture.

    Columns are unified: the mixture has every column of every dataset, `None` where a dataset has none (the rows
    still build the same prompts: `build_prompt` treats `None` as missing). A column with different types in
    different datasets is stored as JSON and reads back each row's own value (see `_unify`).

    Args:
        datasets_with_weights: `(dataset, weight)` pairs; weights are non-negative numbers, not all 0 (datasets
            with weight 0 are left out).
        seed: the random seed.
        num_samples: the mixture's length; by default the total length of the datasets of positive weight.

    Returns:
        The mixture `Dataset`.
    """
    pairs = list(datasets_with_weights)
    if not pairs:
        raise ValueError("datasets_with_weights is empty; pass (dataset, weight) pairs.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    datasets, weights = [], []
    for position, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], Dataset):
            raise ValueError(f"datasets_with_weights[{position}] must be a (Dataset, weight) pair, got {_short(pair)}.")
        dataset, weight = pair
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"The weight of dataset {position} must be a finite number >= 0, got {weight!r}.")
        if weight == 0:
            continue
        if len(dataset) == 0:
            raise ValueError(f"Dataset {position} is empty but has weight {weight}.")
        datasets.append(dataset)
        weights.append(float(weight))
    if not datasets:
        raise ValueError("All weights are 0; give at least one dataset a positive weight.")
    lengths = [len(dataset) for dataset in datasets]
    if num_samples is None:
        num_samples = sum(lengths)
    elif isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}.")

    rng = np.random.default_rng(seed)
    probabilities = np.asarray(weights) / sum(weights)
    picks = rng.choice(len(datasets), size=int(num_samples), p=probabilities)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    indices = np.empty(int(num_samples), dtype=np.int64)
    for number, length in enumerate(lengths):
        positions = np.flatnonzero(picks == number)
        if len(positions) == 0:
            continue
        epochs = -(-len(positions) // length)
        order = np.concatenate([rng.permutation(length) for _ in range(epochs)])[: len(positions)]
        indices[positions] = offsets[number] + order
    return concatenate_datasets(_unify(datasets)).select(indices)


__all__ = [
    "FIELD_FEATURES",
    "KARPATHY_SPLITS",
    "VISUAL7W_KINDS",
    "load_llava",
    "load_coco_captions",
    "load_nocaps",
    "load_textcaps",
    "load_vqav2",
    "load_gqa",
    "load_refcoco",
    "load_textvqa",
    "load_vsr",
    "load_pope",
    "load_ai2d",
    "load_visual7w",
    "SOURCES",
    "load_source",
    "open_image",
    "mix_sources",
]
