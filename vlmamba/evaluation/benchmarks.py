# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The benchmark registry: each benchmark's data, prompt, decoding and scoring, as one table (`BENCHMARKS`), and
where its files are (`benchmark_paths`, `load_benchmark`, `layout_lines`).

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
- `scienceqa_img`: `scienceqa/problems.json`, `scienceqa/pid_splits.json` (the test split's questions with an
  image); images `scienceqa/images/` (holding `test/{pid}/image.png`).
- `mme`: the `mme/MME_Benchmark_release_version/` folder (one folder per subtask, with `images/` and
  `questions_answers_YN/`, or images and question files side by side); images: the same folder.
- `mmbench_dev`: `mmbench/mmbench_dev_20230712.tsv` (base64 images, CircularEval passes); images `mmbench/images/`,
  where the loader writes the TSV's images (the folder is created when missing).

The last three are the benchmarks of VL-Mamba's table that score offline (`vlmamba.data.vl_benchmarks` says how they
are read and prompted). MM-Vet, also in that table, is not here: its open answers are graded by an LLM judge
(GPT-4).
"""

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import data
from ..models.tasks import MULTIPLE_CHOICE_LETTERS, TASKS


ANSWER_FORMS = ("caption", "short", "box")
REFERENCE_FIELDS = ("references", "answers", "answer", "letter", "box", "grouped_answer", "grouped_letter")
# The scores `results_table` shows for each metric.
MAIN_SCORES = {
    "cider": ("cider",),
    "vqa_accuracy": ("vqa_accuracy",),
    "exact_match": ("exact_match",),
    "grounding_accuracy": ("grounding_accuracy",),
    "pope": ("accuracy", "f1"),
    "multiple_choice": ("accuracy",),
    "image_text_match": ("accuracy",),
    "mme": ("perception", "cognition"),
    "circular_choice": ("circular_accuracy",),
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
        reference: the row field the metric compares with: `"references"`, `"answers"`, `"answer"`, `"box"`,
            `"letter"` (the letter of the option index in `answer`), or `"grouped_answer"` / `"grouped_letter"`
            (the answer or letter as `answer`, with the row's `group` and `category`, for metrics that score the
            rows of a group together: MME's images, MMBench's CircularEval passes).
        loader_kwargs: further loader arguments (split, kind, ...).
        optional_files: loader arguments that take a file only when one is given (`annotations`).
        prompt: `build_prompt` keywords of the benchmark's prompt variant.
        writes_images: the images are in the annotation file and the loader writes them into the image folder, which
            need not exist beforehand.
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
    writes_images: bool = False

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


# MME's release folder: the question files and the images.
_MME_FOLDER = "mme/MME_Benchmark_release_version"
# The registry. One row per benchmark, in the order of the paper's tables:
#  name               task              tokens answer     metric              reference     image folder
_TABLE = (
    ("coco",            "captioning",        40, "caption", "cider",            "references", "coco/images"),
    ("nocaps",          "captioning",        40, "caption", "cider",            "references", "nocaps/images"),
    ("textcaps",        "captioning",        15, "caption", "cider",            "references", "textvqa/train_images"),
    ("vqav2",           "vqa",               15, "short",   "vqa_accuracy",     "answers",    "coco/images/val2014"),
    ("gqa",             "vqa",               20, "short",   "exact_match",      "answer",     "gqa/images"),
    ("v7w_telling",     "multiple_choice",   20, "short",   "multiple_choice",  "letter",     "visual7w/images"),
    ("vsr",             "image_text_match", 120, "short",   "image_text_match", "answer",     "vsr/images"),
    ("pope_adversarial", "vqa",             120, "short",   "pope",             "answer",     "coco/images/val2014"),
    ("pope_popular",    "vqa",              120, "short",   "pope",             "answer",     "coco/images/val2014"),
    ("pope_random",     "vqa",              120, "short",   "pope",             "answer",     "coco/images/val2014"),
    ("refcoco_testa",   "grounding",        120, "box",     "grounding_accuracy", "box",      "coco/images/train2014"),
    ("refcoco_testb",   "grounding",        120, "box",     "grounding_accuracy", "box",      "coco/images/train2014"),
    ("refcoco+_testa",  "grounding",        120, "box",     "grounding_accuracy", "box",      "coco/images/train2014"),
    ("refcoco+_testb",  "grounding",        120, "box",     "grounding_accuracy", "box",      "coco/images/train2014"),
    ("refcocog_test",   "grounding",        120, "box",     "grounding_accuracy", "box",      "coco/images/train2014"),
    ("v7w_pointing",    "multiple_choice",   20, "short",   "multiple_choice",  "letter",     "visual7w/images"),
    ("textvqa",         "vqa",               20, "short",   "vqa_accuracy",     "answers",    "textvqa/train_images"),
    ("ai2d",            "multiple_choice",   10, "short",   "multiple_choice",  "letter",     "ai2d/images"),
    # VL-Mamba's: the answer (a letter, yes or no) is read from the start of the text, so 10 tokens are plenty.
    ("scienceqa_img",   "multiple_choice",   10, "short",   "multiple_choice",  "letter",     "scienceqa/images"),
    ("mme",             "vqa",               10, "short",   "mme",              "grouped_answer", _MME_FOLDER),
    ("mmbench_dev",     "multiple_choice",   10, "short",   "circular_choice",  "grouped_letter", "mmbench/images"),
)
_COLUMNS = ("name", "task", "max_new_tokens", "answer", "metric", "reference", "images")


def _pope(subset):
    return (f"POPE on COCO, {subset} subset", data.load_pope, {"jsonl_path": f"pope/coco_pope_{subset}.json"},
            {"source": f"pope_{subset}"})


def _refcoco(dataset, refs, split, description):
    return (description, data.load_refcoco,
            {"refs_pickle": f"{dataset}/{refs}", "instances_json": f"{dataset}/instances.json"},
            {"split": split, "source": dataset})


# Where the rows come from: description, loader, files (loader argument: path under the data root, the main file
# first) and further loader arguments.
_SOURCES = {
    "coco": ("COCO captions, Karpathy test split", data.load_coco_captions,
             {"karpathy_json": "coco/dataset_coco.json"}, {"split": "test"}),
    "nocaps": ("NoCaps validation, all domains", data.load_nocaps,
               {"json_path": "nocaps/nocaps_val_4500_captions.json"}, {}),
    "textcaps": ("TextCaps validation", data.load_textcaps, {"json_path": "textcaps/TextCaps_0.1_val.json"},
                 {"per_caption": False}),
    "vqav2": ("VQAv2 validation", data.load_vqav2,
              {"questions_json": "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
               "annotations_json": "vqav2/v2_mscoco_val2014_annotations.json"}, {}),
    "gqa": ("GQA test-dev, balanced", data.load_gqa, {"questions_json": "gqa/testdev_balanced_questions.json"}, {}),
    "v7w_telling": ("Visual7W telling, test", data.load_visual7w,
                    {"json_path": "visual7w/dataset_v7w_telling.json"},
                    {"kind": "telling", "split": "test", "check_images": False}),
    "vsr": ("VSR, random split, test", data.load_vsr, {"jsonl_path": "vsr/test.jsonl"}, {}),
    "pope_adversarial": _pope("adversarial"),
    "pope_popular": _pope("popular"),
    "pope_random": _pope("random"),
    "refcoco_testa": _refcoco("refcoco", "refs(unc).p", "testA", "RefCOCO (UNC), testA"),
    "refcoco_testb": _refcoco("refcoco", "refs(unc).p", "testB", "RefCOCO (UNC), testB"),
    "refcoco+_testa": _refcoco("refcoco+", "refs(unc).p", "testA", "RefCOCO+ (UNC), testA"),
    "refcoco+_testb": _refcoco("refcoco+", "refs(unc).p", "testB", "RefCOCO+ (UNC), testB"),
    "refcocog_test": _refcoco("refcocog", "refs(umd).p", "test", "RefCOCOg (UMD), test"),
    # Pointing options are pixel boxes, clipped to the image, whose size is then read.
    "v7w_pointing": ("Visual7W pointing, test", data.load_visual7w,
                     {"json_path": "visual7w/dataset_v7w_pointing.json"},
                     {"kind": "pointing", "split": "test", "check_images": True}),
    "textvqa": ("TextVQA validation, OCR tokens in the prompt", data.load_textvqa,
                {"json_path": "textvqa/TextVQA_0.5.1_val.json"}, {}),
    "ai2d": ("AI2D, the reference's test diagrams", data.load_ai2d,
             {"annotation_dir": "ai2d", "ids": "ai2d/ai2d_test_ids.csv"}, {}),
    "scienceqa_img": ("ScienceQA test, the questions with an image (SQA-IMG)", data.load_scienceqa,
                      {"problems_json": "scienceqa/problems.json", "pid_splits": "scienceqa/pid_splits.json"},
                      {"split": "test"}),
    "mme": ("MME, the 10 perception and 4 cognition subtasks", data.load_mme,
            {"annotation_dir": _MME_FOLDER}, {}),
    "mmbench_dev": ("MMBench dev (English), CircularEval", data.load_mmbench,
                    {"tsv_path": "mmbench/mmbench_dev_20230712.tsv"}, {}),
}
# Benchmarks whose loader writes the images from the annotation file (base64) into the image folder.
_WRITES_IMAGES = ("mmbench_dev",)
# Loader arguments that take a file only when one is given (`annotations`).
_OPTIONAL_FILES = {"v7w_pointing": ("boxes_json",), "textvqa": ("ocr_json",)}
# Prompt variants (`build_prompt` keywords) of the benchmarks that do not use the training template.
_PROMPTS = {
    "gqa": {"merge_turns": True},
    "vsr": {"merge_turns": True},
    # "{instruction}\n{Question}\n" as one string.
    "pope_adversarial": {"vqa_format": "plain", "merge_turns": True},
    "pope_popular": {"vqa_format": "plain", "merge_turns": True},
    "pope_random": {"vqa_format": "plain", "merge_turns": True},
    "textvqa": {"ocr_tokens": True, "merge_turns": True},
    # The reference keeps the case of AI2D questions (diagram labels are letters).
    "ai2d": {"normalize_text": "keep_case"},
    # ScienceQA and MMBench keep the case of hints and questions (names, units); MME's questions are written exactly
    # as given, on the line after the instruction ("{instruction}\n{question}\n").
    "scienceqa_img": {"normalize_text": "keep_case"},
    "mme": {"vqa_format": "plain", "merge_turns": True, "normalize_text": False},
    "mmbench_dev": {"normalize_text": "keep_case"},
}


def _benchmark(row) -> Benchmark:
    columns = dict(zip(_COLUMNS, row, strict=True))
    description, loader, files, loader_kwargs = _SOURCES[columns["name"]]
    return Benchmark(
        description=description, loader=loader, files=tuple(files.items()), loader_kwargs=loader_kwargs,
        optional_files=_OPTIONAL_FILES.get(columns["name"], ()), prompt=_PROMPTS.get(columns["name"], {}),
        writes_images=columns["name"] in _WRITES_IMAGES, **columns,
    )


BENCHMARKS: dict[str, Benchmark] = {row[0]: _benchmark(row) for row in _TABLE}


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
    if not images.is_dir() and not benchmark.writes_images:
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
    grouped = benchmark.reference.startswith("grouped_")
    field_name = "answer" if grouped or benchmark.reference == "letter" else benchmark.reference
    value = row.get(field_name)
    if value is None or (benchmark.reference in ("references", "answers") and len(value) == 0):
        raise ValueError(
            f"Benchmark {benchmark.name!r}: sample {row['id']!r} has no {field_name!r} to score against (is the "
            "annotation file a test split without answers?)."
        )
    if benchmark.reference in ("letter", "grouped_letter"):
        value = MULTIPLE_CHOICE_LETTERS[value]
    if grouped:
        return {"answer": value, "group": row["group"], "category": row["category"]}
    if benchmark.reference == "letter":
        return value
    if benchmark.reference == "box":
        return [float(coordinate) for coordinate in value]
    return list(value) if benchmark.reference in ("references", "answers") else value


def layout_lines() -> list[str]:
    """The expected data layout, one line per benchmark: its files and image folder under the roots."""
    lines = []
    for benchmark in BENCHMARKS.values():
        files = ", ".join(f"{argument}={path}" for argument, path in benchmark.files)
        optional = "".join(f" [{argument}=FILE]" for argument in benchmark.optional_files)
        written = " (written from the annotation file)" if benchmark.writes_images else ""
        lines.append(f"  {benchmark.name:<17} {files}{optional}; images: {benchmark.images}{written}")
    return lines


__all__ = [
    "ANSWER_FORMS",
    "REFERENCE_FIELDS",
    "MAIN_SCORES",
    "Benchmark",
    "BENCHMARKS",
    "get_benchmark",
    "benchmark_paths",
    "load_benchmark",
    "reference_of",
    "layout_lines",
]
