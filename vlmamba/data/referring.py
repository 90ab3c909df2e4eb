# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Referring expression loader: RefCOCO, RefCOCO+ and RefCOCOg (`load_refcoco`, one loader for the refs pickle of each
and its COCO `instances.json`), as `grounding` rows with pixel XYXY boxes. `skip_bad`, `report` and `check_images`
("see the module docstring" in the loaders) work as the package docstring, `vlmamba.data`, describes under "Bad
input"."""

import pickle
from collections.abc import Mapping

from datasets import Dataset, Value

from .records import _check_pack, _Collector, _columns, _pack_by_image, _read_json, _Record, _top_list, _xywh_to_xyxy


def load_refcoco(
    refs_pickle,
    instances_json,
    image_root,
    split: str,
    *,
    per_object: bool = False,
    pack: bool = False,
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
        pack: the reference's training rows: one row per image holding every object of the split with its last
            sentence (an object named by several refs: the last ref's), in the refs' order, as `expressions` and
            `boxes` (one grounding turn each).
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        `grounding` rows (`id`: `"{ref_id}-{sent_id}"`, or the ref id with `per_object`) with `expression`, `box`
        (pixel XYXY, clipped to the image when it ends less than a pixel past it) and `image_size` (height, width).
        With `pack`, one row per image (`id`: `"{file stem}-0"`) with lists `expressions` and `boxes`.
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a refs split name such as 'train' or 'testA', got {split!r}.")
    if not isinstance(per_object, bool):
        raise ValueError(f"per_object must be a bool, got {per_object!r}.")
    _check_pack(pack, None)
    collector = _Collector(refs_pickle, source, image_root, skip_bad, report, check_images)
    try:
        with open(refs_pickle, "rb") as file:
            refs = pickle.load(file)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as error:
        raise ValueError(f"{refs_pickle}: not a readable refs pickle ({type(error).__name__}: {error}).") from None
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
        if per_object or pack:
            expressions = [(record.id, expressions[-1][1])]
        row = {"source": source, "task": "grounding", "image": path, "image_size": image_size, "box": box}
        if pack:
            row["ann_id"] = ann_id
        return [{**row, "id": key, "expression": text} for key, text in expressions]

    rows = []
    for index, data in enumerate(refs):
        rows.extend(collector.parse(index, data, parse) or [])
    if split not in seen:
        raise ValueError(f"{refs_pickle}: no ref is in split {split!r}; the file has {sorted(seen)}.")
    if pack:
        # One entry per object: a later ref of the same annotation replaces the earlier one, as in the reference.
        by_object = {}
        for row in rows:
            by_object[row["ann_id"]] = row
        fields = {"expression": "expressions", "box": "boxes"}
        rows = _pack_by_image(list(by_object.values()), fields, None, drop=("ann_id",))
        columns = _columns("id", "source", "task", "image", "image_size")
        columns.update(expressions=[Value("string")], boxes=[[Value("float64")]])
        return collector.finish(rows, columns)
    return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "expression", "box"))


__all__ = [
    "load_refcoco",
]
