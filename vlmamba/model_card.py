# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Model cards (`README.md` with Hub metadata) for saved Mamba-VL / Pythia-VL folders, through `huggingface_hub`.

The card's layout is the Jinja template `model_card.md` next to this file (inside the package, so an installed wheel
has it); `write_model_card` fills `ModelCardData` and the template. The metadata says what the Hub indexes:
`pipeline_tag`, `library_name`, the base models, datasets, license, and `eval_results` from the scores the paper
reports (`paper_scores`) and the ones `vlmamba evaluate` measured (its `results.json`).
"""

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .evaluation.published import PAPER


TEMPLATE = "model_card.md"
PAPER_TITLE = PAPER["title"]
PAPER_URL = f"https://arxiv.org/abs/{PAPER['arxiv']}"
PAPER_SOURCE = "Shaking Up VLMs (Pantazopoulos et al., EMNLP 2024)"
PAPER_CITATION = """@inproceedings{pantazopoulos2024shaking,
  title={Shaking Up {VLMs}: Comparing Transformers and Structured State Space Models for Vision \\& Language Modeling},
  author={Pantazopoulos, Georgios and Nikandrou, Malvina and Suglia, Alessandro and Lemon, Oliver and Eshghi, Arash},
  booktitle={Proceedings of the 2024 Conference on Empirical Methods in Natural Language Processing},
  year={2024},
  eprint={2409.05395},
  archivePrefix={arXiv},
}"""
# The quickstart's shapes tasks, as its `score` names them.
_SHAPES_TASKS = (("captioning", "captioning (exact match)"), ("captioning_cider", "captioning (CIDEr)"),
                 ("vqa", "VQA accuracy"), ("grounding", "grounding (IoU > 0.5)"))


def template_text() -> str:
    """The card template (`vlmamba/model_card.md`), read from the installed package."""
    return resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")


def _hub_id(name) -> str | None:
    """`name` if it reads as a Hub repo id (`owner/name`), else None (a local path, or nothing recorded)."""
    if not isinstance(name, str) or name.count("/") != 1 or os.path.isabs(name) or name.startswith("."):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _score(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: a score must be a finite number, got {value!r}.")
    return float(value)


def _paper_scores(paper_scores: Mapping) -> dict:
    """`{benchmark: score or {metric: score}}` -> `{benchmark: {metric: score}}`, checked against the registry: a
    bare number is the benchmark's main score, and every metric is one `vlmamba evaluate` reports as main."""
    from .evaluation.benchmarks import BENCHMARKS, MAIN_SCORES

    checked = {}
    for name, scores in paper_scores.items():
        if name not in BENCHMARKS:
            raise ValueError(f"paper_scores: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.")
        main = MAIN_SCORES[BENCHMARKS[name].metric]
        if not isinstance(scores, Mapping):
            scores = {main[0]: scores}
        for key, value in scores.items():
            if key not in main:
                raise ValueError(f"paper_scores[{name!r}]: unknown metric {key!r}; {name} reports {', '.join(main)}.")
            checked.setdefault(name, {})[key] = _score(value, f"paper_scores[{name!r}][{key!r}]")
    return checked


def read_results(results) -> dict:
    """The complete benchmarks of a `vlmamba evaluate` results file: `{benchmark: scores file content}`.

    `results` is the `results.json` path, the output folder holding it, or its content (`{"benchmarks": ...}`).
    """
    if not isinstance(results, Mapping):
        path = Path(results)
        path = path / "results.json" if path.is_dir() else path
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable results.json of `vlmamba evaluate` ({error}).") from None
        where = str(path)
    else:
        where = "results"
    benchmarks = results.get("benchmarks") if isinstance(results, Mapping) else None
    if not isinstance(benchmarks, Mapping):
        raise ValueError(f"{where}: no 'benchmarks' mapping; give the results.json that `vlmamba evaluate` writes.")
    return {name: result for name, result in benchmarks.items()
            if isinstance(result, Mapping) and result.get("complete")}


def _evaluation(paper_scores: dict, measured: dict) -> tuple[list[dict], list[EvalResult]]:
    """The card's evaluation rows and the metadata's `eval_results`, the paper's and the measured scores."""
    from .evaluation.benchmarks import BENCHMARKS, MAIN_SCORES

    rows, eval_results = [], []
    for name in [name for name in BENCHMARKS if name in paper_scores or name in measured]:
        benchmark = BENCHMARKS[name]
        result = measured.get(name) or {}
        found = result.get("scores") or {}
        limit = (result.get("settings") or {}).get("limit")
        for key in MAIN_SCORES[benchmark.metric]:
            paper = paper_scores.get(name, {}).get(key)
            value = found.get(key)
            value = None if value is None else _score(value, f"results[{name!r}]['scores'][{key!r}]")
            if paper is None and value is None:
                continue
            samples = (result.get("counts") or {}).get("samples")
            rows.append({"benchmark": name, "data": benchmark.description, "metric": key,
                         "paper": "" if paper is None else f"{paper:.2f}",
                         "measured": "" if value is None else f"{value:.2f}",
                         "samples": "" if value is None else f"{samples}{' (limited)' if limit else ''}"})
            common = {"task_type": "image-text-to-text", "task_name": benchmark.task, "dataset_type": name,
                      "dataset_name": benchmark.description, "metric_type": key, "metric_name": key}
            # The Hub's model-index gives one source per benchmark: the paper's scores when there are any, else the
            # measured ones (no source: self-reported). The card's table shows both.
            if name in paper_scores:
                if paper is not None:
                    eval_results.append(EvalResult(**common, metric_value=paper, source_name=PAPER_SOURCE,
                                                   source_url=PAPER_URL))
            elif value is not None:
                eval_results.append(EvalResult(**common, metric_value=round(value, 4),
                                               dataset_args={"limit": limit} if limit else None))
    return rows, eval_results


def _parameter_count(folder: Path) -> int:
    """Parameters stored in the folder's safetensors files (tied weights are stored once), read from their headers."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def write_model_card(
    folder,
    model=None,
    processor=None,
    title: str | None = None,
    description: str | None = None,
    training: dict | None = None,
    config=None,
    scores: dict | None = None,
    blind: dict | None = None,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    *,
    base_model: str | list[str] | None = None,
    license: str = "apache-2.0",
    results=None,
    paper_scores: Mapping | None = None,
    citation: str | None = None,
    tags: list[str] | None = None,
) -> Path:
    """Writes `folder/README.md`: Hub metadata, the architecture, code that loads and runs the model, and training
    and evaluation facts.

    Args:
        folder: the saved model and processor; the card goes to `folder/README.md`.
        model, processor: the saved model and its processor; by default the folder's config (`AutoConfig`, the
            parameters counted from the safetensors files) and processor (`AutoProcessor`).
        title: the card's heading; by default the folder's name.
        description: the paragraph under the title; by default one naming the family and its parts.
        training, config: `quickstart.train`'s output (seconds, losses) and the run's settings (a dataclass or dict).
        scores, blind: `quickstart.score` dicts (percentages) with the true and swapped images.
        repo_id: the Hub id the usage code loads (`path/to/<folder name>` when not given).
        datasets: Hub ids of the training data, for the metadata.
        base_model: Hub ids of the models it was built from; by default the language model and vision tower names
            the config records (`text_config._name_or_path`, `vision_config._name_or_path`), when they are Hub ids.
        license: the metadata's license id.
        results: `vlmamba evaluate`'s `results.json` (its path, its folder or its content): each complete
            benchmark's main scores become rows of the card's table, and `eval_results` (self-reported) for
            the benchmarks without `paper_scores` (the Hub's model-index has one source per benchmark).
        paper_scores: the scores "Shaking Up VLMs" reports for this checkpoint, `{benchmark: score}` (the main score
            of a `vlmamba.evaluation.BENCHMARKS` name, e.g. CIDEr for `coco`) or `{benchmark: {metric: score}}`
            (`MAIN_SCORES` of its metric, e.g. `{"pope_random": {"accuracy": ..., "f1": ...}}`), in percent as
            `vlmamba evaluate` reports them. They become `eval_results` with the paper as source, a column of the
            table, and the paper is cited.
        citation: a BibTeX entry for a "Citation" section; `PAPER_CITATION` by default when `paper_scores` is given.
        tags: further metadata tags.

    Returns:
        The card's path.

    Raises:
        ValueError: an unknown benchmark or metric, or a score that is not a finite number, in `paper_scores` or
            `results`; a `results` file that is not `vlmamba evaluate`'s.
    """
    folder = Path(folder)
    if processor is None:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
    if model is None:
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(folder)
        parameters = _parameter_count(folder)
    else:
        model_config = model.config
        parameters = sum(p.numel() for p in model.parameters())
    config_dict = asdict(config) if is_dataclass(config) else dict(config or {})
    text_config = model_config.text_config
    vision_config = model_config.vision_config
    family = "mamba-vl" if text_config.model_type == "mamba" else "pythia-vl"
    text_source = _hub_id(getattr(text_config, "_name_or_path", None))
    vision_source = _hub_id(getattr(vision_config, "_name_or_path", None))
    if base_model is None:
        base_model = [name for name in (text_source, vision_source) if name] or None
    paper_scores = _paper_scores(paper_scores or {})
    if paper_scores and citation is None:
        citation = PAPER_CITATION
    rows, eval_results = _evaluation(paper_scores, read_results(results) if results is not None else {})
    card_data = ModelCardData(
        model_name=title or folder.name,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        license=license,
        base_model=base_model,
        datasets=datasets,
        tags=list(dict.fromkeys(["vlmamba", family, "vision-language", "custom_code", *(tags or [])])),
        eval_results=eval_results or None,
    )

    layout = processor.image_layout()
    patch = layout["patch_size"]
    side = layout["image_size"]
    training_text = None
    if training is not None:
        settings = ", ".join(
            f"{key} {value}" for key, value in config_dict.items()
            if key in ("steps", "batch_size", "learning_rate", "train_scenes", "seed")
        )
        losses = training.get("losses") or []
        curve = f" Loss {losses[0]} -> {losses[-1]}." if losses else ""
        training_text = (
            f"Trained from scratch with `transformers.Trainer` on synthetic shapes scenes (`vlmamba.data.shapes`): "
            f"{settings}; every parameter trained, {training.get('seconds')} s on CPU.{curve}"
        )
    shapes_scores = None
    if scores is not None:
        shapes_scores = [{"label": label, "score": scores[task],
                          "blind": "" if not blind or blind.get(task) is None else blind[task]}
                         for task, label in _SHAPES_TASKS]
    vision_type = getattr(vision_config, "architecture", None) or vision_config.model_type
    overrides = getattr(vision_config, "model_args", None)
    if overrides:
        vision_type += " (" + ", ".join(f"{key} {value}" for key, value in sorted(overrides.items())) + ")"
    caption_prompt = processor.build_prompt({"task": "captioning"}, for_generation=True).prompt
    card = ModelCard.from_template(
        card_data,
        template_str=template_text(),
        title=title or folder.name,
        description=description
        or f"A {family} vision-language model: vision tower, connector and a {text_config.model_type} language "
        f"model, in the Hugging Face Transformers format of `vlmamba`.",
        text_type=text_config.model_type,
        text_layers=text_config.num_hidden_layers,
        text_width=text_config.hidden_size,
        text_source=text_source,
        vision_type=vision_type,
        vision_source=vision_source,
        connector=getattr(model_config, "connector_type", "mlp"),
        image_tokens=(side // patch) ** 2,
        grid=f"{side // patch}x{side // patch}",
        layout="instruction before the image (task-aware)" if processor.instruction_first else "image first",
        boxes=(f"location tokens, {processor.location_bins} bins" if processor.location_bins
               else "text `[x1,y1,x2,y2]`, normalized, 2 decimals"),
        parameters=f"{parameters:,}",
        repo=repo_id or f"path/to/{folder.name}",
        image_token=f"`{processor.image_token}`",
        caption_prompt=json.dumps(caption_prompt, ensure_ascii=False),
        training=training_text,
        shapes_scores=shapes_scores,
        evaluation=rows,
        paper_scores=bool(paper_scores),
        measured=any(row["measured"] for row in rows),
        citation=citation,
    )
    path = folder / "README.md"
    card.save(path)
    return path


__all__ = ["PAPER_CITATION", "PAPER_TITLE", "PAPER_URL", "read_results", "template_text", "write_model_card"]
