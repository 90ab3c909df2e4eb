# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Loaders of region annotations: Visual Genome (`load_visual_genome`: region descriptions as `grounding` or
`dense_captioning`, question answers as `vqa`, several regions or questions per row as the reference trained) and GRIT
(`load_grit`, `grounded_captioning` from its noun chunks). `skip_bad`, `report` and `check_images` ("see the module
docstring" in the loaders) work as the package docstring, `vlmamba.data`, describes under "Bad input"."""

import json
import os
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from datasets import Dataset, Value
from transformers.utils import logging

from .records import (
    _BadJSON,
    _check_max_per_row,
    _chunks,
    _Collector,
    _columns,
    _read_json,
    _read_json_lines,
    _read_text,
    _Record,
    _short,
    _top_list,
    _xywh_to_xyxy,
)


logger = logging.get_logger(__name__)

VISUAL_GENOME_TASKS = ("grounding", "dense_captioning", "vqa")
# The reference's Visual Genome rows: up to 10 regions or questions of one image each, and only regions of at most
# 16384 square pixels (its filter keeps these, although its docstring says the opposite).
VISUAL_GENOME_PER_ROW = 10
VISUAL_GENOME_MAX_AREA = 16384
_BOX = [Value("float64")]


def _coco_ids(value) -> set[int] | None:
    """COCO image ids from an iterable, or the val images of Karpathy's `dataset_coco.json` (its `cocoid`)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        images = _top_list(_read_json(value, dict, "Karpathy's dataset_coco.json object"), "images", value)
        return {int(image["cocoid"]) for image in images if isinstance(image, dict) and image.get("split") == "val"}
    if not isinstance(value, Iterable):
        raise ValueError(f"exclude_coco_ids must be COCO ids or the path of dataset_coco.json, got {value!r}.")
    return {int(item) for item in value}


def load_visual_genome(
    annotations_json,
    image_data_json,
    image_root,
    task: str = "grounding",
    *,
    max_per_row: int | None = VISUAL_GENOME_PER_ROW,
    max_area: float | None = VISUAL_GENOME_MAX_AREA,
    exclude_coco_ids=None,
    reference_boxes: bool = False,
    source: str | None = None,
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """Visual Genome (v1.2): `region_descriptions.json` (a list of images, each with `id` and `regions` holding
    `region_id`, `phrase`, `x`, `y`, `width`, `height`) or `question_answers.json` (each with `id` and `qas` holding
    `qa_id`, `question`, `answer`), and `image_data.json` (`image_id`, `width`, `height`, `url`, `coco_id`).

    Args:
        annotations_json: the region descriptions (`grounding`, `dense_captioning`) or question answers (`vqa`).
        image_data_json: `image_data.json`; an image's file is the last two parts of its `url`
            (`VG_100K/1.jpg`, `VG_100K_2/...`).
        image_root: the folder holding `VG_100K/` and `VG_100K_2/`.
        task: `"grounding"` (phrase -> box), `"dense_captioning"` (box -> phrase) or `"vqa"`.
        max_per_row: regions or questions of one image per row, in the file's order (the reference: 10); `None`
            puts all of an image's in one row.
        max_area: leave out regions whose width x height exceeds this (the reference's filter, 16384); `None`
            keeps all. The count is logged.
        exclude_coco_ids: leave out these images (COCO ids, or the path of Karpathy's `dataset_coco.json`, whose val
            images the reference held out as its validation set). The count is logged.
        reference_boxes: boxes as the reference computed them: `x1 = max(0, x)`, `y1 = max(0, y)`, `x2 = x1 + width`,
            `y2 = y1 + height`, not clipped (for a processor whose box format has `reference_size`). By default the
            box is clamped to 0 and clipped to the image.
        source: the `source` column, `"visual_genome"` by default.
        skip_bad, report, check_images: see the module docstring. The unit of a bad record is an image entry.

    Returns:
        One row per image and group (`id`: `"{image_id}-{n}"`) with `image_size` and, for `grounding`, lists
        `expressions` and `boxes`; for `dense_captioning`, `boxes` and `phrases`; for `vqa`, `question` and `answer`.
    """
    if task not in VISUAL_GENOME_TASKS:
        raise ValueError(f"task must be one of {VISUAL_GENOME_TASKS}, got {task!r}.")
    _check_max_per_row(max_per_row)
    if max_area is not None and (isinstance(max_area, bool) or not isinstance(max_area, (int, float)) or max_area <= 0):
        raise ValueError(f"max_area must be a positive number of square pixels or None, got {max_area!r}.")
    if not isinstance(reference_boxes, bool):
        raise ValueError(f"reference_boxes must be a bool, got {reference_boxes!r}.")
    source = source if source is not None else "visual_genome"
    excluded_ids = _coco_ids(exclude_coco_ids)
    collector = _Collector(annotations_json, source, image_root, skip_bad, report, check_images)

    def parse_image_data(record: _Record):
        image_id = record.get("image_id", "integer")
        record.set_id(image_id)
        width, height = record.get("width", "integer"), record.get("height", "integer")
        if width <= 0 or height <= 0:
            record.fail(None, f"has a non-positive size {width}x{height}")
        url = record.get("url", "text")
        name = "/".join(url.rstrip("/").split("/")[-2:])
        return image_id, (name, [height, width], record.get("coco_id", "integer", required=False))

    image_data = {}
    image_list = _read_json(image_data_json, list, "a JSON list of images")
    for index, entry in enumerate(image_list):
        parsed = collector.parse(index, entry, parse_image_data, file=image_data_json)
        if parsed is not None:
            image_data[parsed[0]] = parsed[1]
    dropped = Counter()

    def box(record: _Record, label: str, region, image_size) -> list[float]:
        values = [record.get(key, "number", region, f"{label}.{key}") for key in ("x", "y", "width", "height")]
        if not reference_boxes:
            return _xywh_to_xyxy(record, label, values, image_size, clamp_negative=True, clip=True)
        x, y, width, height = (float(value) for value in values)
        if width < 0 or height < 0:
            record.fail(label, f"{_short(values)} has a negative width or height")
        x, y = max(0.0, x), max(0.0, y)
        return [x, y, x + width, y + height]

    def parse(record: _Record) -> list[dict]:
        image_id = record.get("id", "integer")
        record.set_id(image_id)
        if image_id not in image_data:
            record.fail("id", f"{image_id} is not an image of {image_data_json}")
        name, image_size, coco_id = image_data[image_id]
        if excluded_ids is not None and coco_id in excluded_ids:
            dropped["held-out image(s)"] += 1
            return []
        turns = []
        if task == "vqa":
            for position, qa in enumerate(record.get("qas", "list")):
                label = f"qas[{position}]"
                record.check(label, qa, "mapping")
                question = record.get("question", "text", qa, f"{label}.question")
                turns.append((question, record.get("answer", "text", qa, f"{label}.answer")))
        else:
            for position, region in enumerate(record.get("regions", "list")):
                label = f"regions[{position}]"
                record.check(label, region, "mapping")
                phrase = record.get("phrase", "string", region, f"{label}.phrase")
                region_box = box(record, label, region, image_size)
                if max_area is not None and region["width"] * region["height"] > max_area:
                    dropped["region(s) over max_area"] += 1
                    continue
                if not phrase.strip():
                    record.fail(f"{label}.phrase", "is empty")
                turns.append((phrase, region_box))
        row = {"source": source, "task": task, "image": record.image(name), "image_size": image_size}
        rows = []
        for number, group in enumerate(_chunks(turns, max_per_row)):
            first, second = [item for item, _ in group], [item for _, item in group]
            if task == "grounding":
                fields = {"expressions": first, "boxes": second}
            elif task == "dense_captioning":
                fields = {"boxes": second, "phrases": first}
            else:
                fields = {"question": first, "answer": second}
            rows.append({**row, "id": f"{image_id}-{number}", **fields})
        return rows

    annotations = _read_json(annotations_json, list, "a JSON list of images")
    rows = []
    for index, entry in enumerate(annotations):
        rows.extend(collector.parse(index, entry, parse) or [])
    if dropped:
        counts = ", ".join(f"{count} {what}" for what, count in dropped.items())
        logger.info(f"{source}: left out {counts} of {annotations_json}.")
    columns = _columns("id", "source", "task", "image", "image_size")
    if task == "grounding":
        columns.update(expressions=[Value("string")], boxes=[_BOX])
    elif task == "dense_captioning":
        columns.update(boxes=[_BOX], phrases=[Value("string")])
    else:
        columns.update(question=[Value("string")], answer=[Value("string")])
    return collector.finish(rows, columns)


# GRIT


def _grit_records(path) -> list[tuple[str, int | None, object, str | None]]:
    """`(file, row, record, image file or None)` of a GRIT folder (img2dataset's `{key}.json` files next to
    `{key}.jpg`), a JSON Lines file or a parquet file."""
    path = Path(path)
    if path.is_dir():
        records = []
        for sidecar in sorted(path.rglob("*.json")):
            try:
                data = json.loads(_read_text(sidecar))
            except ValueError as error:
                data = _BadJSON(str(error))
            records.append((str(sidecar), None, data, str(sidecar.with_suffix(".jpg"))))
        return records
    if path.suffix == ".parquet":
        import pyarrow.parquet as parquet

        try:
            table = parquet.read_table(path)
        except Exception as error:  # pyarrow raises several types for a bad file
            raise ValueError(f"{path}: not a readable parquet file ({type(error).__name__}: {error}).") from None
        return [(str(path), index, data, None) for index, data in enumerate(table.to_pylist())]
    return [(str(path), index, data, None) for index, data in _read_json_lines(path)]


def load_grit(
    path,
    image_root=None,
    *,
    source: str = "grit",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """GRIT: records with `caption`, `noun_chunks` (each `[start, end, x1, y1, x2, y2, score]`: character offsets
    into the caption and a box normalized by the image size) and `width`, `height` (the image's size), as
    img2dataset writes them next to the downloaded images, or as rows of a JSON Lines or parquet file with the
    image's `key`.

    Args:
        path: the img2dataset output folder (`{key}.json` and `{key}.jpg`, searched recursively; the image is the
            `.jpg` next to each `.json`), or a `.jsonl` / `.parquet` file.
        image_root: for a file, the folder of `{key}.jpg`; not used for a folder.
        source, skip_bad, report, check_images: see the module docstring. The row of a sidecar's record is `None`.

    Returns:
        One `grounded_captioning` row per record (`id`: the `key`) with `caption`, `entities` (one per noun chunk,
        its box in pixels of the `width` x `height` image, so that the processor's box format normalizes it) and
        `image_size`. A box is the noun chunk's own (the reference pairs the boxes of noun chunks that are not in
        caption order with the wrong chunk). Noun chunks whose spans partly overlap are an error (the reference's
        preparation rejected such records); chunks with the same span share one entity.
    """
    folder = Path(path).is_dir()
    if not folder and image_root is None:
        raise ValueError(f"{path}: a GRIT file needs image_root, the folder of its '{{key}}.jpg' images.")
    collector = _Collector(path, source, image_root if image_root is not None else path, skip_bad, report, check_images)

    def parse(record: _Record, image_file: str | None) -> list[dict]:
        record.mapping()
        key = record.set_id(record.get("key", "id", required=not folder) or Path(image_file).stem)
        caption = record.get("caption", "text")
        width, height = record.get("width", "integer"), record.get("height", "integer")
        if width <= 0 or height <= 0:
            record.fail(None, f"has a non-positive size {width}x{height}")
        chunks = record.get("noun_chunks", "list")
        if not chunks:
            record.fail("noun_chunks", "is empty")
        by_span: dict[tuple[int, int], list] = {}
        for position, chunk in enumerate(chunks):
            label = f"noun_chunks[{position}]"
            if not isinstance(chunk, (list, tuple)) or len(chunk) != 7:
                record.fail(label, f"must be [start, end, x1, y1, x2, y2, score], got {_short(chunk)}")
            for value in chunk:
                record.check(label, value, "number")
            start, end = int(chunk[0]), int(chunk[1])
            if start != chunk[0] or end != chunk[1] or not 0 <= start < end <= len(caption):
                record.fail(label, f"has span {chunk[:2]}, not within the {len(caption)}-character caption")
            x1, y1, x2, y2 = chunk[2:6]
            if not (0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1):
                record.fail(label, f"has box {list(chunk[2:6])}, not a normalized XYXY box")
            by_span.setdefault((start, end), []).append([x1 * width, y1 * height, x2 * width, y2 * height])
        spans = sorted(by_span)
        for before, after in zip(spans, spans[1:]):
            if after[0] < before[1]:
                record.fail("noun_chunks", f"have overlapping spans {list(before)} and {list(after)}")
        # A sidecar's image path is absolute, which `record.image` keeps as it is.
        image = record.image(image_file if image_file is not None else f"{key}.jpg")
        return [
            {
                "id": record.id,
                "source": source,
                "task": "grounded_captioning",
                "image": image,
                "image_size": [height, width],
                "caption": caption,
                "entities": [{"span": list(span), "boxes": by_span[span]} for span in spans],
            }
        ]

    rows = []
    for file, index, data, image_file in _grit_records(path):
        rows.extend(collector.parse(index, data, partial(parse, image_file=image_file), file=file) or [])
    entities = [{"span": [Value("int64")], "boxes": [_BOX]}]
    return collector.finish(
        rows, _columns("id", "source", "task", "image", "image_size", "caption", "entities", entities=entities)
    )


__all__ = [
    "VISUAL_GENOME_TASKS",
    "VISUAL_GENOME_PER_ROW",
    "VISUAL_GENOME_MAX_AREA",
    "load_visual_genome",
    "load_grit",
]
