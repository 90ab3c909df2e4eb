# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Benchmark evaluation: batched greedy generation over the reference's benchmarks, resumable, scored with
`vlmamba.evaluation.metrics` (the library side of `vlmamba evaluate`).

`BENCHMARKS` names each benchmark, the `vlmamba.data` loader that reads it and its files, the prompt, the decoding
length, how the answer is read from the generated text and which metric scores it. `evaluate_benchmark` runs one:

1. It loads the rows (the first `limit` ones with `limit`) and checks that their images exist.
2. It answers the rows in batches with `generate_answers` (the library's one inference path): each row's prompt is
   written by the processor (`build_prompt(for_generation=True)`, with the benchmark's prompt variant), tokenized
   segment by segment as in training, left-padded, continued by greedy `generate()` and cut at the first eos.
3. The answer is read as the benchmark says: a caption (newlines removed), a short answer (one final "." removed: the
   reference cut at ".<eos>") or the first box that `processor.post_process_grounding` read (pixels of the original
   image, `None` when there is none).
4. Each batch is appended to `<output_dir>/<benchmark>.predictions.jsonl` and flushed: one JSON object per sample
   with `id`, `image`, `prompt`, `generated` (the raw answer), `prediction` and `references`.
5. The metric scores all predictions; `<output_dir>/<benchmark>.scores.json` gets the metric's outputs, the counts,
   the model and the settings.

Resuming: the scores file is written with `"complete": false` before generation starts. A rerun with the same output
directory reads the predictions file, keeps the samples already done and generates only the others; a last line cut
off by a killed run is dropped and its sample redone. The model, `instruction_first` and `max_new_tokens` must be
those of the first run, and `limit` the same or larger (or `None`), unless `overwrite=True` starts afresh.

Data layout under `data_root` (the official downloads' file names); image folders are under `image_root`, by
default `data_root`. Any file or folder can be given instead (`annotations`, by loader argument; `layout_lines()`
lists them):

- `coco`: `coco/dataset_coco.json` (Karpathy's, test split); images `coco/images/` (holding `val2014/`).
- `nocaps`: `nocaps/nocaps_val_4500_captions.json`; images `nocaps/images/`.
- `textcaps`: `textcaps/TextCaps_0.1_val.json`; images `textvqa/train_images/` (TextVQA's, which TextCaps uses).
- `vqav2`: `vqav2/v2_OpenEnded_mscoco_val2014_questions.json`, `vqav2/v2_mscoco_val2014_annotations.json`; images
  `coco/images/val2014/`.
- `gqa`: `gqa/testdev_balanced_questions.json`; images `gqa/images/`.
- `v7w_telling`, `v7w_pointing`: `visual7w/dataset_v7w_telling.json`, `visual7w/dataset_v7w_pointing.json` (test
  split; pointing takes an optional `boxes_json`); images `visual7w/images/`.
- `vsr`: `vsr/test.jsonl` (the random split's test file); images `vsr/images/`.
- `pope_adversarial`, `pope_popular`, `pope_random`: `pope/coco_pope_{subset}.json`; images `coco/images/val2014/`.
- `refcoco_testa`, `refcoco_testb`, `refcoco+_testa`, `refcoco+_testb`, `refcocog_test`: `{dataset}/refs(unc).p`
  (`refcocog/refs(umd).p`) and `{dataset}/instances.json`; images `coco/images/train2014/`.
- `textvqa`: `textvqa/TextVQA_0.5.1_val.json` (optional `ocr_json`: Rosetta OCR tokens when the file has none);
  images `textvqa/train_images/`.
- `ai2d`: the `ai2d/` folder (`questions/`, `annotations/`) and `ai2d/ai2d_test_ids.csv`; images `ai2d/images/`.

Choices where the reference differs or is silent:

- RefCOCO*: every referring expression is a sample (the standard protocol); the reference kept one per object.
- Batched generation with left padding instead of one sample at a time (the same tokens: tested).
- Visual7W pointing, which the reference's script skipped, is scored like telling, with the training template.
"""

import json
import math
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .. import data
from ..models.processing_vlmamba import generate_answers
from ..models.tasks import MULTIPLE_CHOICE_LETTERS, TASKS


ANSWER_FORMS = ("caption", "short", "box")
REFERENCE_FIELDS = ("references", "answers", "answer", "letter", "box")
# The settings a resumed run must share with the run that wrote the predictions.
RESUME_SETTINGS = ("model", "instruction_first", "max_new_tokens", "limit")
# The scores `results_table` shows for each metric.
MAIN_SCORES = {
    "cider": ("cider",),
    "vqa_accuracy": ("vqa_accuracy",),
    "exact_match": ("exact_match",),
    "grounding_accuracy": ("grounding_accuracy",),
    "pope": ("accuracy", "f1"),
    "multiple_choice": ("accuracy",),
    "image_text_match": ("accuracy",),
}
IMAGES_KEY = "images"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its data, prompt, decoding and scoring.

    Args:
        name: the benchmark's name (a key of `BENCHMARKS`).
        description: the data and split, for people.
        loader: the `vlmamba.data` loader that reads the files.
        files: `(loader argument, path under the data root)` pairs, the main file first.
        images: the image folder under the image root (the loader's `image_root`).
        task: the task of the loader's rows.
        max_new_tokens: the greedy decoding length (the reference's, per benchmark).
        answer: how the generated text is read: `"caption"`, `"short"` or `"box"` (see the module docstring).
        metric: the `vlmamba.evaluation.metrics` name.
        reference: the row field the metric compares with: `"references"`, `"answers"`, `"answer"`, `"box"`, or
            `"letter"` (the letter of the option index in `answer`).
        loader_kwargs: further loader arguments (split, kind, ...).
        optional_files: loader arguments that take a file only when one is given (`annotations`).
        prompt: `build_prompt` keywords of the benchmark's prompt variant.
    """

    name: str
    description: str
    loader: Callable
    files: tuple[tuple[str, str], ...]
    images: str
    task: str
    max_new_tokens: int
    answer: str
    metric: str
    reference: str
    loader_kwargs: Mapping = field(default_factory=dict)
    optional_files: tuple[str, ...] = ()
    prompt: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Benchmark {self.name!r}: task must be one of {TASKS}, got {self.task!r}.")
        if self.answer not in ANSWER_FORMS:
            raise ValueError(f"Benchmark {self.name!r}: answer must be one of {ANSWER_FORMS}, got {self.answer!r}.")
        if self.reference not in REFERENCE_FIELDS:
            raise ValueError(
                f"Benchmark {self.name!r}: reference must be one of {REFERENCE_FIELDS}, got {self.reference!r}."
            )
        if self.metric not in MAIN_SCORES:
            raise ValueError(
                f"Benchmark {self.name!r}: metric must be one of {tuple(MAIN_SCORES)}, got {self.metric!r}."
            )

    @property
    def file_arguments(self) -> tuple[str, ...]:
        """The loader arguments that name files: required ones, then optional ones."""
        return tuple(argument for argument, _ in self.files) + self.optional_files


def _captioning(
    name: str,
    description: str,
    loader: Callable,
    file: tuple[str, str],
    images: str,
    max_new_tokens: int,
    **loader_kwargs,
) -> Benchmark:
    return Benchmark(
        name=name,
        description=description,
        loader=loader,
        files=(file,),
        images=images,
        task="captioning",
        max_new_tokens=max_new_tokens,
        answer="caption",
        metric="cider",
        reference="references",
        loader_kwargs=loader_kwargs,
    )


def _pope(subset: str) -> Benchmark:
    return Benchmark(
        name=f"pope_{subset}",
        description=f"POPE on COCO, {subset} subset",
        loader=data.load_pope,
        files=(("jsonl_path", f"pope/coco_pope_{subset}.json"),),
        images="coco/images/val2014",
        task="vqa",
        max_new_tokens=120,
        answer="short",
        metric="pope",
        reference="answer",
        loader_kwargs={"source": f"pope_{subset}"},
        # "{instruction}\n{Question}\n" as one string.
        prompt={"vqa_format": "plain", "merge_turns": True},
    )


def _refcoco(name: str, dataset: str, refs: str, split: str, description: str) -> Benchmark:
    return Benchmark(
        name=name,
        description=description,
        loader=data.load_refcoco,
        files=(("refs_pickle", f"{dataset}/{refs}"), ("instances_json", f"{dataset}/instances.json")),
        images="coco/images/train2014",
        task="grounding",
        max_new_tokens=120,
        answer="box",
        metric="grounding_accuracy",
        reference="box",
        loader_kwargs={"split": split, "source": dataset},
    )


def _visual7w(kind: str) -> Benchmark:
    pointing = kind == "pointing"
    return Benchmark(
        name=f"v7w_{kind}",
        description=f"Visual7W {kind}, test",
        loader=data.load_visual7w,
        files=(("json_path", f"visual7w/dataset_v7w_{kind}.json"),),
        images="visual7w/images",
        task="multiple_choice",
        max_new_tokens=20,
        answer="short",
        metric="multiple_choice",
        reference="letter",
        # Pointing options are pixel boxes, clipped to the image, whose size is then read.
        loader_kwargs={"kind": kind, "split": "test", "check_images": pointing},
        optional_files=("boxes_json",) if pointing else (),
    )


BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        _captioning(
            "coco",
            "COCO captions, Karpathy test split",
            data.load_coco_captions,
            ("karpathy_json", "coco/dataset_coco.json"),
            "coco/images",
            40,
            split="test",
        ),
        _captioning(
            "nocaps",
            "NoCaps validation, all domains",
            data.load_nocaps,
            ("json_path", "nocaps/nocaps_val_4500_captions.json"),
            "nocaps/images",
            40,
        ),
        _captioning(
            "textcaps",
            "TextCaps validation",
            data.load_textcaps,
            ("json_path", "textcaps/TextCaps_0.1_val.json"),
            "textvqa/train_images",
            15,
            per_caption=False,
        ),
        Benchmark(
            name="vqav2",
            description="VQAv2 validation",
            loader=data.load_vqav2,
            files=(
                ("questions_json", "vqav2/v2_OpenEnded_mscoco_val2014_questions.json"),
                ("annotations_json", "vqav2/v2_mscoco_val2014_annotations.json"),
            ),
            images="coco/images/val2014",
            task="vqa",
            max_new_tokens=15,
            answer="short",
            metric="vqa_accuracy",
            reference="answers",
        ),
        Benchmark(
            name="gqa",
            description="GQA test-dev, balanced",
            loader=data.load_gqa,
            files=(("questions_json", "gqa/testdev_balanced_questions.json"),),
            images="gqa/images",
            task="vqa",
            max_new_tokens=20,
            answer="short",
            metric="exact_match",
            reference="answer",
            prompt={"merge_turns": True},
        ),
        _visual7w("telling"),
        Benchmark(
            name="vsr",
            description="VSR, random split, test",
            loader=data.load_vsr,
            files=(("jsonl_path", "vsr/test.jsonl"),),
            images="vsr/images",
            task="image_text_match",
            max_new_tokens=120,
            answer="short",
            metric="image_text_match",
            reference="answer",
            prompt={"merge_turns": True},
        ),
        _pope("adversarial"),
        _pope("popular"),
        _pope("random"),
        _refcoco("refcoco_testa", "refcoco", "refs(unc).p", "testA", "RefCOCO (UNC), testA"),
        _refcoco("refcoco_testb", "refcoco", "refs(unc).p", "testB", "RefCOCO (UNC), testB"),
        _refcoco("refcoco+_testa", "refcoco+", "refs(unc).p", "testA", "RefCOCO+ (UNC), testA"),
        _refcoco("refcoco+_testb", "refcoco+", "refs(unc).p", "testB", "RefCOCO+ (UNC), testB"),
        _refcoco("refcocog_test", "refcocog", "refs(umd).p", "test", "RefCOCOg (UMD), test"),
        _visual7w("pointing"),
        Benchmark(
            name="textvqa",
            description="TextVQA validation, OCR tokens in the prompt",
            loader=data.load_textvqa,
            files=(("json_path", "textvqa/TextVQA_0.5.1_val.json"),),
            images="textvqa/train_images",
            task="vqa",
            max_new_tokens=20,
            answer="short",
            metric="vqa_accuracy",
            reference="answers",
            optional_files=("ocr_json",),
            prompt={"ocr_tokens": True, "merge_turns": True},
        ),
        Benchmark(
            name="ai2d",
            description="AI2D, the reference's test diagrams",
            loader=data.load_ai2d,
            files=(("annotation_dir", "ai2d"), ("ids", "ai2d/ai2d_test_ids.csv")),
            images="ai2d/images",
            task="multiple_choice",
            max_new_tokens=10,
            answer="short",
            metric="multiple_choice",
            reference="letter",
            # The reference keeps the case of AI2D questions (diagram labels are letters).
            prompt={"normalize_text": "keep_case"},
        ),
    )
}


def get_benchmark(benchmark: str | Benchmark) -> Benchmark:
    """A `Benchmark` by name (a key of `BENCHMARKS`), or the given one."""
    if isinstance(benchmark, Benchmark):
        return benchmark
    if benchmark not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {benchmark!r}; known benchmarks: {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[benchmark]


def benchmark_paths(
    benchmark: str | Benchmark, data_root=None, image_root=None, annotations: Mapping | None = None
) -> tuple[dict[str, Path], Path]:
    """The files and image folder of a benchmark: `({loader argument: path}, image folder)`.

    Args:
        benchmark: a name of `BENCHMARKS` or a `Benchmark`.
        data_root: the folder of the layout (module docstring); the default paths are under it.
        image_root: the root of the image folders; `data_root` by default.
        annotations: paths that replace the layout's, by loader argument (`{"karpathy_json": ...}`; optional files
            such as `ocr_json` are used only when given here), and `"images"` for the image folder itself.

    Raises:
        ValueError: an unknown key in `annotations`, or a path that is neither given nor under a root. Whether the
            files exist is checked by `evaluate_benchmark`.
    """
    benchmark = get_benchmark(benchmark)
    annotations = dict(annotations or {})
    known = (*benchmark.file_arguments, IMAGES_KEY)
    unknown = sorted(set(annotations) - set(known))
    if unknown:
        raise ValueError(
            f"Benchmark {benchmark.name!r}: unknown annotation key(s) {unknown}; its files are {', '.join(known)}."
        )
    image_root = image_root if image_root is not None else data_root
    paths = {}
    for argument, relative in benchmark.files:
        if argument in annotations:
            paths[argument] = Path(annotations[argument])
        elif data_root is None:
            raise ValueError(
                f"Benchmark {benchmark.name!r}: give a data root (holding {relative}) or the path of {argument!r}."
            )
        else:
            paths[argument] = Path(data_root) / relative
    for argument in benchmark.optional_files:
        if annotations.get(argument) is not None:
            paths[argument] = Path(annotations[argument])
    if IMAGES_KEY in annotations:
        images = Path(annotations[IMAGES_KEY])
    elif image_root is None:
        raise ValueError(f"Benchmark {benchmark.name!r}: give an image root (holding {benchmark.images}) or 'images'.")
    else:
        images = Path(image_root) / benchmark.images
    return paths, images


def load_benchmark(benchmark: str | Benchmark, data_root=None, image_root=None, annotations=None) -> list[dict]:
    """The rows of a benchmark (see `benchmark_paths` for the arguments), after checking that its files exist.

    Raises:
        ValueError: a missing file or folder (naming the benchmark and the path), a malformed annotation file (from
            the loader), no rows, or two rows with the same id.
    """
    benchmark = get_benchmark(benchmark)
    paths, images = benchmark_paths(benchmark, data_root, image_root, annotations)
    for argument, path in paths.items():
        if not path.exists():
            raise ValueError(
                f"Benchmark {benchmark.name!r}: {argument} not found: {path} (see the data layout of "
                f"`vlmamba.evaluation`, or give the path: --annotations {benchmark.name}.{argument}=PATH)."
            )
    if not images.is_dir():
        raise ValueError(
            f"Benchmark {benchmark.name!r}: image folder not found: {images} (set the image root, or give the folder: "
            f"--annotations {benchmark.name}.images=DIR)."
        )
    try:
        files = {argument: str(path) for argument, path in paths.items()}
        dataset = benchmark.loader(**files, image_root=str(images), **benchmark.loader_kwargs)
    except (ValueError, OSError, pickle.UnpicklingError) as error:
        raise ValueError(f"Benchmark {benchmark.name!r}: {error}") from error
    rows = [dataset[index] for index in range(len(dataset))]
    if not rows:
        raise ValueError(f"Benchmark {benchmark.name!r}: {paths[benchmark.files[0][0]]} holds no samples.")
    seen = set()
    for row in rows:
        if row["id"] in seen:
            raise ValueError(
                f"Benchmark {benchmark.name!r}: two samples have the id {row['id']!r}; ids must be unique."
            )
        seen.add(row["id"])
    return rows


def reference_of(benchmark: Benchmark, row: Mapping):
    """What the metric compares the prediction of `row` with (see `Benchmark.reference`)."""
    field_name = "answer" if benchmark.reference == "letter" else benchmark.reference
    value = row.get(field_name)
    if value is None or (benchmark.reference in ("references", "answers") and len(value) == 0):
        raise ValueError(
            f"Benchmark {benchmark.name!r}: sample {row['id']!r} has no {field_name!r} to score against (is the "
            "annotation file a test split without answers?)."
        )
    if benchmark.reference == "letter":
        return MULTIPLE_CHOICE_LETTERS[value]
    if benchmark.reference == "box":
        return [float(coordinate) for coordinate in value]
    return list(value) if benchmark.reference in ("references", "answers") else value


def read_answer(benchmark: Benchmark, answer: Mapping):
    """The prediction in a `generate_answers` answer: a caption or a short answer read from its `text`, or its first
    box (pixel XYXY, `None` without box; the boxes were read by `post_process_grounding`). Never raises on the
    text."""
    text = answer["text"]
    if benchmark.answer == "caption":
        # The reference removed newlines and the "##" a model may write after one.
        return " ".join(text.replace("\n##", "\n").split())
    if benchmark.answer == "short":
        text = text.strip()
        return text[:-1].rstrip() if text.endswith(".") else text
    boxes = answer.get("boxes") or []
    return list(boxes[0]) if boxes else None


def _model_name(model, model_name) -> str | None:
    if model_name is not None:
        return str(model_name)
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(name) if name else None


def read_predictions(path: Path, benchmark_name: str) -> list[dict]:
    """The records of a predictions file. A last line that does not parse (a run killed while writing it) is
    dropped and the file rewritten without it; any other bad line is an error naming the file and line."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    records, kept = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            if number == len(lines):
                break
            raise ValueError(
                f"Benchmark {benchmark_name!r}: {path} line {number} is not valid JSON ({error}); fix or remove the "
                "line, or pass overwrite=True (--overwrite) to start afresh."
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or "prediction" not in record:
            raise ValueError(
                f"Benchmark {benchmark_name!r}: {path} line {number} is not a prediction record (a JSON object with a "
                f"string 'id' and a 'prediction'): {line[:80]!r}."
            )
        records.append(record)
        kept.append(line)
    text = b"".join(line + b"\n" for line in kept)
    if text != raw:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(text)
        os.replace(temporary, path)
    return records


def _check_settings(path: Path, settings: dict, benchmark_name: str):
    if not path.is_file():
        raise ValueError(
            f"Benchmark {benchmark_name!r}: predictions exist but {path} (the settings they were made with) does not; "
            "pass overwrite=True (--overwrite) to start afresh."
        )
    try:
        previous = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"Benchmark {benchmark_name!r}: cannot read {path}: {error}") from None
    differences = []
    for key in RESUME_SETTINGS:
        old, new = previous.get(key), settings[key]
        # A larger limit (or none) only adds samples after those done.
        if key == "limit" and (new is None or (old is not None and new >= old)):
            continue
        if old != new:
            differences.append(f"{key}: {old!r} before, {new!r} now")
    if differences:
        raise ValueError(
            f"Benchmark {benchmark_name!r}: the predictions in {path.parent} were made with other settings ("
            f"{'; '.join(differences)}). Use another output directory, or pass overwrite=True (--overwrite)."
        )


def _write_json(path: Path, content: dict):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _open_image(benchmark: Benchmark, row: Mapping):
    try:
        return data.open_image(row["image"], row=row["id"])
    except ValueError as error:
        raise ValueError(f"Benchmark {benchmark.name!r}: {error}") from None


def _check_images(benchmark: Benchmark, rows: Sequence[Mapping]):
    missing = sorted({row["image"] for row in rows if not os.path.isfile(row["image"])})
    if missing:
        raise ValueError(
            f"Benchmark {benchmark.name!r}: {len(missing)} image file(s) not found, e.g. {missing[0]} (set the image "
            f"root, or give the folder: --annotations {benchmark.name}.images=DIR)."
        )


def generate_batch(
    model, processor, benchmark: Benchmark, rows: Sequence[Mapping], instruction_first: bool, max_new_tokens: int
) -> list[dict]:
    """Greedy answers to a batch of rows (one `generate_answers` call): one dict per row with `id`, `image`,
    `prompt`, `generated` (the text before the eos), `prediction` and `references`."""
    examples = []
    for row in rows:
        image = _open_image(benchmark, row)
        size = tuple(row["image_size"]) if row.get("image_size") else (image.height, image.width)
        examples.append({**row, "image": image, "image_size": size})
    try:
        answers = generate_answers(
            model, processor, examples, max_new_tokens=max_new_tokens, batch_size=len(examples),
            instruction_first=instruction_first, **benchmark.prompt,
        )
    except ValueError as error:
        raise ValueError(f"Benchmark {benchmark.name!r}: {error}") from None
    return [
        {
            "id": row["id"],
            "image": row["image"],
            "prompt": answer["prompt"],
            "generated": answer["text"],
            "prediction": read_answer(benchmark, answer),
            "references": reference_of(benchmark, row),
        }
        for row, answer in zip(rows, answers)
    ]


def score_predictions(benchmark: Benchmark, predictions: list, references: list) -> dict:
    """The benchmark's metric (`vlmamba.evaluation.metrics`) over the predictions."""
    from .metrics import load

    return load(benchmark.metric).compute(predictions=predictions, references=references)


def evaluate_benchmark(
    model,
    processor,
    benchmark: str | Benchmark,
    data_root=None,
    *,
    output_dir,
    annotations: Mapping | None = None,
    image_root=None,
    batch_size: int = 8,
    limit: int | None = None,
    instruction_first: bool | None = None,
    max_new_tokens: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device=None,
    model_name: str | None = None,
) -> dict:
    """Evaluates a model on one benchmark (see the module docstring), resuming from `output_dir`.

    Args:
        model: a Mamba-VL / Pythia-VL model (anything with a `generate` that takes `input_ids`, `attention_mask`,
            `pixel_values` and returns the prompt followed by the new tokens).
        processor: its `VLMambaProcessor`.
        benchmark: a name of `BENCHMARKS` or a `Benchmark`.
        data_root, annotations, image_root: where the files are (see `benchmark_paths`).
        output_dir: the folder of the predictions and scores files (created if needed).
        batch_size: samples per `generate()` call.
        limit: only the first `limit` samples.
        instruction_first: the prompt layout; by default the processor's (and the model config's) setting.
        max_new_tokens: the decoding length; the benchmark's by default.
        overwrite: delete this benchmark's earlier predictions and scores instead of resuming.
        progress: a tqdm progress bar.
        device: move the model there first (e.g. `"cuda"`).
        model_name: the model named in the scores; the model's `name_or_path` by default.

    Returns:
        The scores file's content: `benchmark`, `metric`, `scores` (the metric's outputs), `counts` (`samples`,
        `generated` by this call, `resumed`, and `no_box` for box answers), `model`, `settings`, `files`, `images`,
        `predictions` (the file), `complete`, `seconds`.
    """
    benchmark = get_benchmark(benchmark)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
    if max_new_tokens is None:
        max_new_tokens = benchmark.max_new_tokens
    elif isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer or None, got {max_new_tokens!r}.")
    if instruction_first is None:
        instruction_first = processor.instruction_first
    elif not isinstance(instruction_first, bool):
        raise ValueError(f"instruction_first must be a bool or None, got {instruction_first!r}.")
    if device is not None:
        model = model.to(device)
    if hasattr(model, "eval"):
        model.eval()
    start = time.perf_counter()

    paths, images = benchmark_paths(benchmark, data_root, image_root, annotations)
    rows = load_benchmark(benchmark, data_root, image_root, annotations)
    if limit is not None:
        rows = rows[:limit]
    references = {row["id"]: reference_of(benchmark, row) for row in rows}

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions_path = output_dir / f"{benchmark.name}.predictions.jsonl"
    scores_path = output_dir / f"{benchmark.name}.scores.json"
    settings = {
        "model": _model_name(model, model_name),
        "instruction_first": instruction_first,
        "max_new_tokens": max_new_tokens,
        "limit": limit,
        "batch_size": batch_size,
        "prompt": dict(benchmark.prompt),
    }
    done: dict[str, dict] = {}
    if overwrite:
        predictions_path.unlink(missing_ok=True)
        scores_path.unlink(missing_ok=True)
    elif predictions_path.exists():
        _check_settings(scores_path, settings, benchmark.name)
        for number, record in enumerate(read_predictions(predictions_path, benchmark.name), start=1):
            if record["id"] not in references:
                raise ValueError(
                    f"Benchmark {benchmark.name!r}: {predictions_path} line {number} has id {record['id']!r}, which "
                    "is not a sample of this run (other annotation files?). Use another output directory, or pass "
                    "overwrite=True (--overwrite)."
                )
            done[record["id"]] = record
    result = {
        "benchmark": benchmark.name,
        "description": benchmark.description,
        "metric": benchmark.metric,
        "scores": None,
        "counts": {"samples": len(rows), "generated": 0, "resumed": len(done)},
        "model": settings["model"],
        "settings": settings,
        "files": {argument: str(path) for argument, path in paths.items()},
        "images": str(images),
        "predictions": str(predictions_path),
        "complete": False,
    }
    _write_json(scores_path, result)

    todo = [row for row in rows if row["id"] not in done]
    _check_images(benchmark, todo)
    if benchmark.prompt.get("ocr_tokens"):
        missing = [row["id"] for row in todo if row.get("ocr_tokens") is None]
        if missing:
            raise ValueError(
                f"Benchmark {benchmark.name!r}: {len(missing)} sample(s) have no OCR tokens (e.g. {missing[0]!r}); "
                f"give the Rosetta OCR file: --annotations {benchmark.name}.ocr_json=PATH."
            )
    with (
        open(predictions_path, "a", encoding="utf-8") as file,
        tqdm(total=len(rows), initial=len(done), desc=benchmark.name, unit="sample", disable=not progress) as bar,
    ):
        for first in range(0, len(todo), batch_size):
            batch = todo[first : first + batch_size]
            for record in generate_batch(model, processor, benchmark, batch, instruction_first, max_new_tokens):
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
                done[record["id"]] = record
            file.flush()
            result["counts"]["generated"] += len(batch)
            bar.update(len(batch))

    predictions = [done[row["id"]]["prediction"] for row in rows]
    result["scores"] = score_predictions(benchmark, predictions, [references[row["id"]] for row in rows])
    if benchmark.answer == "box":
        result["counts"]["no_box"] = sum(prediction is None for prediction in predictions)
    result["complete"] = True
    result["seconds"] = round(time.perf_counter() - start, 3)
    _write_json(scores_path, result)
    return result


def evaluate_benchmarks(
    model,
    processor,
    benchmarks: Sequence[str],
    data_root=None,
    *,
    output_dir,
    annotations: Mapping[str, Mapping] | None = None,
    **kwargs,
) -> dict:
    """`evaluate_benchmark` for each benchmark, then `<output_dir>/results.json`: the scores of every complete
    benchmark in `output_dir` (`{"benchmarks": {name: scores file content}}`).

    Args:
        benchmarks: names of `BENCHMARKS`.
        annotations: per benchmark name, its `annotations` (see `benchmark_paths`).
        **kwargs: passed to `evaluate_benchmark`.

    Returns:
        `{name: scores}` of the benchmarks evaluated here, in the given order.
    """
    annotations = dict(annotations or {})
    unknown = [name for name in [*benchmarks, *annotations] if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; known benchmarks: {', '.join(BENCHMARKS)}.")
    results = {}
    for name in benchmarks:
        results[name] = evaluate_benchmark(
            model, processor, name, data_root, output_dir=output_dir, annotations=annotations.get(name), **kwargs
        )
    write_results(output_dir)
    return results


def write_results(output_dir) -> dict:
    """Merges the complete `*.scores.json` of `output_dir` into `<output_dir>/results.json` and returns it."""
    output_dir = Path(output_dir)
    merged = {}
    for name in BENCHMARKS:
        path = output_dir / f"{name}.scores.json"
        if path.is_file():
            try:
                scores = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
            if isinstance(scores, dict) and scores.get("complete"):
                merged[name] = scores
    results = {"benchmarks": merged}
    _write_json(output_dir / "results.json", results)
    return results


def results_table(results: Mapping[str, Mapping]) -> str:
    """A plain-text table (benchmark, metric, score, n) of `{name: scores}`, the main scores of each metric."""
    lines = [f"{'benchmark':<16} {'metric':<20} {'score':>8} {'n':>7}"]
    for name, result in results.items():
        scores = result.get("scores") or {}
        for key in MAIN_SCORES.get(result.get("metric"), tuple(scores)):
            value = scores.get(key)
            shown = f"{value:8.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else f"{'-':>8}"
            lines.append(f"{name:<16} {key:<20} {shown} {result['counts']['samples']:>7}")
    return "\n".join(lines)


def layout_lines() -> list[str]:
    """The expected data layout, one line per benchmark: its files and image folder under the roots."""
    lines = []
    for benchmark in BENCHMARKS.values():
        files = ", ".join(f"{argument}={path}" for argument, path in benchmark.files)
        optional = "".join(f" [{argument}=FILE]" for argument in benchmark.optional_files)
        lines.append(f"  {benchmark.name:<17} {files}{optional}; images: {benchmark.images}")
    return lines


__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "get_benchmark",
    "benchmark_paths",
    "load_benchmark",
    "reference_of",
    "read_answer",
    "read_predictions",
    "generate_batch",
    "score_predictions",
    "evaluate_benchmark",
    "evaluate_benchmarks",
    "write_results",
    "results_table",
    "layout_lines",
]
