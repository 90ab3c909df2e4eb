# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""
Converting checkpoints of other formats to folders `from_pretrained` loads:

- the paper's published Mamba-VL and Pythia-VL checkpoints (`gpantaz/pretrained_mambavl_790m` ...
  `gpantaz/finetuned_pythiavl_2.8b`) to vlmamba folders that compute what the reference computed: Mamba-VL with
  LayerNorm-with-bias blocks and the residual in the model dtype (`norm_type="layernorm"`,
  `residual_in_fp32=False`), the EVA-02 tower through transformers' timm wrapper, the MLP connector, the tied head;
- raw mamba-ssm language models (`state-spaces/mamba-*`, e.g. `mamba-2.8b-slimpj`) to transformers'
  `MambaForCausalLM`, usable as `language_model=` of the builder.

Every weight of the source lands in the destination or the conversion stops with the list of the keys that did not
fit; a second copy of a tied head is checked equal to the embedding before it is dropped.
"""

import json
import re
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, MambaConfig, MambaForCausalLM
from transformers.utils import logging

from .builder import load_tokenizer, processor_for_tower, set_generation_defaults
from .models.configuration_vlmamba import EVA02_VISION_CONFIG, MambaVLConfig, PythiaVLConfig
from .models.modeling_vlmamba import MambaVLForConditionalGeneration, PythiaVLForConditionalGeneration
from .models.processing_vlmamba import FREE_PROMPT_MAX_NEW_TOKENS, VLMambaProcessor


logger = logging.get_logger(__name__)

# The reference's model classes, as its config.json files name them in `architectures`.
REFERENCE_ARCHITECTURES = {"VLMambaCLIPLMHeadModel": "mamba_vl", "VLCLIPGPTNeoXForCausalLM": "pythia_vl"}

# The published checkpoints: the paper's three sizes of each family, after stage 1 ("pretrained") and stage 2
# ("finetuned").
PAPER_CHECKPOINTS = tuple(
    f"gpantaz/{stage}_{family}_{size}"
    for stage in ("pretrained", "finetuned")
    for family, sizes in (("mambavl", ("790m", "1.4b", "2.8b")), ("pythiavl", ("1b", "1.4b", "2.8b")))
    for size in sizes
)

# Pythia's configs by (width, depth), for a Pythia-VL checkpoint published without its config.json: the attention
# heads cannot be read off the weights. The Pythia suite's values.
PYTHIA_BASE_CONFIGS = {
    (2048, 16): ("EleutherAI/pythia-1b", {"num_attention_heads": 8, "intermediate_size": 8192}),
    (2048, 24): ("EleutherAI/pythia-1.4b", {"num_attention_heads": 16, "intermediate_size": 8192}),
    (2560, 32): ("EleutherAI/pythia-2.8b", {"num_attention_heads": 32, "intermediate_size": 10240}),
}
_PYTHIA_SHARED = {
    "rotary_pct": 0.25,
    "rotary_emb_base": 10000,
    "max_position_embeddings": 2048,
    "use_parallel_residual": True,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

# Fields of the reference's config.json that describe the vision side or the reference's own code, not a language
# model.
_REFERENCE_ONLY_FIELDS = (
    "architectures", "image_size", "vision_encoder_name", "select_layer", "select_feature", "_name_or_path",
    "transformers_version", "torch_dtype", "dtype", "pixel_based", "instruction_first",
)
# GPT-NeoX-20B's `<|endoftext|>`, the eos (and pad) of every model of the paper.
GPT_NEOX_EOS_TOKEN_ID = 0


class ConversionError(ValueError):
    """A source that cannot be converted exactly; the message names the file, key or field."""


def _resolve(source) -> Path:
    """A local folder as it is; anything else is a Hub repo id, downloaded (weights and configs only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{source} is a file; pass the checkpoint's folder or a Hub repo id.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except (HFValidationError, RepositoryNotFoundError) as error:
        raise ConversionError(f"{source} is neither a local folder nor a Hub repo id ({error}).") from None
    except LocalEntryNotFoundError:
        raise ConversionError(
            f"{source} is not a local folder, and it could not be downloaded (offline, or HF_HUB_OFFLINE is set)."
        ) from None


def _weight_files(folder: Path) -> list[Path]:
    """The weight files of a folder: the index's shards when there is an index, else every safetensors (or, when
    there is none, PyTorch) file, so that shards uploaded without their index are all read."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = folder / index_name
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ConversionError(f"{index_path} is not a weight index: {error}") from None
            files = [folder / name for name in sorted(set(weight_map.values()))]
            missing = [str(file) for file in files if not file.is_file()]
            if missing:
                raise ConversionError(f"{index_path} names shards that are not in the folder: {missing}")
            return files
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ConversionError(f"No weights (*.safetensors or *.bin) in {folder}.")
    return files


def _read_file(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            return load_file(file)
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as error:
        raise ConversionError(f"Cannot read the weights file {file}: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ConversionError(f"{file} does not hold a state dict of tensors.")
    return state


def read_state_dict(folder) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder's weight files, one dict; a key found in two files is an error unless both
    copies are equal."""
    state, origin = {}, {}
    for file in _weight_files(Path(folder)):
        for key, value in _read_file(file).items():
            if key in state and not (state[key].shape == value.shape and torch.equal(state[key], value)):
                raise ConversionError(f"{key} is in both {origin[key].name} and {file.name}, with different values.")
            state[key], origin[key] = value, file
    return state


def _read_config(folder: Path) -> dict | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path} does not hold a JSON object.")
    return config


def detect_format(state: dict[str, torch.Tensor], config: dict | None = None) -> str:
    """`"mamba_vl"` / `"pythia_vl"` for the paper's checkpoints, `"mamba_ssm"` for a raw mamba-ssm language model."""
    vision = "vision_embed_tokens.0.weight" in state
    if vision and "backbone.embedding.weight" in state:
        return "mamba_vl"
    if vision and "gpt_neox.embed_in.weight" in state:
        return "pythia_vl"
    if not vision and "backbone.embedding.weight" in state and not any(key.startswith("vision_") for key in state):
        return "mamba_ssm"
    declared = [REFERENCE_ARCHITECTURES.get(name) for name in (config or {}).get("architectures") or []]
    sample = sorted(state)[:8]
    raise ConversionError(
        "Not a checkpoint this converter knows: expected the paper's Mamba-VL (backbone.embedding.*, "
        "vision_embed_tokens.*), Pythia-VL (gpt_neox.*, vision_embed_tokens.*) or a mamba-ssm language model "
        f"(backbone.*); config.json's architectures say {declared or 'nothing'}, the first keys are {sample}."
    )


def _layer_count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in state if (match := pattern.match(key))}
    if not indices:
        raise ConversionError(f"No layers under {prefix} in the checkpoint.")
    if indices != set(range(len(indices))):
        raise ConversionError(f"The layers under {prefix} are not numbered 0..N-1: {sorted(indices)}.")
    return len(indices)


def _mamba_text_config(state: dict, source_config: dict | None, residual_in_fp32: bool) -> MambaConfig:
    """A transformers Mamba config read off the mixer weights (mamba-ssm's `Mamba` layer), checked against the
    source's config.json where it states a value."""
    embedding = state["backbone.embedding.weight"]
    vocab_size, hidden_size = embedding.shape
    layers = _layer_count(state, "backbone.layers.")
    mixer = "backbone.layers.0.mixer."
    for name in ("in_proj.weight", "conv1d.weight", "x_proj.weight", "dt_proj.weight", "A_log", "D", "out_proj.weight"):
        if mixer + name not in state:
            raise ConversionError(f"{mixer + name} is missing: layer 0 is not a mamba-ssm Mamba (v1) mixer.")
    intermediate_size = state[mixer + "in_proj.weight"].shape[0] // 2
    fields = {
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "vocab_size": vocab_size,
        "state_size": state[mixer + "A_log"].shape[1],
        "expand": intermediate_size // hidden_size,
        "intermediate_size": intermediate_size,
        "conv_kernel": state[mixer + "conv1d.weight"].shape[-1],
        "time_step_rank": state[mixer + "dt_proj.weight"].shape[1],
        "use_bias": mixer + "in_proj.bias" in state,
        "use_conv_bias": mixer + "conv1d.bias" in state,
        "layer_norm_epsilon": 1e-5,
        "residual_in_fp32": residual_in_fp32,
        "tie_word_embeddings": True,
        "bos_token_id": GPT_NEOX_EOS_TOKEN_ID,
        "eos_token_id": GPT_NEOX_EOS_TOKEN_ID,
        "pad_token_id": GPT_NEOX_EOS_TOKEN_ID,
    }
    if intermediate_size % hidden_size:
        raise ConversionError(f"The mixers' inner width {intermediate_size} is not a multiple of {hidden_size}.")
    source_config = source_config or {}
    ssm_cfg = source_config.get("ssm_cfg") or {}
    if ssm_cfg.get("layer", "Mamba1") != "Mamba1":
        raise ConversionError(f"config.json's ssm_cfg names a {ssm_cfg['layer']} layer; only Mamba (v1) converts.")
    stated = {
        "hidden_size": source_config.get("d_model"),
        "num_hidden_layers": source_config.get("n_layer"),
        "state_size": ssm_cfg.get("d_state"),
        "conv_kernel": ssm_cfg.get("d_conv"),
        "expand": ssm_cfg.get("expand"),
    }
    for name, value in stated.items():
        if value is not None and value != fields[name]:
            raise ConversionError(f"config.json says {name}={value}, the weights have {fields[name]}.")
    return MambaConfig(**fields)


def _pythia_text_config(state: dict, source_config: dict | None, base_model: str | None):
    """The GPT-NeoX config of a Pythia-VL checkpoint: its config.json without the reference's vision fields, or, for a
    checkpoint published without one, `base_model`'s config or Pythia's config of that width and depth."""
    vocab_size, hidden_size = state["gpt_neox.embed_in.weight"].shape
    layers = _layer_count(state, "gpt_neox.layers.")
    if source_config is not None:
        fields = {key: value for key, value in source_config.items() if key not in _REFERENCE_ONLY_FIELDS}
        fields.pop("model_type", None)
        config = AutoConfig.for_model("gpt_neox", **fields)
    elif base_model is not None:
        config = AutoConfig.from_pretrained(base_model)
        if config.model_type != "gpt_neox":
            raise ConversionError(f"base_model {base_model} is a {config.model_type!r} model, not gpt_neox.")
    elif (hidden_size, layers) in PYTHIA_BASE_CONFIGS:
        _, fields = PYTHIA_BASE_CONFIGS[(hidden_size, layers)]
        config = AutoConfig.for_model(
            "gpt_neox", hidden_size=hidden_size, num_hidden_layers=layers, vocab_size=vocab_size,
            **_PYTHIA_SHARED, **fields,
        )
    else:
        raise ConversionError(
            f"The checkpoint has no config.json and its width {hidden_size} and depth {layers} are not one of "
            "Pythia's 1B, 1.4B and 2.8B; pass base_model= (--base-model) the base model's Hub id or folder."
        )
    for name, value in (("hidden_size", hidden_size), ("num_hidden_layers", layers), ("vocab_size", vocab_size)):
        if getattr(config, name) != value:
            raise ConversionError(f"The config says {name}={getattr(config, name)}, the weights have {value}.")
    if config.pad_token_id is None:
        config.pad_token_id = GPT_NEOX_EOS_TOKEN_ID
    return config


def reference_vision_config(source_config: dict | None) -> dict:
    """The timm-wrapper config of the reference's tower: `vision_encoder_name` at `image_size` (EVA-02-L/14-336 when
    the config says nothing)."""
    source_config = source_config or {}
    name = source_config.get("vision_encoder_name", "timm/" + EVA02_VISION_CONFIG["architecture"])
    if "eva" not in name:
        raise ConversionError(
            f"vision_encoder_name {name!r}: the reference builds only EVA towers (timm) for its published models; "
            "pass vision_config= for another tower."
        )
    architecture = name.removeprefix("timm/").split(".")[0]
    image_size = source_config.get("image_size", 336)
    return {"model_type": "timm_wrapper", "architecture": architecture, "do_pooling": False,
            "model_args": {"img_size": image_size}}


def _map_mamba_backbone(state: dict, prefix: str) -> dict[str, str]:
    """mamba-ssm's `backbone.*` names to transformers' `MambaModel` names under `prefix`: `{new name: source name}`."""
    names = {}
    for key in state:
        if key == "backbone.embedding.weight":
            names[prefix + "embeddings.weight"] = key
        elif key.startswith("backbone."):
            names[prefix + key.removeprefix("backbone.")] = key
    return names


def _check_tied_head(state: dict, embedding_key: str) -> None:
    """A saved `lm_head.weight` of a tied model must be the embedding: then it is dropped, and the head is tied."""
    head = state.get("lm_head.weight")
    if head is not None and not (head.shape == state[embedding_key].shape and torch.equal(head, state[embedding_key])):
        raise ConversionError(
            f"lm_head.weight differs from {embedding_key}: the model was trained with tied embeddings, so the "
            "head cannot be tied without changing its output."
        )


_CONNECTOR_NAMES = {
    "vision_embed_tokens.0.": "model.connector.linear_1.",
    "vision_embed_tokens.2.": "model.connector.linear_2.",
}


def _map_reference(state: dict, family: str) -> dict[str, str]:
    """The paper's checkpoint names to vlmamba's, `{new name: source name}`; a name no rule covers is kept as it is,
    so that the exact load lists it."""
    names = {}
    for key in state:
        connector = next((old for old in _CONNECTOR_NAMES if key.startswith(old)), None)
        if key.startswith("vision_encoder."):
            names["model.vision_tower.timm_model." + key.removeprefix("vision_encoder.")] = key
        elif connector is not None:
            names[_CONNECTOR_NAMES[connector] + key.removeprefix(connector)] = key
        elif family == "pythia_vl" and key.startswith("gpt_neox."):
            names["model.language_model." + key.removeprefix("gpt_neox.")] = key
        elif family == "pythia_vl" and key == "embed_out.weight":
            names["lm_head.weight"] = key
        elif family == "mamba_vl" and (key.startswith("backbone.") or key == "lm_head.weight"):
            continue
        else:
            names[key] = key
    if family == "mamba_vl":
        _check_tied_head(state, "backbone.embedding.weight")
        names.update(_map_mamba_backbone(state, "model.language_model."))
    return names


def _load_exactly(model, state: dict, names: dict[str, str]) -> None:
    """Puts the source's tensors (`state`, renamed by `names`) into `model`, built without weights: every weight of
    the model comes from the source and every tensor of the source has a place, or the error lists what does not."""
    expected = model.state_dict()
    tied = set()
    if model.config.tie_word_embeddings:
        tied = {key for key in expected if key in (getattr(model, "_tied_weights_keys", None) or {})}
    missing = sorted(set(expected) - set(names) - tied)
    unexpected = sorted(names[key] for key in set(names) - set(expected))
    problems = []
    if missing:
        problems.append(f"the model's {missing} are not in the checkpoint")
    if unexpected:
        problems.append(f"the checkpoint's {unexpected} have no place in the model")
    problems.extend(
        f"{old} has shape {tuple(state[old].shape)}, the model's {new} {tuple(expected[new].shape)}"
        for new, old in names.items() if new in expected and state[old].shape != expected[new].shape
    )
    if problems:
        raise ConversionError("The checkpoint's weights do not fit the model: " + "; ".join(problems) + ".")
    model.load_state_dict({new: state[old] for new, old in names.items()}, strict=False, assign=True)
    model.tie_weights()


def _build_empty(model_class, config):
    with init_empty_weights(include_buffers=False):
        return model_class(config)


def _processor(tokenizer_source, config, tower) -> VLMambaProcessor:
    """The processor for a converted model from a tokenizer folder (none ships with the paper's checkpoints), whose
    image block must come out as the ids the model was trained with."""
    processor = processor_for_tower(load_tokenizer(tokenizer_source), tower)
    layout = processor.image_layout()
    wrong = [f"{name}: the tokenizer gives {layout[name]}, the model was trained with {getattr(config, name)}"
             for name in ("image_token_id", "image_begin_token_id", "image_end_token_id", "row_separator_token_id")
             if layout[name] != getattr(config, name)]
    if wrong:
        raise ConversionError(
            f"The tokenizer {tokenizer_source} does not give the model's image-block ids ({'; '.join(wrong)}); the "
            "paper's models use GPT-NeoX-20B's tokenizer, with <image> added as id 50277."
        )
    return processor


def convert_checkpoint(
    source,
    destination,
    *,
    tokenizer=None,
    base_model: str | None = None,
    vision_config: dict | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: str | int = "5GB",
    repo_id: str | None = None,
    paper_checkpoint: str | None = None,
) -> Path:
    r"""
    Converts a checkpoint folder (or Hub repo id) of the paper's reference code, or a raw mamba-ssm language model,
    into `destination`, a folder that `from_pretrained` loads.

    Args:
        source: The checkpoint's folder or Hub repo id (e.g. `gpantaz/finetuned_mambavl_1.4b`,
            `state-spaces/mamba-2.8b-slimpj`).
        destination: The output folder.
        tokenizer (*optional*): A tokenizer folder or Hub id saved with the model (none ships with the paper's
            checkpoints: GPT-NeoX-20B's). For the vision-language models a processor is saved too, checked to
            produce the image-block ids the model was trained with.
        base_model (`str`, *optional*): For a Pythia-VL checkpoint without config.json: the base model whose
            config to use (default: Pythia's config of the checkpoint's width and depth).
        vision_config (`dict`, *optional*): The vision tower's config, for a checkpoint whose tower is not the
            `vision_encoder_name` of its config.json.
        dtype (`torch.dtype`, *optional*): Cast the weights (default: keep the checkpoint's dtype, bf16 for the
            paper's).
        max_shard_size: Largest weight shard of the output.
        repo_id (`str`, *optional*): The Hub repo the converted folder is for, named by its model card's usage code.
        paper_checkpoint (`str`, *optional*): Which of `PAPER_CHECKPOINTS` the source is (default: the source itself,
            or a local folder of the same name). With a tokenizer, a vision-language checkpoint gets a model card
            (`README.md`) that cites the paper, with the scores it reports for the stage-2 checkpoints.

    Returns:
        The destination folder.
    """
    folder = _resolve(source)
    source_config = _read_config(folder)
    state = read_state_dict(folder)
    kind = detect_format(state, source_config)
    if dtype is not None:
        state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    destination = Path(destination)

    if kind == "mamba_ssm":
        if source_config is not None and source_config.get("rms_norm") is False:
            raise ConversionError(
                "config.json says rms_norm=false: transformers' Mamba has RMSNorm only; a LayerNorm backbone "
                "converts as part of a Mamba-VL checkpoint (norm_type='layernorm')."
            )
        residual_in_fp32 = (source_config or {}).get("residual_in_fp32", True)
        config = _mamba_text_config(state, source_config, residual_in_fp32)
        _check_tied_head(state, "backbone.embedding.weight")
        model = _build_empty(MambaForCausalLM, config)
        _load_exactly(model, state, _map_mamba_backbone(state, "backbone."))
        model.generation_config.eos_token_id = GPT_NEOX_EOS_TOKEN_ID
        model.generation_config.pad_token_id = GPT_NEOX_EOS_TOKEN_ID
        model.save_pretrained(destination, max_shard_size=max_shard_size)
        if tokenizer is not None:
            load_tokenizer(tokenizer).save_pretrained(destination)
        return destination

    if kind == "mamba_vl":
        text_config = _mamba_text_config(state, source_config, residual_in_fp32=False)
        config_class, model_class, extra = MambaVLConfig, MambaVLForConditionalGeneration, {"norm_type": "layernorm"}
    else:
        text_config = _pythia_text_config(state, source_config, base_model)
        config_class, model_class, extra = PythiaVLConfig, PythiaVLForConditionalGeneration, {}
    try:
        config = config_class(
            vision_config=vision_config or reference_vision_config(source_config),
            text_config=text_config.to_dict(),
            connector_type="mlp",
            connector_hidden_act="gelu",
            **extra,
        )
    except ValueError as error:
        raise ConversionError(f"The converted config is not valid: {error}") from None
    model = _build_empty(model_class, config)
    _load_exactly(model, state, _map_reference(state, kind))
    model.config.dtype = next(iter(state.values())).dtype
    processor = _processor(tokenizer, config, model.model.vision_tower) if tokenizer is not None else None
    if processor is not None:
        set_generation_defaults(model, processor.tokenizer)
    else:
        generation_config = model.generation_config
        generation_config.eos_token_id = generation_config.pad_token_id = GPT_NEOX_EOS_TOKEN_ID
        generation_config.bos_token_id = GPT_NEOX_EOS_TOKEN_ID
        generation_config.max_new_tokens = FREE_PROMPT_MAX_NEW_TOKENS
    model.save_pretrained(destination, max_shard_size=max_shard_size)
    if processor is not None:
        processor.save_pretrained(destination)
        _write_card(destination, model, processor, paper_checkpoint or _paper_checkpoint(source), repo_id)
    else:
        logger.warning(
            "No tokenizer given: %s holds no processor and no model card; convert again with a tokenizer "
            "(GPT-NeoX-20B's for the paper's models) to generate with it or publish it.", destination
        )
    return destination


def _paper_checkpoint(source) -> str | None:
    """The published checkpoint a source is: its Hub id, or a local folder named like one."""
    name = str(source).rstrip("/")
    return next((repo for repo in PAPER_CHECKPOINTS if name == repo or Path(name).name == repo.split("/")[1]), None)


def _write_card(destination: Path, model, processor, checkpoint: str | None, repo_id: str | None) -> None:
    """The converted folder's model card: the paper cited, its reported scores for a stage-2 checkpoint (POPE is
    left out: the paper does not say which subset its single POPE column is)."""
    from .evaluation.published import MODEL_NAMES, PAPER_SCORES
    from .model_card import PAPER_CITATION, write_model_card

    family = "Mamba-VL" if model.config.model_type == "mamba_vl" else "Pythia-VL"
    if checkpoint is None:
        title, description, scores = f"{family} (converted)", None, None
    else:
        stage = "stage 1 (alignment)" if "/pretrained_" in checkpoint else "stage 2 (instruction tuning)"
        name = MODEL_NAMES.get(checkpoint.replace("/pretrained_", "/finetuned_"), family)
        title = f"{name}, {stage}"
        scores = {key: value for key, value in PAPER_SCORES.get(checkpoint, {}).items() if key != "pope"} or None
        description = (
            f"`{checkpoint}`, the {stage} checkpoint of {name} from the paper, converted with "
            "`vlmamba convert`: the same weights, computing what the reference code computed (LayerNorm blocks for "
            "Mamba-VL)."
        )
    base_model = [checkpoint] if checkpoint else None  # the Hub relation of a converted copy to its source
    write_model_card(
        destination, model, processor, title=title, description=description, repo_id=repo_id,
        paper_scores=scores, citation=PAPER_CITATION, base_model=base_model,
    )


__all__ = [
    "ConversionError",
    "PAPER_CHECKPOINTS",
    "convert_checkpoint",
    "detect_format",
    "read_state_dict",
    "reference_vision_config",
]
