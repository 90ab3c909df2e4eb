# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Train Mamba-VL or Pythia-VL with the standard `Trainer`: the paper's two stages, optional LoRA.

The training library behind three entry points, which take the same flags:

    python training/train.py --config training/recipes/stage2.json --model_name_or_path DIR --output_dir out
    accelerate launch --config_file training/accelerate/ddp.yaml training/train.py --config ... [overrides]
    vlmamba train --tiny mamba --dataset shapes --max_steps 200 --output_dir out

Stage 1 trains the connector only (vision tower and language model frozen); stage 2 trains the connector and the
language model with the vision tower frozen, fully or through LoRA adapters (`--use_lora`). Every `TrainingArguments`
field is a flag (`--learning_rate`, `--gradient_checkpointing`, `--bf16`, `--resume_from_checkpoint`, ...); a
`--config` JSON file gives defaults that flags override. The recipes in `training/recipes/` hold the paper's
hyperparameters. From Python, `parse_args` -> `train` runs a stage, and `make_trainer` sets up a `Trainer` with the
data collator for any model, processor and dataset of structured examples.
"""

import json
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .builder import PRESETS, build_from_preset
from .data.collator import VLMambaDataCollator
from .models.configuration_vlmamba import LOSS_REDUCTIONS


logger = logging.getLogger("vlmamba.train")

# LoRA targets per language model. Mamba's fused CUDA training path (`mamba_inner_fn`) reads the weights of x_proj,
# dt_proj and out_proj directly, bypassing any adapter on them, so only in_proj gets one.
LORA_TARGETS = {
    "mamba": ["in_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


@dataclass
class ModelArguments:
    """The model to train and what of it trains: `--model_name_or_path`, `--preset` or `--tiny`, the stage, LoRA."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A Mamba-VL / Pythia-VL folder or Hub id to train (e.g. stage 1's output)."}
    )
    preset: str | None = field(
        default=None, metadata={"help": f"Build a fresh model from pretrained parts: one of {list(PRESETS)}."}
    )
    tiny: str | None = field(
        default=None, metadata={"help": "Build a tiny random model of this family (mamba, pythia): offline runs."}
    )
    tiny_width: int = field(default=64, metadata={"help": "Width of the tiny language model and vision tower."})
    tiny_depth: int = field(default=2, metadata={"help": "Depth of the tiny language model and vision tower."})
    tiny_image_size: int = field(default=64, metadata={"help": "Image size of the tiny vision tower."})
    tiny_patch_size: int = field(default=16, metadata={"help": "Patch size of the tiny vision tower."})
    stage: int = field(default=2, metadata={"help": "1: connector only. 2: connector and language model."})
    use_lora: bool = field(default=False, metadata={"help": "Stage 2 through LoRA adapters on the language model."})
    train_vision_tower: bool = field(
        default=False, metadata={"help": "Stage 2 also trains the vision tower (for towers trained from scratch)."}
    )
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": f"Module names to adapt (default per language model: {LORA_TARGETS})."}
    )
    loss_reduction: str | None = field(
        default=None, metadata={"help": "'token' (default) or 'sample' (the reference's per-sample mean)."}
    )
    precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPUs that have it, else fp32), fp32, bf16 or fp16."}
    )


@dataclass
class DataArguments:
    """The training (and evaluation) data: synthetic shapes or a JSON list of sources."""

    dataset: str = field(
        default="shapes",
        metadata={"help": "'shapes' (synthetic, generated here) or a JSON file listing sources and weights."},
    )
    shapes_scenes: int = field(default=2000, metadata={"help": "Number of training scenes of the shapes dataset."})
    shapes_eval_scenes: int = field(default=0, metadata={"help": "Held-out scenes for evaluation (another seed)."})
    shapes_seed: int = 0
    max_length: int | None = field(default=None, metadata={"help": "Cut samples to this many tokens."})
    normalize_text: str | None = field(
        default=None,
        metadata={"help": "Text normalization, saved with the processor: True (the reference's), keep_case or False. "
                  "Default: the loaded processor's (True for a new model)."},
    )


def parse_args(argv=None, prog: str | None = None):
    """The three argument groups of one run, from command-line flags.

    Args:
        argv: The flags (default: `sys.argv[1:]`). `--config FILE` reads a JSON file of defaults (named like the
            flags) that the other flags override.
        prog: The program name in the help and error messages (default: from `sys.argv[0]`).

    Returns:
        `(model_args, data_args, training_args)`: a `ModelArguments`, a `DataArguments` and a `TrainingArguments`
        with `remove_unused_columns=False`.

    Raises:
        ValueError: The config file has a setting that is not a flag.
    """
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), prog=prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        position = argv.index("--config")
        config_path = Path(argv[position + 1])
        del argv[position : position + 2]
        defaults = json.loads(config_path.read_text())
        known = {f.name for cls in (ModelArguments, DataArguments, TrainingArguments) for f in fields(cls)}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown setting(s) {unknown}; use the names of the command-line flags.")
        parser.set_defaults(**defaults)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    training_args.remove_unused_columns = False  # the collator needs the structured examples as they are
    return model_args, data_args, training_args


def build_model(model_args: ModelArguments, texts=None):
    """The model and processor to train, from exactly one of `model_name_or_path`, `preset`, `tiny`."""
    choices = [name for name in ("model_name_or_path", "preset", "tiny") if getattr(model_args, name)]
    if len(choices) != 1:
        raise ValueError(f"Give exactly one of --model_name_or_path, --preset, --tiny (got {choices or 'none'}).")
    if model_args.tiny:
        from .toy import tiny_model, tiny_processor, train_tokenizer

        tokenizer = train_tokenizer(texts) if texts else train_tokenizer()
        processor = tiny_processor(
            tokenizer, image_size=model_args.tiny_image_size, patch_size=model_args.tiny_patch_size
        )
        model = tiny_model(
            model_args.tiny, processor, width=model_args.tiny_width, depth=model_args.tiny_depth
        ).train()
    elif model_args.preset:
        model, processor = build_from_preset(model_args.preset)
    else:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
        model = AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path)
    if model_args.loss_reduction is not None:
        if model_args.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"--loss_reduction must be 'token' or 'sample', got {model_args.loss_reduction!r}.")
        model.config.loss_reduction = model_args.loss_reduction
    return model, processor


def select_trainable(model, model_args: ModelArguments):
    """Freezes what the stage does not train; wraps the language model in LoRA adapters when asked."""
    if model_args.stage not in (1, 2):
        raise ValueError(f"--stage must be 1 or 2, got {model_args.stage}.")
    model.requires_grad_(False)
    model.model.connector.requires_grad_(True)
    if model_args.stage == 1:
        return model
    if model_args.train_vision_tower:
        model.config.freeze_vision_tower = False  # also lets the tower's dropout train
        model.model.vision_tower.requires_grad_(True)
    if not model_args.use_lora:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    text_type = model.config.text_config.model_type
    targets = model_args.lora_target_modules or LORA_TARGETS.get(text_type)
    if not targets:
        raise ValueError(f"No default LoRA targets for a {text_type!r} language model; pass --lora_target_modules.")
    # Adapters only inside the language model, whatever the vision tower's module names.
    pattern = r".*language_model\..*\.(" + "|".join(targets) + r")$"
    lora = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=pattern,
        modules_to_save=["connector"],
    )
    return get_peft_model(model, lora)


def load_data(data_args: DataArguments):
    """Train and eval datasets of structured examples."""
    if data_args.dataset == "shapes":
        from .data.shapes import make_shapes_dataset

        train = make_shapes_dataset(data_args.shapes_scenes, seed=data_args.shapes_seed)
        evaluation = None
        if data_args.shapes_eval_scenes:
            evaluation = make_shapes_dataset(data_args.shapes_eval_scenes, seed=data_args.shapes_seed + 10_000)
        return train, evaluation
    from .data import load_source, mix_sources

    spec = json.loads(Path(data_args.dataset).read_text())
    sources = [
        (load_source(item["name"], **item.get("kwargs", {})), item.get("weight", 1.0)) for item in spec["sources"]
    ]
    return mix_sources(sources, seed=spec.get("seed", 0), num_samples=spec.get("num_samples")), None


def prompt_texts(dataset, normalize_text=True, limit: int = 5000) -> list[str]:
    """The training text of (up to `limit`) examples, for a tiny model's tokenizer to be trained on.

    Args:
        dataset: A `datasets.Dataset` of structured examples.
        normalize_text: The text normalization of the prompts: True, False or "keep_case", as the processor takes it.
        limit: Use at most the first `limit` examples.

    Returns:
        One prompt-and-answer text per example, without the image placeholder.
    """
    from .models.tasks import DEFAULT_IMAGE_TOKEN, build_prompt

    rows = dataset.select(range(min(limit, len(dataset))))
    if "image" in rows.column_names:
        rows = rows.remove_columns("image")  # pixel boxes are normalized with the rows' `image_size`
    texts = [build_prompt(row, normalize_text=normalize_text).text for row in rows]
    return [text.replace(DEFAULT_IMAGE_TOKEN, "") for text in texts]


def _normalize_text(value: str | None) -> bool | str | None:
    """`--normalize_text` as the processor takes it: True, False, "keep_case", or None (keep the processor's)."""
    if value is None:
        return None
    modes = {"true": True, "false": False, "keep_case": "keep_case"}
    if str(value).lower() not in modes:
        raise ValueError(f"--normalize_text must be True, False or keep_case, got {value!r}.")
    return modes[str(value).lower()]


def _apply_precision(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    if model_args.precision == "auto":
        if not (training_args.bf16 or training_args.fp16):
            training_args.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    elif model_args.precision in ("bf16", "fp16"):
        setattr(training_args, model_args.precision, True)
    elif model_args.precision != "fp32":
        raise ValueError(f"--precision must be auto, fp32, bf16 or fp16, got {model_args.precision!r}.")


def make_trainer(
    model, processor, train_dataset, training_args, eval_dataset=None, max_length=None, callbacks=None
) -> Trainer:
    """A `Trainer` for a Mamba-VL / Pythia-VL model on datasets of structured examples.

    The data collator (`VLMambaDataCollator`) turns the examples into model inputs through the processor, so the
    trainer is told to keep every column: `training_args.remove_unused_columns` is set to False.

    Args:
        model: The model to train (a `VLMambaForConditionalGeneration`, or a PEFT model wrapping one).
        processor: The model's `VLMambaProcessor`; the collator uses it, and the trainer saves it with checkpoints.
        train_dataset: The training examples (e.g. from `vlmamba.data` or `make_shapes_dataset`).
        training_args: The `TrainingArguments`; changed in place (`remove_unused_columns=False`).
        eval_dataset: Examples for evaluation, or None.
        max_length: Cut samples to this many tokens (None: no cut).
        callbacks: `TrainerCallback`s to add to the trainer's defaults.

    Returns:
        The `Trainer`, not yet trained.
    """
    training_args.remove_unused_columns = False  # the collator needs the structured examples as they are
    collator = VLMambaDataCollator(processor, max_length=max_length)
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )


def train(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments):
    """Runs one stage; returns the trainer (its model is trained and saved to `output_dir`)."""
    set_seed(training_args.seed)
    _apply_precision(model_args, training_args)
    train_dataset, eval_dataset = load_data(data_args)
    normalize_text = _normalize_text(data_args.normalize_text)
    texts = prompt_texts(train_dataset, True if normalize_text is None else normalize_text) if model_args.tiny else None
    model, processor = build_model(model_args, texts)
    if normalize_text is not None:
        processor.normalize_text = normalize_text
    model = select_trainable(model, model_args)
    trainer = make_trainer(
        model, processor, train_dataset, training_args, eval_dataset=eval_dataset, max_length=data_args.max_length
    )
    logger.info(
        "Stage %d, %d trainable parameters, %d process(es), %d training examples.",
        model_args.stage,
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        training_args.world_size,
        len(train_dataset),
    )
    resume = training_args.resume_from_checkpoint
    if resume == "last":
        resume = get_last_checkpoint(training_args.output_dir)
        if resume is None:
            logger.warning("No checkpoint in %s: starting from scratch.", training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    if model_args.use_lora and model_args.stage == 2:
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    processor.save_pretrained(training_args.output_dir)
    return trainer


def main(argv=None, prog: str | None = None) -> int:
    """Runs one stage from command-line flags (see `parse_args`), logging to stderr.

    Args:
        argv: The flags (default: `sys.argv[1:]`).
        prog: The program name in the help and error messages (default: from `sys.argv[0]`).

    Returns:
        0, the exit code, once the model and processor are saved to `--output_dir` (errors raise).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(*parse_args(argv, prog=prog))
    return 0


__all__ = [
    "LORA_TARGETS",
    "ModelArguments",
    "DataArguments",
    "parse_args",
    "build_model",
    "select_trainable",
    "load_data",
    "prompt_texts",
    "make_trainer",
    "train",
    "main",
]
