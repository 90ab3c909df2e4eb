# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Benchmark evaluation: batched greedy generation over the reference's benchmarks, resumable, scored with
`vlmamba.evaluation.metrics` (the library side of `vlmamba evaluate`).

`vlmamba.evaluation.benchmarks.BENCHMARKS` names each benchmark, the `vlmamba.data` loader that reads it and its
files, the prompt, the decoding length, how the answer is read from the generated text and which metric scores it.
`evaluate_benchmark` runs one:

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

The benchmarks, their files and the data layout are in `vlmamba.evaluation.benchmarks`.

Choices where the reference differs or is silent:

- RefCOCO*: every referring expression is a sample (the standard protocol); the reference kept one per object.
- Batched generation with left padding instead of one sample at a time (the same tokens: tested).
- Visual7W pointing, which the reference's script skipped, is scored like telling, with the training template.
"""

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .. import data
from ..models.processing_vlmamba import generate_answers
from .benchmarks import BENCHMARKS, MAIN_SCORES, Benchmark, benchmark_paths, get_benchmark, load_benchmark, reference_of


# The settings a resumed run must share with the run that wrote the predictions.
RESUME_SETTINGS = ("model", "instruction_first", "max_new_tokens", "limit")


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


__all__ = [
    "read_answer",
    "read_predictions",
    "generate_batch",
    "score_predictions",
    "evaluate_benchmark",
    "evaluate_benchmarks",
    "write_results",
    "results_table",
]
