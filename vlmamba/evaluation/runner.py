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
off by a killed run is dropped and its sample redone. The scores file's `settings` identify what the predictions
depend on, and a resumed run must match each of them, or it is refused with the differing items named, unless
`overwrite=True` starts afresh:

- `weights`: `weights_fingerprint` of the model as loaded (its name in `model` is kept for people; two models are told
  apart by their name only when one has no state dict to fingerprint);
- `processor`: the processor's saved prompt settings (`normalize_text`, `location_bins`, the image tokens, the patch
  size) and its image processor's; `tokenizer`: a hash of the tokenizer (vocabulary, merges, added and special
  tokens); `instruction_first` and the benchmark's `prompt` variant;
- `max_new_tokens` and `generation` (the model's generation config);
- `images`: the image folder (its absolute path); `data`: a content hash of each annotation file or folder read;
- `limit`: the same or larger (or `None`), which only adds samples after those done.

A scores file written before these were recorded cannot vouch for its predictions: resuming from it is refused.

Each benchmark runs under an exclusive lock on `<output_dir>/evaluate.lock` (`flock`), so that two runs never write
to one output directory at once: the second is refused with an error naming the folder. The operating system
releases the lock when its process ends, crashed or not; the lock file left behind blocks nothing.

The benchmarks, their files and the data layout are in `vlmamba.evaluation.benchmarks`.

Choices where the reference differs or is silent:

- RefCOCO*: every referring expression is a sample (the standard protocol); the reference kept one per object.
- Batched generation with left padding instead of one sample at a time (the same tokens: tested).
- Visual7W pointing, which the reference's script skipped, is scored like telling, with the training template.
"""

import contextlib
import fcntl
import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import data
from ..models.processing_vlmamba import generate_answers
from .benchmarks import BENCHMARKS, MAIN_SCORES, Benchmark, benchmark_paths, get_benchmark, load_benchmark, reference_of


# The settings a resumed run must share with the run that wrote the predictions (`model` only without `weights`).
RESUME_SETTINGS = (
    "weights",
    "model",
    "processor",
    "tokenizer",
    "instruction_first",
    "prompt",
    "max_new_tokens",
    "generation",
    "images",
    "data",
    "limit",
)
# The file of each output directory that the running evaluation holds locked.
LOCK_FILE = "evaluate.lock"
# Keys of the processor's and image processor's `to_dict()` that are not prompt or image settings (the layout is
# the run's own `instruction_first`).
_NOT_PROCESSOR_SETTINGS = (
    "auto_map",
    "processor_class",
    "image_processor",
    "tokenizer",
    "chat_template",
    "instruction_first",
)
# Keys of a generation config's diff that do not change what `generate()` writes.
_NOT_GENERATION_SETTINGS = ("transformers_version", "_from_model_config")
# The locks this process holds: resolved lock path -> the holding thread's id, so that `evaluate_benchmarks` can hold
# the lock of its output directory across the `evaluate_benchmark` calls that take it again.
_HELD_LOCKS: dict[Path, int] = {}


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


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    # One tensor at a time to the CPU, so that a model on an accelerator is never copied whole.
    tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(tensor.view(torch.uint8).numpy()).digest()


def weights_fingerprint(model) -> str | None:
    """A SHA-256 over the model's state dict, in its order: each entry's name, dtype, shape and bytes (parameters and
    buffers). The same weights give the same fingerprint wherever they were loaded from and on whichever device they
    are; another dtype or any changed value gives another. Tensors are hashed one by one where they are (copied to
    the CPU one at a time), and a tensor tied to an earlier entry (e.g. the head and the embeddings) is hashed once.

    Returns:
        The hex digest, or `None` for an object without a state dict or with weights not in memory (meta tensors).
    """
    if not callable(getattr(model, "state_dict", None)):
        return None
    fingerprint = hashlib.sha256()
    digests = {}
    for name, tensor in model.state_dict().items():
        if tensor.is_meta:
            return None
        storage = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if storage not in digests:
            digests[storage] = _tensor_digest(tensor)
        fingerprint.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        fingerprint.update(digests[storage])
    return fingerprint.hexdigest()


def _processor_settings(processor) -> dict:
    """What the processor saves in `processor_config.json` that shapes prompts and pixels, its image processor's
    included."""
    settings = {key: value for key, value in processor.to_dict().items() if key not in _NOT_PROCESSOR_SETTINGS}
    image_processor = processor.image_processor.to_dict()
    settings["image_processor"] = {
        key: value for key, value in image_processor.items() if key not in _NOT_PROCESSOR_SETTINGS
    }
    return settings


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = json.loads(backend.to_str())
        # Padding and truncation are per-call state that tokenizing writes into the backend, not the vocabulary.
        content.pop("padding", None)
        content.pop("truncation", None)
    else:
        content = {"vocabulary": sorted(tokenizer.get_vocab().items())}
    content["special_tokens"] = getattr(tokenizer, "special_tokens_map", None)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _generation_settings(model) -> dict:
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    return {key: value for key, value in config.to_diff_dict().items() if key not in _NOT_GENERATION_SETTINGS}


def _content_hash(path: Path, skip: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative paths and contents, the image folder `skip` left out)."""
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    skip = skip.resolve()
    files = []
    for directory, folders, names in os.walk(path):
        folders[:] = [name for name in folders if Path(directory, name).resolve() != skip]
        files.extend(Path(directory, name) for name in names)
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_content_hash(file, skip)}\0".encode())
    return digest.hexdigest()


def _short(value) -> str:
    """A fingerprint shown in a message: its first 12 hex digits."""
    return f"{value[:12]}…" if isinstance(value, str) and len(value) == 64 else repr(value)


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


def _differences(key: str, old, new) -> list[str]:
    """The items of a setting that differ, as `"item: old before, new now"` (a dict item by item)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for item in sorted(set(old) | set(new))
            for line in _differences(f"{key}.{item}", old.get(item), new.get(item))
        ]
    if key in ("weights", "tokenizer"):
        return [f"{key}: fingerprint {_short(old)} before, {_short(new)} now"]
    if key.startswith("data."):
        return [f"{key}: content {_short(old)} before, {_short(new)} now"]
    return [f"{key}: {old!r} before, {new!r} now"]


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
    unrecorded = [key for key in RESUME_SETTINGS if key not in previous]
    if unrecorded:
        raise ValueError(
            f"Benchmark {benchmark_name!r}: {path} does not record {', '.join(unrecorded)} (it was written by an "
            f"earlier version of vlmamba), so the predictions in {path.parent} cannot be checked against this run. "
            "Use another output directory, or pass overwrite=True (--overwrite) to start afresh."
        )
    differences = []
    for key in RESUME_SETTINGS:
        old, new = previous[key], settings[key]
        # A larger limit (or none) only adds samples after those done.
        if key == "limit" and (new is None or (old is not None and new >= old)):
            continue
        # The weights tell models apart; the name only when there are no weights to fingerprint.
        if key == "model" and (previous["weights"] is not None or settings["weights"] is not None):
            continue
        differences.extend(_differences(key, old, new))
    if differences:
        raise ValueError(
            f"Benchmark {benchmark_name!r}: the predictions in {path.parent} were made with other settings ("
            f"{'; '.join(differences)}). Use another output directory, or pass overwrite=True (--overwrite)."
        )


@contextlib.contextmanager
def output_lock(output_dir):
    """Holds `<output_dir>/evaluate.lock` locked (`flock`, exclusive) while the block runs, so that no other
    evaluation writes to `output_dir` meanwhile. The same thread may take it again inside the block.

    Raises:
        ValueError: another process (or thread) holds the lock; it names the folder.
    """
    path = (Path(output_dir) / LOCK_FILE).resolve()

    def busy(holder=""):
        process = f" (process {holder})" if holder.isdigit() else ""
        return ValueError(
            f"Another evaluation{process} is writing to {path.parent} (it holds {path} locked); wait for it to "
            "finish, or use another output directory."
        )

    holder = _HELD_LOCKS.get(path)
    if holder is not None:
        if holder != threading.get_ident():
            raise busy()
        yield
        return
    # "a+" creates the file and keeps a stale one's content until the lock is ours.
    file = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            raise busy(file.read().strip()) from None
        except OSError as error:
            warnings.warn(
                f"Cannot lock {path} ({error}): concurrent runs on {path.parent} are not detected.", stacklevel=3
            )
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        _HELD_LOCKS[path] = threading.get_ident()
        try:
            yield
        finally:
            del _HELD_LOCKS[path]
    finally:
        # Closing the file releases the lock; the file stays (removing it could split two runs onto two files).
        file.close()


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
            model,
            processor,
            examples,
            max_new_tokens=max_new_tokens,
            batch_size=len(examples),
            instruction_first=instruction_first,
            **benchmark.prompt,
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
        model_name: the model named in the scores; the model's `name_or_path` by default. A resume compares it only
            for a model without weights to fingerprint (`weights_fingerprint`).

    Returns:
        The scores file's content: `benchmark`, `metric`, `scores` (the metric's outputs), `counts` (`samples`,
        `generated` by this call, `resumed`, and `no_box` for box answers), `model`, `settings`, `files`, `images`,
        `predictions` (the file), `complete`, `seconds`.

    Raises:
        ValueError: bad arguments or files; predictions in `output_dir` made with other settings (each differing
            item named, old and new); another run holding `output_dir` (`output_lock`).
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
    settings = {
        "model": _model_name(model, model_name),
        "weights": weights_fingerprint(model),
        "processor": _processor_settings(processor),
        "tokenizer": _tokenizer_fingerprint(processor.tokenizer),
        "instruction_first": instruction_first,
        "prompt": dict(benchmark.prompt),
        "max_new_tokens": max_new_tokens,
        "generation": _generation_settings(model),
        "images": str(images.resolve()),
        "data": {argument: _content_hash(path, images) for argument, path in paths.items()},
        "limit": limit,
        "batch_size": batch_size,
    }
    # As read back from the scores file, to compare like with like (lists, not tuples).
    settings = json.loads(json.dumps(settings, default=str))

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(output_dir):
        predictions_path = output_dir / f"{benchmark.name}.predictions.jsonl"
        scores_path = output_dir / f"{benchmark.name}.scores.json"
        done: dict[str, dict] = {}
        if overwrite:
            predictions_path.unlink(missing_ok=True)
            scores_path.unlink(missing_ok=True)
        elif predictions_path.exists():
            _check_settings(scores_path, settings, benchmark.name)
            for number, record in enumerate(read_predictions(predictions_path, benchmark.name), start=1):
                if record["id"] not in references:
                    raise ValueError(
                        f"Benchmark {benchmark.name!r}: {predictions_path} line {number} has id {record['id']!r}, "
                        "which is not a sample of this run (other annotation files?). Use another output directory, or "
                        "pass overwrite=True (--overwrite)."
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
    benchmark in `output_dir` (`{"benchmarks": {name: scores file content}}`), all under one `output_lock`.

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
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    # One lock over all the benchmarks and results.json, so that no other run slips in between.
    with output_lock(output_dir):
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
    "weights_fingerprint",
    "output_lock",
    "read_answer",
    "read_predictions",
    "generate_batch",
    "score_predictions",
    "evaluate_benchmark",
    "evaluate_benchmarks",
    "write_results",
    "results_table",
]
