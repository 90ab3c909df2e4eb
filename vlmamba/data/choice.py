# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Loaders of sources whose answer is a choice: VSR (`load_vsr`, true or false as `image_text_match`), AI2D diagrams
(`load_ai2d`, `multiple_choice` with OCR text) and Visual7W (`load_visual7w`, `multiple_choice` with text options, or
box options for pointing). `skip_bad`, `report` and `check_images` ("see the module docstring" in the loaders) work
as the package docstring, `vlmamba.data`, describes under "Bad input"."""

import json
import os
import random
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path

from datasets import Dataset, Value

from .records import (
    _BOX_CHOICES,
    _TEXT_CHOICES,
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


VISUAL7W_KINDS = ("telling", "pointing")


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


# AI2D


def _image_ids(value, name: str) -> set[str] | None:
    """AI2D image ids (`"12"`, `12` or `"12.png"` all mean image 12) from an iterable or a file of one id per line
    (the first comma-separated field, as in `ai2d_test_ids.csv`)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        value = [line.split(",")[0] for line in _read_text(value).split("\n") if line.strip()]
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
    keep_case: bool = True,
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
        keep_case: set `keep_case` on every row, so that the collator writes the questions without lower-casing them
            (they name the diagram's labels, "A", "B", by their case), as the reference trained and as vlmamba's AI2D
            evaluation prompts them.
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
            annotation = json.loads(_read_text(ocr_file))
        except ValueError as error:  # not UTF-8, or not JSON
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
                "keep_case": keep_case,
            }
        ]

    rows = []
    for question_file in sorted(questions_dir.glob("*.json"), key=_ai2d_sort_key):
        image_id = question_file.name.split(".")[0]
        if (keep is not None and image_id not in keep) or (drop is not None and image_id in drop):
            continue
        try:
            data = json.loads(_read_text(question_file))
        except ValueError as error:  # not UTF-8, or not JSON
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
    columns = ("id", "source", "task", "image", "question", "choices", "answer", "ocr", "keep_case")
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
    reference_boxes: bool = False,
    pack: bool = False,
    max_per_row: int | None = 3,
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
            (and the question id); `None` keeps the answer first. With `pack`, the seed shuffles as the reference
            did instead (see `pack`); `None` keeps the file's order.
        reference_boxes: pointing boxes as the reference computed them: `x1 = max(0, x)`, `y1 = max(0, y)`,
            `x2 = x1 + min(W, width)`, `y2 = y1 + min(H, height)`, not clipped, so a box may reach past the right or
            bottom border. Needs `check_images=True` (the image size) and, for training, a processor whose box format
            has `reference_size` (a box past the border is an error in the direct format). By default pointing
            boxes are clamped to 0 where negative and, with `check_images`, clipped to the image.
        pack: the reference's training rows: every question at every answer position (the wrong choices in the
            file's order with the answer inserted at position 0, 1, ..., n), and the questions of one image in rows
            of up to `max_per_row` questions, one row per position and group (`multiple_choice` with lists). With a
            `shuffle_seed`, each question's positions and the image's questions are shuffled first (seeded by the
            image id), as the reference shuffled them. All questions of an image must have as many choices.
        max_per_row: the questions per packed row (the reference: 3); `None` puts all questions of an image in one.
        source: the `source` column, `"visual7w_{kind}"` by default.
        skip_bad, report, check_images: see the module docstring. The unit of a bad record is an image entry (all
            its questions). Without `check_images` `image_size` is `None`, the image opened by the collator gives the
            size, and a box reaching past the image makes `build_prompt` fail; so load pointing data for training with
            `check_images=True`.

    Returns:
        One `multiple_choice` row per question (`id`: the qa id) with `question`, `choices` (strings, or pixel XYXY
        boxes for pointing) and `answer` (the correct option's index); with `pack`, rows of several questions
        (`id`: `"{image_id}-{n}"`) holding lists of each.
    """
    if kind not in VISUAL7W_KINDS:
        raise ValueError(f"kind must be one of {VISUAL7W_KINDS}, got {kind!r}.")
    if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)):
        raise ValueError(f"shuffle_seed must be an integer or None, got {shuffle_seed!r}.")
    for name, flag in (("reference_boxes", reference_boxes), ("pack", pack)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}.")
    _check_max_per_row(max_per_row)
    pointing = kind == "pointing"
    if reference_boxes and pointing and not check_images:
        raise ValueError("reference_boxes needs check_images=True: the reference's boxes depend on the image size.")
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
        if not reference_boxes:
            return _xywh_to_xyxy(record, f"boxes[id={box_id}]", values, image_size, clamp_negative=True, clip=True)
        x, y, width, height = (float(value) for value in values)
        if width < 0 or height < 0:
            record.fail(f"boxes[id={box_id}]", f"{_short(values)} has a negative width or height")
        # The reference clamps the corner and the size, never the far corner.
        x, y = max(0.0, x), max(0.0, y)
        return [x, y, x + min(float(image_size[1]), width), y + min(float(image_size[0]), height)]

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        image_id = record.set_id(record.get("image_id", "id"))
        image_split = record.get("split", "text")
        seen.add(image_split)
        if split is not None and image_split != split:
            return []
        path = record.image(record.get("filename", "text"))
        image_size = record.image_size(path) if pointing else None
        questions = []
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
            questions.append((str(qa_id), question, options))
        row = {"source": source, "task": "multiple_choice", "image": path}
        if pointing:
            row["image_size"] = image_size
        if pack:
            return _visual7w_packed(record, row, image_id, questions, shuffle_seed, max_per_row)
        qa_rows = []
        for qa_id, question, options in questions:
            order = list(range(len(options)))
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}:{qa_id}").shuffle(order)
            qa_rows.append(
                {
                    **row,
                    "id": qa_id,
                    "question": question,
                    "choices": [options[index] for index in order],
                    "answer": order.index(0),
                }
            )
        return qa_rows

    rows = []
    for index, entry in enumerate(images):
        rows.extend(collector.parse(index, entry, parse) or [])
    if split is not None and split not in seen:
        raise ValueError(f"{json_path}: no image is in split {split!r}; the file has {sorted(seen)}.")
    names = ("id", "source", "task", "image") + (("image_size",) if pointing else ()) + ("question", "choices")
    choices = _BOX_CHOICES if pointing else _TEXT_CHOICES
    if pack:
        columns = _columns(*names, "answer", question=[Value("string")], choices=[choices], answer=[Value("int64")])
    else:
        columns = _columns(*names, "answer", choices=choices, answer=Value("int64"))
    return collector.finish(rows, columns)


def _visual7w_packed(record: _Record, row: dict, image_id: str, questions, shuffle_seed, max_per_row) -> list[dict]:
    """The reference's training rows of one Visual7W image (see `load_visual7w`'s `pack`)."""
    counts = {len(options) for _, _, options in questions}
    if len(counts) > 1:
        record.fail("qa_pairs", f"have different numbers of choices {sorted(counts)}; packing needs one")
    rng = random.Random(f"{shuffle_seed}:{image_id}") if shuffle_seed is not None else None
    augmented = []
    for _, question, options in questions:
        answer, wrong = options[0], options[1:]
        # The answer inserted at each position of the wrong choices.
        variants = [
            (question, wrong[:position] + [answer] + wrong[position:], position) for position in range(len(options))
        ]
        if rng is not None:
            rng.shuffle(variants)
        augmented.append(variants)
    if rng is not None:
        rng.shuffle(augmented)
    rows = []
    for variant in range(len(augmented[0]) if augmented else 0):
        for group in _chunks([variants[variant] for variants in augmented], max_per_row):
            rows.append(
                {
                    **row,
                    "id": f"{image_id}-{len(rows)}",
                    "question": [question for question, _, _ in group],
                    "choices": [options for _, options, _ in group],
                    "answer": [position for _, _, position in group],
                }
            )
    return rows


# A-OKVQA

# A question of aokvqa_v1p0_train.json whose choices lack the "a"; the reference writes them so.
_AOKVQA_CHOICES_FIXED = {"bCjS888uSeyRMczZageqTp": ["n", "w", "a", "e"]}


def load_aokvqa(
    json_path,
    image_root,
    *,
    augment: bool = False,
    source: str = "aokvqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """A-OKVQA: `aokvqa_v1p0_{split}.json`, a JSON list of questions with `question_id`, `image_id`, `question`,
    `choices` and, except for test, `correct_choice_idx`, as multiple choice.

    Args:
        json_path: the split's JSON file.
        image_root: the folder of the COCO 2017 images `{image_id:012d}.jpg` (`train2017/`, `val2017/`, ...).
        augment: the reference's training rows: one row per option position, the correct answer swapped with the
            option at that position (`id`: `"{question_id}-{position}"`); needs `correct_choice_idx`.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `multiple_choice` row per question (`id`: the question id) with `question`, `choices` (the file's
        order) and `answer` (`correct_choice_idx`, `None` for test).
    """
    if not isinstance(augment, bool):
        raise ValueError(f"augment must be a bool, got {augment!r}.")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    records = _read_json(json_path, list, "a JSON list of questions")

    def parse(record: _Record) -> list[dict]:
        question_id = record.set_id(record.get("question_id", "id"))
        image_id = record.get("image_id", "integer")
        choices = _AOKVQA_CHOICES_FIXED.get(question_id) or record.get("choices", "list")
        if len(choices) < 2:
            record.fail("choices", f"must hold at least 2 options, got {_short(choices)}")
        choices = [record.check(f"choices[{n}]", choice, "text") for n, choice in enumerate(choices)]
        answer = record.get("correct_choice_idx", "integer", required=augment)
        if answer is not None and not 0 <= answer < len(choices):
            record.fail("correct_choice_idx", f"is {answer}, but there are {len(choices)} choices")
        row = {
            "id": question_id,
            "source": source,
            "task": "multiple_choice",
            "image": record.image(f"{image_id:012d}.jpg"),
            "question": record.get("question", "text"),
            "choices": choices,
            "answer": answer,
        }
        if not augment:
            return [row]
        rows = []
        for position in range(len(choices)):
            swapped = list(choices)
            swapped[position], swapped[answer] = choices[answer], choices[position]
            rows.append({**row, "id": f"{question_id}-{position}", "choices": swapped, "answer": position})
        return rows

    rows = []
    for index, data in enumerate(records):
        rows.extend(collector.parse(index, data, parse) or [])
    columns = ("id", "source", "task", "image", "question", "choices", "answer")
    return collector.finish(rows, _columns(*columns, choices=_TEXT_CHOICES, answer=Value("int64")))


__all__ = [
    "VISUAL7W_KINDS",
    "load_vsr",
    "load_ai2d",
    "load_visual7w",
    "load_aokvqa",
]
