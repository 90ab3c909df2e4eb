# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Visual question answering loaders: VQAv2 (`load_vqav2`), GQA (`load_gqa`), TextVQA (`load_textvqa`, with optional OCR
tokens) and the POPE yes/no hallucination subsets (`load_pope`); every row is a `vqa` example. `skip_bad`, `report`
and `check_images` ("see the module docstring" in the loaders) work as the package docstring, `vlmamba.data`,
describes under "Bad input"."""

from collections import Counter
from functools import partial

from datasets import Dataset, Value
from transformers.utils import logging

from .records import (
    _check_pack,
    _Collector,
    _columns,
    _most_common,
    _pack_by_image,
    _read_json,
    _read_json_lines,
    _Record,
    _short,
    _top_list,
)


logger = logging.get_logger(__name__)

# The reference's packing: up to 20 QA pairs of one image per training example (VQAv2, GQA).
REFERENCE_QUESTIONS_PER_ROW = 20
_VQA_PACKED = {"question": "question", "answer": "answer"}


def _vqa_columns(packed: bool, *names: str) -> dict:
    """The columns of a vqa loader's rows; packed rows hold lists of questions and answers."""
    if packed:
        names = tuple(name for name in names if name != "answers")
        return _columns(*names, question=[Value("string")], answer=[Value("string")])
    return _columns(*names, answer=Value("string"))


# VQAv2


def load_vqav2(
    questions_json,
    annotations_json,
    image_root,
    *,
    pack: bool = False,
    max_per_row: int | None = REFERENCE_QUESTIONS_PER_ROW,
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
        pack: the reference's training rows: the questions of each image (in the file's order) in rows of up to
            `max_per_row` QA turns (the reference: 20), `question` and `answer` as lists; needs the annotations.
        max_per_row: QA turns per packed row; `None` puts all questions of an image in one.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question` and, with annotations, `answer` (the most
        frequent answer) and `answers` (all of them, in the file's order). With `pack`, one row per image and group
        (`id`: `"{image file stem}-{n}"`) with lists `question` and `answer`, and no `answers`.
    """
    _check_pack(pack, max_per_row)
    if pack and annotations_json is None:
        raise ValueError("pack needs annotations_json: packed rows are training rows with answers.")
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
    if pack:
        rows = _pack_by_image(rows, _VQA_PACKED, max_per_row, drop=("answers",))
    names = ("answer", "answers") if annotations_json is not None else ()
    return collector.finish(rows, _vqa_columns(pack, "id", "source", "task", "image", "question", *names))


# GQA


def load_gqa(
    questions_json,
    image_root,
    *,
    pack: bool = False,
    max_per_row: int | None = REFERENCE_QUESTIONS_PER_ROW,
    source: str = "gqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """GQA: a questions file, a JSON object keyed by question id, each with `imageId`, `question` and `answer`.

    Args:
        questions_json: e.g. `train_balanced_questions.json` or `testdev_balanced_questions.json`.
        image_root: the folder of `{imageId}.jpg`.
        pack: the reference's training rows: the questions of each image (in the file's order) in rows of up to
            `max_per_row` QA turns (the reference: 20), `question` and `answer` as lists.
        max_per_row: QA turns per packed row; `None` puts all questions of an image in one.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question` and `answer`; with `pack`, one row per
        image and group (`id`: `"{imageId}-{n}"`) with lists of both.
    """
    _check_pack(pack, max_per_row)
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
    if pack:
        rows = _pack_by_image(rows, _VQA_PACKED, max_per_row)
    return collector.finish(rows, _vqa_columns(pack, "id", "source", "task", "image", "question", "answer"))


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


# OCR-VQA

OCRVQA_SPLITS = {"train": 1, "val": 2, "test": 3}
OCRVQA_IMAGE_NAMES = ("url", "id")


def load_ocrvqa(
    json_path,
    image_root,
    split: str = "train",
    *,
    image_names: str = "url",
    drop_shared_images: bool = False,
    keep_images_json=None,
    pack: bool = False,
    source: str = "ocrvqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """OCR-VQA: `dataset.json`, a JSON object keyed by record id, each with `imageURL`, `questions`, `answers` (lists
    of equal length) and `split` (1 train, 2 val, 3 test).

    Args:
        json_path: `dataset.json`.
        image_root: the folder of the book covers.
        split: `"train"`, `"val"` or `"test"`.
        image_names: `"url"`: the file name is the last part of `imageURL` (as the reference downloaded them);
            `"id"`: `{record id}.jpg` (as LLaVA's download script saves them).
        drop_shared_images: leave out the records of the split whose `imageURL` another record of the split shares
            (they disagree in their annotations), as the reference did; the count is logged.
        keep_images_json: a JSON object from `imageURL` to `true`/`false` (the reference's image filter output:
            covers under 350 px on a side or mostly one colour are `false`); records whose image is `false` are left
            out (the count is logged) and an image missing from it is an error.
        pack: all QA pairs of a record in one row (the reference's training rows), `question` and `answer` as lists.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: `"{record id}-{n}"`) with `question` and `answer`; with `pack`, one row per
        record (`id`: the record id) with lists of both.
    """
    if split not in OCRVQA_SPLITS:
        raise ValueError(f"split must be one of {sorted(OCRVQA_SPLITS)}, got {split!r}.")
    if image_names not in OCRVQA_IMAGE_NAMES:
        raise ValueError(f"image_names must be one of {OCRVQA_IMAGE_NAMES}, got {image_names!r}.")
    _check_pack(pack, None)
    if not isinstance(drop_shared_images, bool):
        raise ValueError(f"drop_shared_images must be a bool, got {drop_shared_images!r}.")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    records = _read_json(json_path, dict, "a JSON object of records keyed by id")
    keep = None
    if keep_images_json is not None:
        keep = _read_json(keep_images_json, dict, "a JSON object from image URL to true/false")
    in_split = [(index, key, data) for index, (key, data) in enumerate(records.items())]
    in_split = [item for item in in_split if isinstance(item[2], dict) and item[2].get("split") == OCRVQA_SPLITS[split]]
    urls = Counter(data.get("imageURL") for _, _, data in in_split)
    dropped = Counter()

    def parse(record: _Record, key: str) -> list[dict]:
        record.set_id(key)
        url = record.get("imageURL", "text")
        if drop_shared_images and urls[url] > 1:
            dropped["shared"] += 1
            return []
        if keep is not None:
            if url not in keep:
                record.fail("imageURL", f"{url!r} is not in {keep_images_json}")
            if not keep[url]:
                dropped["filtered"] += 1
                return []
        questions = record.get("questions", "list")
        answers = record.get("answers", "list")
        if len(questions) != len(answers):
            record.fail("answers", f"has {len(answers)} item(s) for {len(questions)} questions")
        if not questions:
            record.fail("questions", "is empty")
        questions = [record.check(f"questions[{n}]", text, "text") for n, text in enumerate(questions)]
        answers = [record.check(f"answers[{n}]", text, "text") for n, text in enumerate(answers)]
        name = url.rstrip("/").rsplit("/", 1)[-1] if image_names == "url" else f"{key}.jpg"
        row = {"source": source, "task": "vqa", "image": record.image(name)}
        if pack:
            return [{**row, "id": key, "question": questions, "answer": answers}]
        return [
            {**row, "id": f"{key}-{n}", "question": question, "answer": answer}
            for n, (question, answer) in enumerate(zip(questions, answers))
        ]

    rows = []
    for index, key, data in in_split:
        rows.extend(collector.parse(index, data, partial(parse, key=key)) or [])
    if dropped:
        logger.info(
            f"{source}: left out {dropped['shared']} record(s) with a shared image and {dropped['filtered']} whose "
            f"image the filter rejects ({json_path}, split {split!r})."
        )
    return collector.finish(rows, _vqa_columns(pack, "id", "source", "task", "image", "question", "answer"))


# DocVQA and InfographicVQA


def _load_document_vqa(
    json_path, image_root, *, image_field, upper_first, pack, source, skip_bad, report, check_images
) -> Dataset:
    """The DocVQA / InfographicVQA reader (see `load_docvqa`)."""
    _check_pack(pack, None)
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    records = _top_list(_read_json(json_path, dict, "a JSON object with a 'data' list"), "data", json_path)

    def parse(record: _Record) -> list[dict]:
        record.set_id(record.get("questionId", "id"))
        question = record.get("question", "text").strip()
        if upper_first:
            question = question[0].upper() + question[1:]
        row = {
            "id": record.id,
            "source": source,
            "task": "vqa",
            "image": record.image(record.get(image_field, "text")),
            "question": question,
            "keep_case": True,
        }
        answers = record.get("answers", "list", required=False)
        if answers is not None:
            if not answers:
                record.fail("answers", "is empty")
            answers = [record.check(f"answers[{n}]", answer, "text") for n, answer in enumerate(answers)]
            row.update(answer=_most_common(answers), answers=answers)
        elif pack:
            record.fail("answers", "is missing (packed rows are training rows with answers)")
        return [row]

    rows = []
    for index, entry in enumerate(records):
        rows.extend(collector.parse(index, entry, parse) or [])
    if pack:
        rows = _pack_by_image(rows, _VQA_PACKED, None, drop=("answers",))
    names = ("id", "source", "task", "image", "question", "answer", "answers", "keep_case")
    return collector.finish(rows, _vqa_columns(pack, *names))


def load_docvqa(
    json_path,
    image_root,
    *,
    pack: bool = False,
    source: str = "docvqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """DocVQA (the RRC release): `{train,val}_v1.0_withQT.json` or `test_v1.0.json`, a JSON object whose `data` list
    holds `questionId`, `question`, `image` (`documents/{name}.png`) and, except for test, `answers`.

    Args:
        json_path: the split's JSON file.
        image_root: the split's folder, which holds `documents/`.
        pack: the questions of each document page in one row (the reference's training rows), `question` and
            `answer` as lists.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        One `vqa` row per question (`id`: the question id) with `question` (its first letter upper-cased, as in the
        reference), `answer` (the most frequent answer), `answers` and `keep_case` (the reference does not
        lower-case DocVQA text); with `pack`, one row per page (`id`: `"{file stem}-0"`) with lists `question` and
        `answer`.
    """
    return _load_document_vqa(
        json_path,
        image_root,
        image_field="image",
        upper_first=True,
        pack=pack,
        source=source,
        skip_bad=skip_bad,
        report=report,
        check_images=check_images,
    )


def load_infovqa(
    json_path,
    image_root,
    *,
    pack: bool = False,
    source: str = "infovqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """InfographicVQA (the RRC release): `infographicsVQA_{split}_v1.0.json`, a JSON object whose `data` list holds
    `questionId`, `question`, `image_local_name` and, except for test, `answers`.

    Args:
        json_path: the split's JSON file.
        image_root: the folder of the infographics (`image_local_name`).
        pack: the questions of each infographic in one row (the reference's training rows), `question` and
            `answer` as lists.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        As `load_docvqa`, except that the question is kept as written (the reference computes an upper-cased first
        letter for InfographicVQA but writes the original question).
    """
    return _load_document_vqa(
        json_path,
        image_root,
        image_field="image_local_name",
        upper_first=False,
        pack=pack,
        source=source,
        skip_bad=skip_bad,
        report=report,
        check_images=check_images,
    )


__all__ = [
    "load_vqav2",
    "load_gqa",
    "load_textvqa",
    "load_pope",
    "OCRVQA_SPLITS",
    "OCRVQA_IMAGE_NAMES",
    "load_ocrvqa",
    "load_docvqa",
    "load_infovqa",
]
