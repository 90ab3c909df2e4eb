# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The offline quickstart: train a small Mamba-VL and a small Pythia-VL on synthetic shapes and compare them.

Everything is made on the spot, nothing is downloaded:

1. shapes scenes (`vlmamba.data.shapes`) for training, and held-out scenes of another seed for evaluation (an evaluation
   scene whose image equals a training image is dropped);
2. one byte-level BPE tokenizer trained on the training text, shared by both models, with location tokens for boxes;
3. a Mamba-VL and a Pythia-VL of about the same size (same vision tower and connector; the Mamba language model has
   twice the layers, as Mamba layers hold about half the parameters of a Transformer layer) trained from scratch with
   the same data, steps, batch, optimizer and schedule through `transformers.Trainer`;
4. both saved as Hub-ready folders (weights, config with `auto_map`, code, processor, model card);
5. each folder reloaded in a fresh Python process in which `import vlmamba` fails, through
   `AutoModelForImageTextToText` / `AutoProcessor` with `trust_remote_code=True`, which generates the answers to the
   held-out captioning, VQA and grounding examples (batched, greedy) and parses the boxes with the processor;
6. the scores against chance and against a "blind" run of the same model, in which every image is replaced by the
   image of another scene: a model that learnt to look scores clearly lower blind.

Both models use the task-aware layout (`instruction_first=True`): the task instruction comes before the image. With
the image first, a Mamba trained from scratch at this size learns the text prior and never starts to use the image
(its held-out loss is the same with the true and with shuffled images); with the instruction first the caption starts
right after the image, and the image is learnt from there.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.shapes import chance_levels, make_shapes_dataset
from ..evaluation.boxes import draw_boxes
from ..model_card import write_model_card
from ..models.configuration_vlmamba import CONNECTOR_TYPES, VSS_SCANS
from ..models.modeling_vlmamba import PACKED_TEXT_MODEL_TYPES
from ..toy import tiny_model, tiny_processor, train_tokenizer
from ..training import make_trainer, prompt_texts
from .remote_check import generate_without_vlmamba


EVAL_TASKS = ("captioning", "vqa", "grounding")
TRAIN_TASKS = ("captioning", "vqa", "grounding", "grounded_captioning")
FAMILY_NAMES = {"mamba": "Mamba-VL", "pythia": "Pythia-VL", "mamba2": "Mamba-2-VL", "falcon_mamba": "FalconMamba-VL",
                "falcon_h1": "FalconH1-VL"}
# Longest answer of each evaluated task, in tokens of the quickstart tokenizer, with room to spare.
MAX_NEW_TOKENS = {"captioning": 24, "vqa": 6, "grounding": 10}


@dataclass
class QuickstartConfig:
    """Sizes and budget of the quickstart; the defaults run in minutes on 2 CPU cores."""

    train_scenes: int = 1500
    examples_per_task: int = 1
    eval_scenes: int = 100
    image_size: int = 32
    patch_size: int = 8
    location_bins: int = 16
    width: int = 128
    vision_depth: int = 1
    # Language-model depths of about equal parameters at width 128 (per layer: Mamba-1 and FalconMamba 110K, Mamba-2
    # 103K, GPT-NeoX 198K, FalconH1 250K).
    depth: dict = field(default_factory=lambda: {"mamba": 4, "pythia": 2, "mamba2": 4, "falcon_mamba": 4,
                                                 "falcon_h1": 2})
    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup: float = 0.05
    vocab_size: int = 400
    instruction_first: bool = True
    eval_batch_size: int = 32
    seed: int = 0
    families: tuple = ("mamba", "pythia")
    connector: str = "mlp"
    scan: str = "bidirectional"
    # Padding-free batches: each batch's examples packed into rows of at most this many tokens (the longest shapes
    # example at the default sizes has 73); None pads one row per example. The steps are the same either way. Mamba-2
    # and FalconH1, which take no packed sequences, are padded.
    pack_to: int | None = 160

    def __post_init__(self):
        unknown = [family for family in self.families if family not in FAMILY_NAMES]
        if unknown or not self.families:
            raise ValueError(f"families must be among {list(FAMILY_NAMES)}, got {list(self.families)}.")
        if self.connector not in CONNECTOR_TYPES:
            raise ValueError(f"connector must be one of {CONNECTOR_TYPES}, got {self.connector!r}.")
        if self.scan not in VSS_SCANS:
            raise ValueError(f"scan must be one of {VSS_SCANS}, got {self.scan!r}.")
        for name in ("train_scenes", "eval_scenes", "steps", "batch_size", "width", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.pack_to is not None and (not isinstance(self.pack_to, int) or self.pack_to < 1):
            raise ValueError(f"pack_to must be a positive integer or None, got {self.pack_to!r}.")


def make_data(config: QuickstartConfig):
    """Training rows (seed `seed`; per scene a caption, a grounded caption and up to `examples_per_task` VQA and
    grounding examples) and held-out evaluation rows (seed `seed + 1`, one per task and scene, no image shared with
    training), and the number of held-out scenes dropped."""
    train = make_shapes_dataset(
        config.train_scenes, seed=config.seed, image_size=config.image_size, tasks=TRAIN_TASKS,
        examples_per_task=config.examples_per_task,
    )
    held_out = make_shapes_dataset(
        config.eval_scenes, seed=config.seed + 1, image_size=config.image_size, tasks=EVAL_TASKS
    )
    held_out, repeated = drop_seen_scenes(train, held_out)
    return train, held_out, len(repeated)


def drop_seen_scenes(train, held_out):
    """`held_out` without the scenes whose image is also a training image, and the indices of those scenes."""
    seen = {_digest(image) for image in _scene_images(train).values()}
    repeated = sorted(scene for scene, image in _scene_images(held_out).items() if _digest(image) in seen)
    if repeated:
        dropped = set(repeated)
        held_out = held_out.filter(lambda scene: scene not in dropped, input_columns="scene")
    return held_out, repeated


def _scene_images(dataset) -> dict:
    """Scene index -> PNG bytes of its image (read without decoding)."""
    raw = dataset.cast_column("image", dataset.features["image"].__class__(decode=False))
    images = {}
    for scene, image in zip(raw["scene"], raw["image"]):
        images.setdefault(scene, image["bytes"])
    return images


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(family: str, tokenizer, config: QuickstartConfig):
    """A randomly initialised model of `family` and its processor, seeded by `config.seed`."""
    processor = tiny_processor(
        tokenizer,
        image_size=config.image_size,
        patch_size=config.patch_size,
        location_bins=config.location_bins,
        instruction_first=config.instruction_first,
    )
    torch.manual_seed(config.seed)
    model = tiny_model(
        family, processor, width=config.width, depth=config.depth[family], vision_depth=config.vision_depth,
        freeze_vision_tower=False,  # the tower is trained from scratch with the rest
        connector_type=config.connector, vss_scan=config.scan,
    )
    return model, processor


def train(model, processor, dataset, config: QuickstartConfig, output_dir, progress: bool = True) -> dict:
    """Trains every parameter for `config.steps` steps through `vlmamba.training.make_trainer` (the `Trainer` set-up
    of `vlmamba train`); returns the loss curve and the time taken."""
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        logging_steps=max(1, config.steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        seed=config.seed,
    )
    model.train()
    # Backbones without packed-sequence support (Mamba-2, FalconH1) train on padded batches.
    packs = model.config.text_config.model_type in PACKED_TEXT_MODEL_TYPES
    trainer = make_trainer(model, processor, dataset, args, pack_to=config.pack_to if packs else None)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()
    losses = [round(entry["loss"], 4) for entry in trainer.state.log_history if "loss" in entry]
    return {"seconds": round(seconds, 1), "losses": losses}


def evaluation_items(rows: list[dict], processor, image_dir, blind: bool = False) -> list[dict]:
    """`generate_answers` examples of `rows` (the rows' fields, the image as a PNG file); with `blind`, each row gets
    the image of the next scene instead of its own. The saved processor writes the prompts."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    scenes = sorted({row["scene"] for row in rows})
    paths = {}
    for row in rows:
        if row["scene"] not in paths:
            path = image_dir / f"scene_{row['scene']:05d}.png"
            row["image"].save(path)
            paths[row["scene"]] = str(path)
    swap = {scene: scenes[(i + 1) % len(scenes)] for i, scene in enumerate(scenes)}
    items = []
    for row in rows:
        image = paths[swap[row["scene"]] if blind else row["scene"]]
        fields = {key: value for key, value in row.items() if key != "image"}
        items.append({**fields, "image": image, "max_new_tokens": MAX_NEW_TOKENS[row["task"]]})
    return items


def score(rows: list[dict], outputs: list[dict]) -> dict:
    """Captioning exact match and CIDEr, VQA accuracy (overall and per question type) and grounding accuracy
    (IoU > 0.5), with the metrics of `vlmamba evaluate`.

    Answers are compared by `exact_match` (GQA's comparison: lower-cased, one final period removed; the model writes
    "Red." for "red"); a grounding answer is its first box. CIDEr-D (the `cider` metric, Python tokenizer) takes the
    held-out captions as its corpus, one reference each. All scores are percentages (CIDEr x 100).
    """
    if len(rows) != len(outputs):
        raise ValueError(f"Got {len(outputs)} outputs for {len(rows)} rows; pass one each.")
    by_task = {task: ([], []) for task in EVAL_TASKS}
    by_type = {}
    for row, output in zip(rows, outputs):
        task = row["task"]
        if task == "grounding":
            boxes = output["boxes"] or []
            prediction, reference = (list(boxes[0]) if boxes else None), list(row["box"])
        else:
            prediction, reference = output["text"], row["caption" if task == "captioning" else "answer"]
        by_task[task][0].append(prediction)
        by_task[task][1].append(reference)
        if task == "vqa":
            by_type.setdefault(row["question_type"], ([], []))
            by_type[row["question_type"]][0].append(prediction)
            by_type[row["question_type"]][1].append(reference)
    result = {
        "captioning": _metric("exact_match", *by_task["captioning"]),
        "vqa": _metric("exact_match", *by_task["vqa"]),
        "grounding": _metric("grounding_accuracy", *by_task["grounding"]),
    }
    captions, references = by_task["captioning"]
    result["captioning_cider"] = _metric("cider", captions, [[caption] for caption in references], tokenizer="python")
    result["vqa_by_type"] = {name: _metric("exact_match", *pairs) for name, pairs in sorted(by_type.items())}
    result["counts"] = {task: len(predictions) for task, (predictions, _) in by_task.items()}
    return result


def _metric(name: str, predictions: list, references: list, **kwargs) -> float:
    """The main score of metric `name` of `vlmamba.evaluation.metrics`, rounded to 0.1 (NaN without samples)."""
    if not predictions:
        return float("nan")
    from ..evaluation.metrics import load

    return round(load(name).compute(predictions=predictions, references=references, **kwargs)[name], 1)


def _percent(values) -> float:
    return round(100.0 * sum(values) / len(values), 1) if values else float("nan")


def chance(rows: list[dict]) -> dict:
    """Guessing accuracy: VQA, uniform over each question type's answers; exact captions and boxes have no guess
    worth the name, so 0 (the blind run is their baseline), and CIDEr none (`None`)."""
    levels = chance_levels()
    vqa = [levels[row["question_type"]] for row in rows if row["task"] == "vqa"]
    return {"captioning": 0.0, "captioning_cider": None, "vqa": _percent(vqa), "grounding": 0.0}


def draw_examples(rows, outputs, path, limit: int = 8) -> Path:
    """A strip of held-out grounding examples with the predicted boxes drawn (labelled with the expression)."""
    from PIL import Image

    tiles = []
    for row, output in zip(rows, outputs):
        if row["task"] != "grounding":
            continue
        image = row["image"].convert("RGB").resize((row["image_size"][1] * 4, row["image_size"][0] * 4), Image.NEAREST)
        boxes = [[4 * value for value in box] for box in (output["boxes"] or [])[:1]]
        tiles.append(draw_boxes(image, boxes, labels=[row["expression"]] * len(boxes)))
        if len(tiles) == limit:
            break
    if not tiles:
        raise ValueError("No grounding example to draw.")
    width = sum(tile.width for tile in tiles) + 4 * (len(tiles) - 1)
    strip = Image.new("RGB", (width, max(tile.height for tile in tiles)), "white")
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 4
    path = Path(path)
    strip.save(path)
    return path


# Written into each saved folder after training; a later run with the same settings reuses the folder.
TRAINING_RECORD = "quickstart_training.json"


def run_quickstart(output_dir, config: QuickstartConfig | None = None, progress: bool = True, log=print) -> dict:
    """Runs the whole quickstart (see the module docstring); writes `results.json` and returns the same dict.

    Every model is trained and saved before any is evaluated. A folder saved by an earlier run with the same settings
    is reused instead of trained again, so after a failure in a later step the same call redoes only what failed.
    """
    config = config or QuickstartConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_rows, held_out, repeated = make_data(config)
    eval_rows = [held_out[i] for i in range(len(held_out))]
    log(f"Data: {len(train_rows)} training examples from {config.train_scenes} scenes; {len(eval_rows)} held-out "
        f"examples from {config.eval_scenes - repeated} scenes ({repeated} dropped: image seen in training).")
    tokenizer = train_tokenizer(prompt_texts(train_rows), vocab_size=config.vocab_size)
    trained = {family: _trained_model(family, tokenizer, train_rows, config, output_dir, progress, log)
               for family in config.families}
    results = {"config": asdict(config), "families": {}, "chance": chance(eval_rows)}
    for family, (model, processor, family_result) in trained.items():
        try:
            results["families"][family] = _evaluate(family, model, processor, family_result, eval_rows, config,
                                                    output_dir)
        except Exception as error:
            folders = ", ".join(entry["folder"] for _, _, entry in trained.values())
            raise RuntimeError(
                f"Evaluating {FAMILY_NAMES[family]} failed: {error}\nThe trained models are saved ({folders}); run "
                "the same command again to evaluate them without training again."
            ) from error
    results["seconds"] = round(time.perf_counter() - start, 1)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _trained_model(family, tokenizer, train_rows, config, output_dir, progress, log):
    """The model of `family`, its processor and its result entry: trained and saved, or reused from its folder when
    an earlier run with the same settings saved it."""
    name = FAMILY_NAMES[family]
    connector = "" if config.connector == "mlp" else f"-{config.connector.replace('_', '-')}"
    folder = output_dir / f"{family}-vl{connector}-shapes"
    record_path = folder / TRAINING_RECORD
    settings = json.loads(json.dumps(asdict(config)))
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    if record is not None and record["config"] == settings:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        log(f"{name}: reusing the model trained with these settings in {folder} (delete the folder to train again).")
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        return model, AutoProcessor.from_pretrained(folder), record["result"]
    model, processor = build(family, tokenizer, config)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{name}: {parameters:,} parameters, training {config.steps} steps of {config.batch_size}.")
    training = train(model, processor, train_rows, config, output_dir / "trainer" / family, progress)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    result = {"folder": str(folder), "parameters": parameters,
              "language_model_parameters": sum(p.numel() for p in model.model.language_model.parameters()),
              "training": training}
    record_path.write_text(json.dumps({"config": settings, "result": result}, indent=2))
    return model, processor, result


def _evaluate(family, model, processor, family_result, eval_rows, config, output_dir) -> dict:
    """Scores the saved model of `family` on the held-out rows, seeing and blind, and writes its model card."""
    family_result = dict(family_result)
    folder = Path(family_result["folder"])
    for blind in (False, True):
        items = evaluation_items(eval_rows, processor, output_dir / "eval_images", blind=blind)
        desc = f"{family}{'-blind' if blind else ''}"
        generated = generate_without_vlmamba(folder, items, output_dir, config.eval_batch_size, desc=desc)
        family_result["blind" if blind else "scores"] = score(eval_rows, generated["outputs"])
        if not blind:
            family_result["loaded_class"] = f"{generated['module']}.{generated['class']}"
            family_result["boxes_png"] = str(draw_examples(eval_rows, generated["outputs"],
                                                           output_dir / f"{family}_boxes.png"))
            _write_predictions(output_dir / f"{family}_predictions.jsonl", eval_rows, generated["outputs"])
    write_model_card(folder, model, processor, title=f"{FAMILY_NAMES[family]} (shapes quickstart)",
                     training=family_result["training"], config=config, scores=family_result["scores"],
                     blind=family_result["blind"])
    return family_result


def _write_predictions(path, rows, outputs) -> None:
    with open(path, "w") as handle:
        for row, output in zip(rows, outputs):
            reference = {"captioning": row.get("caption"), "vqa": row.get("answer"), "grounding": row.get("box")}
            handle.write(json.dumps({"scene": row["scene"], "task": row["task"], "prompt": output["prompt"],
                                     "text": output["text"], "boxes": output["boxes"],
                                     "reference": reference[row["task"]]}) + "\n")


def results_table(results: dict) -> str:
    """The Mamba-vs-Pythia table of `run_quickstart`'s results."""
    families = list(results["families"])
    header = f"{'':<24}{'chance':>8}" + "".join(f"{FAMILY_NAMES[f]:>12}{'blind':>8}" for f in families)
    lines = [header]
    connector = results["config"].get("connector", "mlp")
    if connector != "mlp":
        lines.insert(0, f"connector: {connector}, {results['config']['scan']} scan")
    rows = [
        ("captioning (exact)", "captioning"),
        ("captioning (CIDEr)", "captioning_cider"),
        ("VQA accuracy", "vqa"),
        ("grounding (IoU>0.5)", "grounding"),
    ]
    for label, key in rows:
        level = results["chance"][key]
        line = f"{label:<24}" + (f"{level:>8.1f}" if level is not None else f"{'-':>8}")
        for family in families:
            entry = results["families"][family]
            line += f"{entry['scores'][key]:>12.1f}{entry['blind'][key]:>8.1f}"
        lines.append(line)
    for question_type in results["families"][families[0]]["scores"]["vqa_by_type"]:
        line = f"{'  VQA ' + question_type:<24}{100 * chance_levels()[question_type]:>8.1f}"
        for family in families:
            entry = results["families"][family]
            line += f"{entry['scores']['vqa_by_type'][question_type]:>12.1f}"
            line += f"{entry['blind']['vqa_by_type'].get(question_type, float('nan')):>8.1f}"
        lines.append(line)
    line = f"{'parameters':<24}{'':>8}"
    for family in families:
        line += f"{results['families'][family]['parameters']:>12,}{'':>8}"
    lines.append(line)
    line = f"{'training seconds':<24}{'':>8}"
    for family in families:
        line += f"{results['families'][family]['training']['seconds']:>12.0f}{'':>8}"
    lines.append(line)
    return "\n".join(lines)


__all__ = ["QuickstartConfig", "run_quickstart", "results_table", "make_data", "build", "train", "score", "chance",
           "evaluation_items", "drop_seen_scenes", "draw_examples"]
