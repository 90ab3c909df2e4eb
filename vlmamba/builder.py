# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Assembling a model and its processor from a pretrained vision tower and a pretrained language model."""

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    PreTrainedModel,
    SiglipVisionModel,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .models.configuration_vlmamba import MambaVLConfig, PythiaVLConfig, vision_geometry
from .models.image_processing_vlmamba import VLMambaImageProcessor
from .models.modeling_vlmamba import MambaVLForConditionalGeneration, PythiaVLForConditionalGeneration
from .models.processing_vlmamba import FREE_PROMPT_MAX_NEW_TOKENS, VLMambaProcessor


FAMILIES = {
    "mamba": (MambaVLConfig, MambaVLForConditionalGeneration),
    "pythia": (PythiaVLConfig, PythiaVLForConditionalGeneration),
}

# The vision tower of the paper: EVA02-CLIP-L/14 at 336 px; `merged2b_s6b_b61k` is timm's only tag for it.
EVA02_L_336 = "timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k"
GPT_NEOX_TOKENIZER = "EleutherAI/gpt-neox-20b"

# The paper's sizes; Mamba-VL 790M is paired with Pythia-VL 1B, 1.4B with 1.4B and 2.8B with 2.8B.
PRESETS = {
    "mamba-vl-790m": {"family": "mamba", "language_model": "state-spaces/mamba-790m-hf"},
    "mamba-vl-1.4b": {"family": "mamba", "language_model": "state-spaces/mamba-1.4b-hf"},
    "mamba-vl-2.8b": {"family": "mamba", "language_model": "state-spaces/mamba-2.8b-hf"},
    "pythia-vl-1b": {"family": "pythia", "language_model": "EleutherAI/pythia-1b"},
    "pythia-vl-1.4b": {"family": "pythia", "language_model": "EleutherAI/pythia-1.4b"},
    "pythia-vl-2.8b": {"family": "pythia", "language_model": "EleutherAI/pythia-2.8b"},
}
for _preset in PRESETS.values():
    _preset.update(vision_model=EVA02_L_336, tokenizer=GPT_NEOX_TOKENIZER)

# VL-Mamba's final configuration: SigLIP-SO400M/14 at 384 px (27 x 27 patches), the VSS-L2 connector with the
# bidirectional scan, and Mamba-2.8B. The paper's `state-spaces/mamba-2.8b-slimpj` has no transformers-format
# release, so the preset takes `state-spaces/mamba-2.8b-hf` (trained on the Pile); pass `language_model=` a folder
# converted from the SlimPajama checkpoint to follow the paper. The `-clip` preset is the paper's CLIP-ViT-L/14-336
# encoder ablation.
SIGLIP_SO400M_384 = "google/siglip-so400m-patch14-384"
CLIP_L_336 = "openai/clip-vit-large-patch14-336"
_VL_MAMBA = {
    "family": "mamba",
    "language_model": "state-spaces/mamba-2.8b-hf",
    "tokenizer": GPT_NEOX_TOKENIZER,
    "connector_type": "vss_l2",
    "vss_scan": "bidirectional",
}
PRESETS["vl-mamba-2.8b"] = {**_VL_MAMBA, "vision_model": SIGLIP_SO400M_384}
PRESETS["vl-mamba-2.8b-clip"] = {**_VL_MAMBA, "vision_model": CLIP_L_336}


def _load_vision_tower(vision_model: str, dtype) -> PreTrainedModel:
    """The vision-only model of a Hub id or folder (CLIP/SigLIP repos hold a text tower too, which is left out)."""
    config = AutoConfig.from_pretrained(vision_model)
    if config.model_type == "clip":
        return CLIPVisionModel.from_pretrained(vision_model, dtype=dtype)
    if config.model_type == "siglip":
        return SiglipVisionModel.from_pretrained(vision_model, dtype=dtype)
    if config.model_type == "timm_wrapper":
        config.do_pooling = False
        return AutoModel.from_pretrained(vision_model, config=config, dtype=dtype)
    return AutoModel.from_pretrained(vision_model, dtype=dtype)


def _normalization(vision_model: str, tower: PreTrainedModel) -> tuple[list[float], list[float]]:
    """Mean and std the tower was trained with."""
    if tower.config.model_type == "timm_wrapper":
        pretrained_cfg = getattr(tower.timm_model, "pretrained_cfg", None) or {}
        if "mean" in pretrained_cfg and "std" in pretrained_cfg:
            return list(pretrained_cfg["mean"]), list(pretrained_cfg["std"])
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    try:
        image_processor = AutoImageProcessor.from_pretrained(vision_model)
    except (OSError, ValueError):
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    return list(image_processor.image_mean), list(image_processor.image_std)


def set_generation_defaults(model, tokenizer) -> None:
    """Writes the generation defaults a saved model carries in `generation_config.json`: the tokenizer's special
    token ids and `max_new_tokens` (`FREE_PROMPT_MAX_NEW_TOKENS`), so that `generate()` without arguments stops at eos
    and counts new tokens rather than the model-agnostic `max_length`, which a prompt's image block alone exceeds."""
    generation_config = model.generation_config
    generation_config.eos_token_id = tokenizer.eos_token_id
    generation_config.pad_token_id = tokenizer.pad_token_id
    generation_config.bos_token_id = tokenizer.bos_token_id
    generation_config.max_new_tokens = FREE_PROMPT_MAX_NEW_TOKENS


def build_from_components(
    family: str,
    vision_model: str,
    language_model: str,
    tokenizer: str | None = None,
    *,
    image_token: str = "<image>",
    image_begin_token: str | None = "###",
    image_end_token: str | None = "###",
    row_separator_token: str | None = "&&",
    instruction_first: bool = False,
    dtype: torch.dtype | None = None,
    pad_to_multiple_of: int = 8,
    **config_kwargs,
):
    r"""
    Builds a fresh model (pretrained tower and language model, newly initialised connector) and its processor.

    Args:
        family (`str`): `"mamba"` (Mamba-VL) or `"pythia"` (Pythia-VL).
        vision_model (`str`): Hub id or folder of a timm, CLIP or SigLIP vision model.
        language_model (`str`): Hub id or folder of a `mamba` or `gpt_neox` causal language model.
        tokenizer (`str`, *optional*): Hub id or folder of the tokenizer; defaults to `language_model`.
        image_token, image_begin_token, image_end_token, row_separator_token:
            The image-block layout, see [`VLMambaProcessor`]. The defaults reproduce the reference (`###`/`&&`
            GPT-NeoX pieces; a tokenizer without them is an error). Pass e.g. `"<image_begin>"` to use dedicated
            tokens instead: a marker you name that the tokenizer lacks is added to it as a special token.
        instruction_first (`bool`): The task-aware layout.
        dtype (`torch.dtype`, *optional*): dtype to load the pretrained weights in.
        pad_to_multiple_of (`int`): When the tokenizer grows past the embedding matrix, resize it to a multiple of this.
        config_kwargs: Further config fields (`connector_type`, `vision_feature_layer`, `freeze_vision_tower`, ...).

    Returns:
        `(model, processor)`; `model.save_pretrained(d)` and `processor.save_pretrained(d)` make a loadable folder.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {', '.join(FAMILIES)}.")
    config_class, model_class = FAMILIES[family]

    tokenizer = AutoTokenizer.from_pretrained(tokenizer or language_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Markers asked for by name become tokens; the reference's defaults must already be pieces of the vocabulary.
    defaults = {"###", "&&"}
    named = [marker for marker in dict.fromkeys((image_begin_token, image_end_token, row_separator_token))
             if marker is not None and marker not in defaults and marker not in tokenizer.get_vocab()]
    if named:
        tokenizer.add_special_tokens({"additional_special_tokens": named}, replace_extra_special_tokens=False)

    tower = _load_vision_tower(vision_model, dtype)
    image_size, patch_size = vision_geometry(tower.config)
    mean, std = _normalization(vision_model, tower)
    image_processor = VLMambaImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=mean, image_std=std
    )
    processor = VLMambaProcessor(
        image_processor,
        tokenizer,
        image_token=image_token,
        image_begin_token=image_begin_token,
        image_end_token=image_end_token,
        row_separator_token=row_separator_token,
        patch_size=patch_size,
        instruction_first=instruction_first,
    )

    language = AutoModelForCausalLM.from_pretrained(language_model, dtype=dtype)
    if language.config.model_type != config_class.text_model_type:
        raise ValueError(
            f"{language_model} is a {language.config.model_type!r} model; family {family!r} needs "
            f"{config_class.text_model_type!r}."
        )
    if len(tokenizer) > language.get_input_embeddings().num_embeddings:
        language.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=True)

    config = config_class(
        vision_config=tower.config.to_dict(),
        text_config=language.config.to_dict(),
        **processor.image_layout(),
        **config_kwargs,
    )
    model = model_class(config)
    if dtype is not None:
        model = model.to(dtype)
    # Strict loads: a missing or unexpected key is an error, never a silently random layer.
    model.model.vision_tower.load_state_dict(tower.state_dict())
    model.model.language_model.load_state_dict(language.base_model.state_dict())
    model.lm_head.load_state_dict(language.get_output_embeddings().state_dict())

    set_generation_defaults(model, tokenizer)
    return model, processor


def build_from_preset(name: str, **kwargs):
    """`build_from_components` with one of `PRESETS` (the paper's sizes); `kwargs` override the preset."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; available: {', '.join(PRESETS)}.")
    return build_from_components(**{**PRESETS[name], **kwargs})


__all__ = [
    "PRESETS",
    "FAMILIES",
    "EVA02_L_336",
    "SIGLIP_SO400M_384",
    "CLIP_L_336",
    "build_from_components",
    "build_from_preset",
    "set_generation_defaults",
]
