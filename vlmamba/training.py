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

A resumed run (`--resume_from_checkpoint last` or a path) takes its tokenizer, processor and model config from the
checkpoint, whatever the data and `--tiny_*` flags say, so that the ids and the prompt format stay those it was
trained with; `find_checkpoint` checks the checkpoint is complete before anything of it is loaded.
"""

import json
import logging
import re
import sys
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from .builder import PRESETS, build_from_preset
from .data.collator import VLMambaDataCollator
from .models.configuration_vlmamba import LOSS_REDUCTIONS
from .models.modeling_vlmamba import packed_sample_ids, packed_sequence_index
from .models.processing_vlmamba import BOX_NORMALIZATIONS


logger = logging.getLogger("vlmamba.train")

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")  # `Trainer`'s checkpoint folders: checkpoint-<global step>

# LoRA targets per language model: layers every path calls as modules. Mamba's and FalconMamba's fused CUDA training
# path (`mamba_inner_fn`) reads the weights of x_proj, dt_proj and out_proj directly, and Mamba-2's
# (`mamba_split_conv1d_scan_combined`, in Mamba-2 and FalconH1) that of out_proj, bypassing any adapter on them, so
# of the mixers only in_proj gets one; FalconH1's attention and MLP layers are plain modules.
LORA_TARGETS = {
    "mamba": ["in_proj"],
    "falcon_mamba": ["in_proj"],
    "mamba2": ["in_proj"],
    "falcon_h1": ["in_proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
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
        default=None, metadata={"help": "Build a tiny random model of this family (mamba, pythia, or another Mamba-VL "
        "backbone: mamba2, falcon_mamba, falcon_h1): offline runs."}
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
    pack_to: int | None = field(
        default=None,
        metadata={
            "help": "Padding-free training: pack each batch's samples into rows of at most this many tokens, each "
            "sample computed as if alone (Mamba-VL, FalconMamba-VL, Pythia-VL). Default: one padded row per sample."
        },
    )
    normalize_text: str | None = field(
        default=None,
        metadata={
            "help": "Text normalization, saved with the processor: True (the reference's), keep_case or False. "
            "Default: the loaded processor's (True for a new model)."
        },
    )
    box_normalization: str | None = field(
        default=None,
        metadata={
            "help": "How boxes are normalized for their text, saved with the processor: direct (x / W) or reference "
            "(the paper's (x * (S / W)) / S). Default: the loaded processor's (direct for a new model)."
        },
    )

    def __post_init__(self):
        for name in ("max_length", "pack_to"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive number of tokens, got {value}.")


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


def build_model(model_args: ModelArguments, texts=None, checkpoint: str | None = None):
    """The model and processor to train, from exactly one of `model_name_or_path`, `preset`, `tiny`.

    Args:
        model_args: The model flags.
        texts: The texts a tiny model's tokenizer is trained on (default: `vlmamba.toy.corpus()`).
        checkpoint: A `Trainer` checkpoint the run resumes from. Its processor (tokenizer and prompt format) is used,
            and so is its model when it holds one (a LoRA checkpoint holds adapters only: the base model is built from
            the flags), rather than a tokenizer trained on `texts` and a config from the `--tiny_*` flags.

    Returns:
        `(model, processor)`.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    choices = [name for name in ("model_name_or_path", "preset", "tiny") if getattr(model_args, name)]
    if len(choices) != 1:
        raise ValueError(f"Give exactly one of --model_name_or_path, --preset, --tiny (got {choices or 'none'}).")
    processor = None if checkpoint is None else AutoProcessor.from_pretrained(checkpoint)
    if checkpoint is not None and _holds_model(Path(checkpoint)):
        model = AutoModelForImageTextToText.from_pretrained(checkpoint)
    elif model_args.tiny:
        from .toy import tiny_model, tiny_processor, train_tokenizer

        if processor is None:
            tokenizer = train_tokenizer(texts) if texts else train_tokenizer()
            processor = tiny_processor(
                tokenizer, image_size=model_args.tiny_image_size, patch_size=model_args.tiny_patch_size
            )
        model = tiny_model(model_args.tiny, processor, width=model_args.tiny_width, depth=model_args.tiny_depth).train()
    elif model_args.preset:
        model, built = build_from_preset(model_args.preset)
        processor = processor or built
    else:
        processor = processor or AutoProcessor.from_pretrained(model_args.model_name_or_path)
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


def _holds_model(checkpoint: Path) -> bool:
    """Whether a checkpoint holds the whole model (config and weights), not LoRA adapters only."""
    return (checkpoint / "config.json").is_file() and not (checkpoint / "adapter_config.json").is_file()


def _unreadable(path: Path) -> str | None:
    """Why a checkpoint file cannot be read to its end (truncated, e.g. by a kill while saving), or None. Cheap: a
    safetensors header must cover the file, a torch file (a zip archive) must end with its directory."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(path, "pt"):
                return None
        if path.suffix == ".json":
            json.loads(path.read_text())
            return None
        return None if zipfile.is_zipfile(path) else "not a complete torch file"
    except Exception as error:  # safetensors, json and OS errors alike: the file cannot resume a run
        return str(error)


def _checkpoint_problems(checkpoint: Path, world_size: int) -> tuple[list[str], list[str]]:
    """What of `checkpoint` is missing or truncated: `(fatal, inexact)`. Fatal problems keep `Trainer` from resuming
    (the trainer state, model weights, the processor); inexact ones make it resume with fresh optimizer, scheduler or
    random state, so the run does not continue as an uninterrupted one would."""
    names = {entry.name for entry in checkpoint.iterdir()}
    fatal, inexact = [], []
    # `Trainer` writes trainer_state.json last: without it the save was cut short.
    for required in ("trainer_state.json", "processor_config.json"):
        if required not in names:
            fatal.append(f"{required} is missing")
    weights = [
        name
        for name in ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
        if name in names
    ]
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index_name in names:
            problem = _unreadable(checkpoint / index_name)
            if problem:
                fatal.append(f"{index_name} is unreadable ({problem})")
                continue
            shards = sorted(set(json.loads((checkpoint / index_name).read_text())["weight_map"].values()))
            fatal.extend(f"{shard} (listed in {index_name}) is missing" for shard in shards if shard not in names)
            weights.extend(shard for shard in shards if shard in names)
    # DeepSpeed keeps the model and optimizer states in global_step<N>/, FSDP's sharded state in pytorch_model_fsdp*.
    deepspeed = any(name.startswith("global_step") for name in names)
    if not (weights or deepspeed or any(name.startswith("pytorch_model_fsdp") for name in names)):
        fatal.append("it holds no model weights (model.safetensors, adapter_model.safetensors, ...)")
    rng = ["rng_state.pth"] if world_size == 1 else [f"rng_state_{rank}.pth" for rank in range(world_size)]
    optional = [name for name in ("optimizer.pt", "scheduler.pt", "scaler.pt", *rng) if name in names]
    for name in ("trainer_state.json", "processor_config.json", *weights, *optional):
        if name in names:
            problem = _unreadable(checkpoint / name)
            if problem:
                fatal.append(f"{name} is truncated or corrupt ({problem})")
    # FSDP may save the optimizer as optimizer.bin or optimizer_0/, tensor parallelism as rank<i>-of-<n>-optimizer.pt.
    optimizer = any(name.startswith("optimizer") or name.endswith("-optimizer.pt") for name in names)
    present = {"optimizer.pt": deepspeed or optimizer, "scheduler.pt": deepspeed or "scheduler.pt" in names}
    missing = [name for name, found in present.items() if not found]
    if missing:
        inexact.append(
            f"{' and '.join(missing)} missing: the optimizer (its moment estimates) and the learning-rate schedule "
            "start afresh (Trainer restores both or neither)"
        )
    missing_rng = [name for name in rng if name not in names]
    if missing_rng:
        inexact.append(f"{', '.join(missing_rng)} missing: random draws (dropout, ...) differ from the original run")
    return fatal, inexact


def find_checkpoint(resume_from_checkpoint: str | None, output_dir: str, world_size: int = 1) -> str | None:
    """The checkpoint a run resumes from, checked to be complete before anything of it is loaded.

    A checkpoint is complete when it holds `trainer_state.json` (which `Trainer` writes last), the processor and the
    model weights (or adapters), each readable to its end: a safetensors header that covers its file, a torch file
    (`optimizer.pt`, `scheduler.pt`, `rng_state.pth`) that ends with its zip directory. A complete checkpoint without
    optimizer or scheduler state (`save_only_model=True`) or without RNG state resumes with a warning saying what
    starts afresh: training goes on, but not as the uninterrupted run would have.

    Args:
        resume_from_checkpoint: `"last"` (the newest complete `checkpoint-<step>` of `output_dir`; newer incomplete
            ones, left by a kill while saving, are skipped with a warning saying why), a checkpoint path, or None.
        output_dir: The run's output folder, where `"last"` looks.
        world_size: The number of training processes (each has its own RNG state file).

    Returns:
        The checkpoint's path, or None to start from scratch (no `resume_from_checkpoint`, or no complete checkpoint
        in `output_dir`: a warning says so).

    Raises:
        ValueError: The given path is not a complete checkpoint; the message names the missing or truncated file.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint != "last":
        checkpoint = Path(resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise ValueError(f"--resume_from_checkpoint {checkpoint}: no such checkpoint folder.")
        fatal, inexact = _checkpoint_problems(checkpoint, world_size)
        if fatal:
            raise ValueError(f"Cannot resume from {checkpoint}: {'; '.join(fatal)}.")
        for problem in inexact:
            logger.warning("Resuming from %s, which is not a full training state: %s.", checkpoint, problem)
        return str(checkpoint)
    folder = Path(output_dir)
    steps = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = CHECKPOINT_DIR.match(path.name)
        if match and path.is_dir():
            steps[path] = int(match.group(1))
    for checkpoint in sorted(steps, key=steps.get, reverse=True):
        fatal, inexact = _checkpoint_problems(checkpoint, world_size)
        if fatal:
            logger.warning("Skipping %s, which is incomplete: %s.", checkpoint, "; ".join(fatal))
            continue
        for problem in inexact:
            logger.warning("Resuming from %s, which is not a full training state: %s.", checkpoint, problem)
        return str(checkpoint)
    logger.warning("No complete checkpoint in %s: starting from scratch.", folder)
    return None


def _apply_precision(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    if model_args.precision == "auto":
        if not (training_args.bf16 or training_args.fp16):
            training_args.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    elif model_args.precision in ("bf16", "fp16"):
        setattr(training_args, model_args.precision, True)
    elif model_args.precision != "fp32":
        raise ValueError(f"--precision must be auto, fp32, bf16 or fp16, got {model_args.precision!r}.")


class _VLMambaTrainer(Trainer):
    """`Trainer` that counts the training samples without a supervised token (logged as `unsupervised_samples`) and
    does not report a tied head as missing from the checkpoints it resumes from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._unsupervised = 0

    @property
    def unsupervised_samples(self) -> int:
        """The training samples so far, over all processes, whose labels are all -100 (they trained nothing)."""
        return int(self._unsupervised)

    def training_step(self, model, inputs, num_items_in_batch=None):
        count = _unsupervised_samples(inputs).to(self.args.device)
        if self.args.world_size > 1:
            count = self.accelerator.reduce(count, reduction="sum")
        self._unsupervised = self._unsupervised + count  # a device tensor: no synchronization until logged
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs["unsupervised_samples"] = self.unsupervised_samples
        super().log(logs, start_time)

    def _issue_warnings_after_load(self, load_result):
        # Trainer recognizes only `_keys_to_ignore_on_save` as keys a checkpoint may lack, so it calls the tied lm_head
        # (which safetensors saves once, as the embeddings) missing. A key whose parameter is its tie source's is not.
        parameters = dict(self.model.named_parameters(remove_duplicate=False))
        tied = getattr(self.model, "all_tied_weights_keys", None) or {}
        missing = [
            key
            for key in load_result.missing_keys
            if not (
                key in tied
                and tied[key] not in load_result.missing_keys
                and parameters.get(key) is not None
                and parameters.get(key) is parameters.get(tied[key])
            )
        ]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))


def _unsupervised_samples(inputs) -> torch.Tensor:
    """How many samples of a batch have no supervised label: rows, or the sequences of packed rows."""
    labels = inputs["labels"]
    seq_idx = inputs.get("seq_idx")
    if seq_idx is None:
        seq_idx = packed_sequence_index(inputs.get("position_ids"), inputs.get("attention_mask"))
    if seq_idx is None:
        return (labels != -100).sum(-1).eq(0).sum()
    ids, samples = packed_sample_ids(seq_idx)
    supervised = torch.zeros(samples, dtype=torch.long, device=labels.device)
    supervised.index_add_(0, ids.reshape(-1).to(labels.device), (labels != -100).reshape(-1).long())
    return supervised.eq(0).sum()


def make_trainer(
    model, processor, train_dataset, training_args, eval_dataset=None, max_length=None, callbacks=None, pack_to=None
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
        pack_to: Padding-free batches: pack each batch's samples into rows of at most this many tokens
            (`VLMambaDataCollator(pack_to=...)`; Mamba-VL, FalconMamba-VL and Pythia-VL). None: one padded row each.

    Returns:
        The `Trainer`, not yet trained. Its training logs (and `trainer.unsupervised_samples`) count the samples
        without a supervised token, which train nothing (e.g. a `max_length` that cuts their answer); the collator
        warns about each batch that holds one, naming the examples.
    """
    training_args.remove_unused_columns = False  # the collator needs the structured examples as they are
    collator = VLMambaDataCollator(processor, max_length=max_length, pack_to=pack_to)
    return _VLMambaTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )


def train(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, callbacks=None):
    """Runs one stage; returns the trainer (its model is trained and saved to `output_dir`).

    With `--resume_from_checkpoint` (`"last"` or a path, see `find_checkpoint`) the tokenizer, processor and model
    config are the checkpoint's: the data and `--tiny_*` flags do not rebuild them, and a `--normalize_text` that
    differs from the checkpoint's is an error. `callbacks` are `TrainerCallback`s added to the trainer's.
    """
    set_seed(training_args.seed)
    _apply_precision(model_args, training_args)
    checkpoint = find_checkpoint(
        training_args.resume_from_checkpoint, training_args.output_dir, world_size=training_args.world_size
    )
    normalize_text = _normalize_text(data_args.normalize_text)
    train_dataset, eval_dataset = load_data(data_args)
    texts = None
    if model_args.tiny and checkpoint is None:
        texts = prompt_texts(train_dataset, True if normalize_text is None else normalize_text)
    model, processor = build_model(model_args, texts, checkpoint=checkpoint)
    if normalize_text is not None:
        if checkpoint is not None and normalize_text != processor.normalize_text:
            raise ValueError(
                f"--normalize_text {data_args.normalize_text} differs from the normalization of {checkpoint} "
                f"({processor.normalize_text}); a resumed run keeps its prompt format: drop the flag."
            )
        processor.normalize_text = normalize_text
    if data_args.box_normalization is not None:
        if data_args.box_normalization not in BOX_NORMALIZATIONS:
            raise ValueError(
                f"--box_normalization must be one of {', '.join(BOX_NORMALIZATIONS)}, got "
                f"{data_args.box_normalization!r}."
            )
        if checkpoint is not None and data_args.box_normalization != processor.box_normalization:
            raise ValueError(
                f"--box_normalization {data_args.box_normalization} differs from that of {checkpoint} "
                f"({processor.box_normalization}); a resumed run keeps its box format: drop the flag."
            )
        processor.box_normalization = data_args.box_normalization
    if checkpoint is not None:
        logger.info("Resuming from %s, with its tokenizer, processor and model config.", checkpoint)
    model = select_trainable(model, model_args)
    trainer = make_trainer(
        model,
        processor,
        train_dataset,
        training_args,
        eval_dataset=eval_dataset,
        max_length=data_args.max_length,
        callbacks=callbacks,
        pack_to=data_args.pack_to,
    )
    logger.info(
        "Stage %d, %d trainable parameters, %d process(es), %d training examples.",
        model_args.stage,
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        training_args.world_size,
        len(train_dataset),
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.unsupervised_samples and trainer.is_world_process_zero():
        logger.warning(
            "%d training samples had no supervised token and trained nothing (--max_length %s).",
            trainer.unsupervised_samples,
            data_args.max_length,
        )
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
    "find_checkpoint",
    "select_trainable",
    "load_data",
    "prompt_texts",
    "make_trainer",
    "train",
    "main",
]
