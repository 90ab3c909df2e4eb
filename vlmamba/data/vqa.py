# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Visual question answering loaders: VQAv2 (`load_vqav2`), GQA (`load_gqa`), TextVQA (`load_textvqa`, with optional OCR
tokens) and the POPE yes/no hallucination subsets (`load_pope`); every row is a `vqa` example. `skip_bad`, `report`
and `check_images` ("see the module docstring" in the loaders) work as the package docstring, `vlmamba.data`,
describes under "Bad input"."""

from functools import partial

from datasets import Dataset, Value

from .records import _Collector, _columns, _most_common, _read_json, _read_json_lines, _Record, _short, _top_list


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


__all__ = [
    "load_vqav2",
    "load_gqa",
    "load_textvqa",
    "load_pope",
]
