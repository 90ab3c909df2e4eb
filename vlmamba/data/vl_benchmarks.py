# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Loaders of the benchmarks VL-Mamba reports (LLaVA-1.5's suite) that can be scored offline: ScienceQA
(`load_scienceqa`, `multiple_choice` on the questions with an image), MME (`load_mme`, yes/no `vqa`, two questions
per image) and MMBench (`load_mmbench`, `multiple_choice` asked once per rotation of the options, CircularEval).
MM-Vet is not here: its open answers are graded by an LLM judge (GPT-4), which does not run offline.
`skip_bad`, `report` and `check_images` ("see the module docstring" in the loaders) work as the package docstring,
`vlmamba.data`, describes under "Bad input".

Files expected:

- ScienceQA: `problems.json` (problem id -> `question`, `choices`, `answer` (the correct choice's index), `hint`,
  `image` (`"image.png"` or `null`), `split`, ...) and `pid_splits.json` (split name -> problem ids). Images:
  `{split}/{pid}/{image}` under `image_root` (the official `images/` folder holding `train/`, `val/`, `test/`).
- MME: the `MME_Benchmark_release_version/` folder, one folder per subtask (`MME_SUBTASKS`). A subtask folder holds
  either `images/` and `questions_answers_YN/` (`artwork`, `celebrity`, `landmark`, `posters`, `scene`), or its
  images and question files side by side (the others). Each image `{name}.jpg` (or `.png`) has a question file
  `{name}.txt` of two lines `question<TAB>answer`, the answer `Yes` or `No`. Images: the same paths under
  `image_root` (by default the release folder itself).
- MMBench: a dev TSV (`mmbench_dev_20230712.tsv`) with a header and the columns `index`, `question`, `hint`, `A`,
  `B`, `C`, `D` (trailing options empty when a question has fewer), `answer` (a letter), `category`, `image` (the
  image as base64) and others (`l2-category`, `split`, ...) that are not read. The official TSVs also hold
  CircularEval's passes of each question as rows of their own, numbered `index + k * 1_000_000` for pass `k`. An
  `image` cell holding a row's index instead of base64 stands for that row's image. The images are decoded and
  written under `image_root` as `{index}.jpg` (or `.png`, ...), each once: a file already there with the same bytes
  is kept.

Prompt and row choices:

- The hint (ScienceQA's and MMBench's `hint`, when not empty) goes before the question as `"Context: {hint}\\n"`, as
  LLaVA's ScienceQA evaluation writes it (its MMBench script writes the hint alone): the `multiple_choice` template
  has no context field. `hint` keeps it on its own.
- ScienceQA: the questions without an image are left out (`image_only=False` keeps them, with `image` `None`).
- MME: one `vqa` row per question, `answer` `"yes"` or `"no"`, `category` the subtask and `group` the image
  (`"{subtask}/{name}"`), which MME's accuracy+ scores as a unit.
- MMBench (CircularEval): a question with N options is asked N times and counts as right only when every pass is.
  A question whose passes the file holds is asked as the file writes them; any other is asked with its options
  rotated by one place per pass: pass `k` lists option `k` first, the options before it moved to the end. One row
  per pass (`id` `"{index}/{k}"`), `group` the question's index, `category` the first pass's.

Bad input: besides the package's rules, an MME question file without exactly two `question<TAB>answer` lines or
without its image, an MMBench row with a bad base64 image, a gap between options, an answer that is not one of its
options or a pass without its question (row `index % 1_000_000`) raise a `ValueError` naming the file and the row
(the question file and its line for MME).
"""

import base64
import binascii
import csv
import hashlib
import io
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from datasets import Dataset, Value
from PIL import Image, UnidentifiedImageError

from .records import _TEXT_CHOICES, _Collector, _columns, _read_json, _read_text, _Record, _short


# LLaVA's ScienceQA prompt writes the hint before the question after this label.
CONTEXT_PREFIX = "Context: "
MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_SUBTASKS = MME_PERCEPTION + MME_COGNITION
# MME asks two yes/no questions about each image.
MME_QUESTIONS_PER_IMAGE = 2
MME_QUESTIONS_FOLDER = "questions_answers_YN"
MME_IMAGES_FOLDER = "images"
# The official MMBench TSVs number pass k of question `index` as `index + k * 1_000_000` (OpenCompass groups the rows
# of a question by `index % 1e6`).
MMBENCH_PASS_OFFSET = 1_000_000
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png"}


def _with_context(question: str, hint: str | None) -> str:
    return f"{CONTEXT_PREFIX}{hint.strip()}\n{question}" if hint and hint.strip() else question


# ScienceQA


def load_scienceqa(
    problems_json,
    image_root,
    *,
    pid_splits=None,
    split: str = "test",
    image_only: bool = True,
    source: str = "scienceqa",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """ScienceQA: `problems.json` and, for the split's problem ids, `pid_splits.json` (see the module docstring).

    Args:
        problems_json: the `problems.json` file.
        image_root: the folder holding `{split}/{pid}/image.png` (the official `images/`).
        pid_splits: the `pid_splits.json` file; the problems are its `split` list, in its order. Without it, the
            problems whose own `split` field is `split`, in the file's order.
        split: `"test"` (ScienceQA-IMG's), `"val"`, `"train"`, or another list of `pid_splits.json` (`"minitest"`).
        image_only: only the questions with an image (ScienceQA-IMG); `False` keeps the others with `image` `None`.
        source, skip_bad, report, check_images: see the module docstring. The row of a bad record is the problem's
            position in the split's list (or in `problems.json`).

    Returns:
        One `multiple_choice` row per problem (`id`: the problem id) with `question` (the hint before it as
        context), `choices`, `answer` (the correct choice's index) and `hint`.
    """
    if not isinstance(image_only, bool):
        raise ValueError(f"image_only must be a bool, got {image_only!r}.")
    collector = _Collector(problems_json, source, image_root, skip_bad, report, check_images)
    problems = _read_json(problems_json, dict, "a JSON object mapping problem ids to problems")
    if pid_splits is not None:
        splits = _read_json(pid_splits, dict, "a JSON object mapping split names to lists of problem ids")
        if split not in splits:
            raise ValueError(f"{pid_splits}: has no split {split!r}; it has {sorted(splits)}.")
        if not isinstance(splits[split], list):
            raise ValueError(
                f"{pid_splits}: split {split!r} must be a list of problem ids, got {_short(splits[split])}."
            )
        items = [(str(pid), problems.get(str(pid))) for pid in splits[split]]
    else:
        items = list(problems.items())
    seen = set()

    def parse(record: _Record, pid: str) -> list[dict]:
        record.set_id(pid)
        if record.data is None:
            record.fail(None, f"is in split {split!r} of {pid_splits} but not in {problems_json}")
        record.mapping()
        problem_split = record.get("split", "text")
        seen.add(problem_split)
        if pid_splits is None and problem_split != split:
            return []
        image = record.get("image", "text", required=False)
        if image is None and image_only:
            return []
        question = record.get("question", "text")
        choices = record.get("choices", "list")
        if not choices:
            record.fail("choices", "is empty")
        for position, choice in enumerate(choices):
            record.check(f"choices[{position}]", choice, "text")
        answer = record.get("answer", "integer")
        if not 0 <= answer < len(choices):
            record.fail("answer", f"is {answer}, but there are {len(choices)} choices")
        hint = record.get("hint", "string", required=False) or ""
        return [
            {
                "id": record.id,
                "source": source,
                "task": "multiple_choice",
                "image": record.image(f"{problem_split}/{pid}/{image}") if image is not None else None,
                "question": _with_context(question, hint),
                "choices": list(choices),
                "answer": answer,
                "hint": hint,
            }
        ]

    rows = []
    for index, (pid, problem) in enumerate(items):
        rows.extend(collector.parse(index, problem, partial(parse, pid=pid)) or [])
    if pid_splits is None and split not in seen:
        raise ValueError(f"{problems_json}: no problem is in split {split!r}; the file has {sorted(seen)}.")
    columns = ("id", "source", "task", "image", "question", "choices", "answer", "hint")
    return collector.finish(
        rows, _columns(*columns, choices=_TEXT_CHOICES, answer=Value("int64"), hint=Value("string"))
    )


# MME


def _image_names(folder: Path) -> dict[str, list[str]]:
    """The image files of `folder` by stem."""
    names: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file():
            names.setdefault(path.stem, []).append(path.name)
    return names


def load_mme(
    annotation_dir,
    image_root,
    *,
    subtasks: Sequence[str] = MME_SUBTASKS,
    source: str = "mme",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """MME: the release folder, one folder per subtask (see the module docstring for the two layouts).

    Args:
        annotation_dir: `MME_Benchmark_release_version/`.
        image_root: the folder holding the subtask folders' images at the same relative paths (usually
            `annotation_dir` itself).
        subtasks: the subtask folders to read (`MME_SUBTASKS`, all 14, by default); each must exist.
        source, skip_bad, report, check_images: see the module docstring. The unit of a bad record is a question
            file (both questions of an image); its message names the line.

    Returns:
        One `vqa` row per question (`id`: `"{subtask}/{name}/{line}"`, the line 0 or 1) with `question`, `answer`
        (`"yes"` or `"no"`), `category` (the subtask) and `group` (`"{subtask}/{name}"`, the image).
    """
    root = Path(annotation_dir)
    if not root.is_dir():
        raise ValueError(
            f"{annotation_dir}: not a folder (MME's layout: one folder per subtask, {', '.join(MME_SUBTASKS)})."
        )
    if isinstance(subtasks, str) or not subtasks or any(subtask not in MME_SUBTASKS for subtask in subtasks):
        raise ValueError(
            f"subtasks must be a non-empty list of MME subtasks ({', '.join(MME_SUBTASKS)}), got {subtasks!r}."
        )
    collector = _Collector(root, source, image_root, skip_bad, report, check_images)

    def parse(record: _Record, subtask: str, image_folder: str, images: dict[str, list[str]]) -> list[dict]:
        path = Path(record.data)
        group = record.set_id(f"{subtask}/{path.stem}")
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except UnicodeDecodeError as error:
            record.fail(None, f"is not UTF-8 text (byte {error.start}: {error.reason})")
        questions = []
        for number, line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
            line = line.strip()
            if not line:
                continue
            question, tab, answer = line.rpartition("\t")
            if not tab or not question.strip():
                record.fail(None, f"line {number} is not 'question<TAB>answer': {_short(line)}")
            if answer.strip().lower() not in ("yes", "no"):
                record.fail(None, f"line {number}: the answer must be Yes or No, got {_short(answer)}")
            questions.append((question.strip(), answer.strip().lower()))
        if len(questions) != MME_QUESTIONS_PER_IMAGE:
            record.fail(None, f"has {len(questions)} question line(s); MME asks {MME_QUESTIONS_PER_IMAGE} per image")
        names = images.get(path.stem, [])
        if len(names) != 1:
            found = "no image" if not names else f"{len(names)} images ({', '.join(names)})"
            record.fail(None, f"has {found} named {path.stem!r} in {Path(image_root) / image_folder}; one is needed")
        image = record.image(f"{image_folder}/{names[0]}")
        return [
            {
                "id": f"{group}/{line}",
                "source": source,
                "task": "vqa",
                "image": image,
                "question": question,
                "answer": answer,
                "category": subtask,
                "group": group,
            }
            for line, (question, answer) in enumerate(questions)
        ]

    rows = []
    for subtask in subtasks:
        folder = root / subtask
        if not folder.is_dir():
            raise ValueError(f"{root}: has no {subtask!r} folder (MME's layout: one folder per subtask).")
        split_layout = (folder / MME_QUESTIONS_FOLDER).is_dir()
        questions_folder = folder / MME_QUESTIONS_FOLDER if split_layout else folder
        image_folder = f"{subtask}/{MME_IMAGES_FOLDER}" if split_layout else subtask
        if not (Path(image_root) / image_folder).is_dir():
            raise ValueError(f"MME subtask {subtask!r}: image folder not found: {Path(image_root) / image_folder}.")
        images = _image_names(Path(image_root) / image_folder)
        files = sorted(questions_folder.glob("*.txt"))
        if not files:
            raise ValueError(f"{questions_folder}: holds no question files (.txt) for MME subtask {subtask!r}.")
        parse_file = partial(parse, subtask=subtask, image_folder=image_folder, images=images)
        for path in files:
            rows.extend(collector.parse(None, str(path), parse_file, file=path) or [])
    columns = ("id", "source", "task", "image", "question", "answer", "category", "group")
    return collector.finish(
        rows, _columns(*columns, answer=Value("string"), category=Value("string"), group=Value("string"))
    )


# MMBench


def _read_tsv(path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows (lists of cells) of a TSV file; quoted fields may hold tabs and newlines, blank lines
    are not rows."""
    text = _read_text(path)
    # Base64 images are longer than the csv module's default field limit, which is process-wide: restored after.
    limit = csv.field_size_limit(2**31 - 1)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: is empty; expected a header line.") from None
        except csv.Error as error:
            raise ValueError(f"{path}: not a TSV file ({error}).") from None
        rows = []
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                raise ValueError(f"{path}: row {len(rows)} is not valid TSV ({error}).") from None
            if cells:
                rows.append(cells)
    finally:
        csv.field_size_limit(limit)
    return [name.strip() for name in header], rows


def _write_image(path: str, content: bytes) -> None:
    """Writes `content` to `path` unless the file already holds it (atomically: a killed run leaves no half file)."""
    if os.path.isfile(path) and os.path.getsize(path) == len(content):
        with open(path, "rb") as file:
            if file.read() == content:
                return
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def _rotated(question: dict, k: int) -> dict:
    """`question` with its options rotated by `k` places: option `k` first, the options before it at the end."""
    choices = question["choices"]
    return {**question, "choices": choices[k:] + choices[:k], "answer": (question["answer"] - k) % len(choices)}


def load_mmbench(
    tsv_path,
    image_root,
    *,
    source: str = "mmbench",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """MMBench: a dev TSV with base64 images, asked with CircularEval (see the module docstring).

    Args:
        tsv_path: the TSV file, e.g. `mmbench_dev_20230712.tsv`.
        image_root: the folder the images are written to (created when missing).
        source, skip_bad, report, check_images: see the module docstring. The row of a bad record is its position
            among the TSV's rows (0 is the first after the header).

    Returns:
        One `multiple_choice` row per pass (`id`: `"{index}/{k}"`) with `question` (the hint before it as context),
        `choices`, `answer` (the correct option's index), `hint`, `group` (the question's index) and `category`.
    """
    header, records = _read_tsv(tsv_path)
    missing = [name for name in ("index", "question", "answer", "image", "A", "B") if name not in header]
    if missing:
        raise ValueError(f"{tsv_path}: the header has no column {', '.join(map(repr, missing))}; it has {header}.")
    letters = []
    for letter in map(chr, range(ord("A"), ord("Z") + 1)):
        if letter not in header:
            break
        letters.append(letter)
    collector = _Collector(tsv_path, source, image_root, skip_bad, report, check_images)
    os.makedirs(image_root, exist_ok=True)
    cells_by_row = [
        dict(zip(header, (cell if cell.strip() else None for cell in cells))) if len(cells) == len(header) else cells
        for cells in records
    ]
    # Rows whose `image` is base64 (not an index), by index, for the cells that name another row's image.
    image_cells = {
        data["index"].strip(): data["image"]
        for data in cells_by_row
        if isinstance(data, dict) and data.get("index") and data.get("image") and not data["image"].strip().isdigit()
    }
    # The file of each image written, by the SHA-1 of its base64 (the passes of a question may repeat its image).
    written: dict[bytes, str] = {}

    def image_file(record: _Record, cell: str) -> str:
        owner = record.id
        if cell.strip().isdigit():
            owner = cell.strip()
            if owner not in image_cells:
                record.fail("image", f"names row index {owner} for its image, which no row with a base64 image has")
            cell = image_cells[owner]
        cell = "".join(cell.split())
        key = hashlib.sha1(cell.encode()).digest()
        if key not in written:
            try:
                content = base64.b64decode(cell, validate=True)
            except (binascii.Error, ValueError) as error:
                record.fail("image", f"is not valid base64 ({error})")
            try:
                with Image.open(io.BytesIO(content)) as image:  # reads the header only
                    suffix = _SUFFIX_OF_FORMAT.get(image.format, f".{str(image.format).lower()}")
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                record.fail("image", f"decodes to {len(content)} bytes that are not an image ({type(error).__name__})")
            name = f"{owner}{suffix}"
            _write_image(os.path.join(collector.image_root, name), content)
            written[key] = name
        return record.image(written[key])

    def parse(record: _Record) -> dict:
        if not isinstance(record.data, dict):
            record.fail(None, f"has {len(record.data)} fields, but the header has {len(header)}")
        index = record.get("index", "text").strip()
        record.set_id(index)
        if not index.isdigit():
            record.fail("index", f"must be a non-negative integer, got {_short(index)}")
        options = []
        for letter in letters:
            value = record.data.get(letter)
            if value is None:
                break
            options.append(value.strip())
        for letter in letters[len(options) :]:
            if record.data.get(letter) is not None:
                record.fail(letter, f"follows the empty option {letters[len(options)]}; options are given from A on")
        if len(options) < 2:
            record.fail("B", "is empty; a question has at least two options")
        answer = record.get("answer", "text").strip().upper()
        if answer not in letters[: len(options)]:
            record.fail("answer", f"must be the letter of one of its {len(options)} options, got {_short(answer)}")
        hint = record.get("hint", "text", required=False)
        return {
            "index": int(index),
            "question": _with_context(record.get("question", "text").strip(), hint),
            "choices": options,
            "answer": letters.index(answer),
            "hint": hint.strip() if hint else "",
            "category": (record.get("category", "text", required=False) or "").strip(),
            "image": image_file(record, record.get("image", "text")),
        }

    def reject(record: _Record, index: int, message: str):
        record.set_id(index)
        record.fail("index", message)

    parsed = {}
    for position, data in enumerate(cells_by_row):
        question = collector.parse(position, data, parse)
        if question is None:
            continue
        if question["index"] in parsed:
            earlier = parsed[question["index"]][0]
            collector.parse(
                position, data, partial(reject, index=question["index"], message=f"is also row {earlier}'s")
            )
            continue
        parsed[question["index"]] = (position, question)
    # Pass k of each question: the file's rows, or else the rotations of the question's own row.
    passes: dict[int, list[tuple[int, dict]]] = {}
    for index, (position, question) in sorted(parsed.items()):
        group, k = index % MMBENCH_PASS_OFFSET, index // MMBENCH_PASS_OFFSET
        if group not in parsed:
            message = f"is pass {k} of question {group}, which is missing or malformed"
            collector.parse(position, cells_by_row[position], partial(reject, index=index, message=message))
            continue
        passes.setdefault(group, []).append((k, question))
    for group, questions in passes.items():
        if len(questions) == 1:
            passes[group] = [(k, _rotated(questions[0][1], k)) for k in range(len(questions[0][1]["choices"]))]

    rows = []
    for group, questions in passes.items():
        first = questions[0][1]
        for k, question in questions:
            rows.append(
                {
                    "id": f"{group}/{k}",
                    "source": source,
                    "task": "multiple_choice",
                    "image": question["image"],
                    "question": question["question"],
                    "choices": question["choices"],
                    "answer": question["answer"],
                    "hint": question["hint"],
                    "group": str(group),
                    "category": first["category"],
                }
            )
    columns = ("id", "source", "task", "image", "question", "choices", "answer", "hint", "group", "category")
    features = dict(choices=_TEXT_CHOICES, answer=Value("int64"), hint=Value("string"), group=Value("string"))
    return collector.finish(rows, _columns(*columns, **features, category=Value("string")))


__all__ = [
    "CONTEXT_PREFIX",
    "MME_PERCEPTION",
    "MME_COGNITION",
    "MME_SUBTASKS",
    "MME_QUESTIONS_PER_IMAGE",
    "MMBENCH_PASS_OFFSET",
    "load_scienceqa",
    "load_mme",
    "load_mmbench",
]
