# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Assembling a model and its processor from a pretrained vision tower and a pretrained language model."""

import copy

import torch
from timm.layers import resample_abs_pos_embed
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

from .models.configuration_vlmamba import SSM_TEXT_MODEL_TYPES, MambaVLConfig, PythiaVLConfig, vision_geometry
from .models.image_processing_vlmamba import VLMambaImageProcessor
from .models.modeling_vlmamba import MambaVLForConditionalGeneration, PythiaVLForConditionalGeneration
from .models.processing_vlmamba import FREE_PROMPT_MAX_NEW_TOKENS, VLMambaProcessor


FAMILIES = {
    "mamba": (MambaVLConfig, MambaVLForConditionalGeneration),
    "pythia": (PythiaVLConfig, PythiaVLForConditionalGeneration),
}
# The Mamba-VL family's other backbones, by their transformers model type: the same classes with another text_config.
for _backbone in SSM_TEXT_MODEL_TYPES[1:]:
    FAMILIES[_backbone] = FAMILIES["mamba"]

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

# The paper's tower and connector in front of other state-space backbones, from their public transformers-format
# checkpoints (Mamba-2's is Mistral's Mamba-Codestral). Their tokenizers have no `###` / `&&` pieces, so the image
# block gets markers of its own, added as special tokens.
_OWN_MARKERS = {
    "image_begin_token": "<image_start>",
    "image_end_token": "<image_end>",
    "row_separator_token": "<image_row>",
}
PRESETS["falcon-mamba-vl-7b"] = {"family": "falcon_mamba", "language_model": "tiiuae/falcon-mamba-7b"}
PRESETS["mamba2-vl-7b"] = {"family": "mamba2", "language_model": "mistralai/Mamba-Codestral-7B-v0.1"}
PRESETS["falcon-h1-vl-0.5b"] = {"family": "falcon_h1", "language_model": "tiiuae/Falcon-H1-0.5B-Base"}
for _name in ("falcon-mamba-vl-7b", "mamba2-vl-7b", "falcon-h1-vl-0.5b"):
    PRESETS[_name].update(vision_model=EVA02_L_336, **_OWN_MARKERS)


def _load_vision_tower(vision_model: str, dtype, image_size: int | None = None) -> PreTrainedModel:
    """The vision-only model of a Hub id or folder (CLIP/SigLIP repos hold a text tower too, which is left out),
    at `image_size` when given (`resize_vision_tower`)."""
    config = AutoConfig.from_pretrained(vision_model)
    if config.model_type == "clip":
        tower = CLIPVisionModel.from_pretrained(vision_model, dtype=dtype)
    elif config.model_type == "siglip":
        tower = SiglipVisionModel.from_pretrained(vision_model, dtype=dtype)
    elif config.model_type == "timm_wrapper":
        config.do_pooling = False
        tower = AutoModel.from_pretrained(vision_model, config=config, dtype=dtype)
    else:
        tower = AutoModel.from_pretrained(vision_model, dtype=dtype)
    if image_size is not None and image_size != vision_geometry(tower.config)[0]:
        tower = resize_vision_tower(tower, image_size)
    return tower


def _absolute_position_embedding(tower: PreTrainedModel) -> tuple[str, int]:
    """Name of the tower's learned absolute position embedding in its state dict, and its number of prefix tokens."""
    if tower.config.model_type == "timm_wrapper":
        timm_model = tower.timm_model
        if getattr(timm_model, "pos_embed", None) is None:
            raise ValueError(
                f"The timm tower {tower.config.architecture} has no absolute position embedding to resize."
            )
        prefix = 0 if getattr(timm_model, "no_embed_class", False) else timm_model.num_prefix_tokens
        return "timm_model.pos_embed", prefix
    if tower.config.model_type in ("clip_vision_model", "siglip_vision_model"):
        # CLIP's position embedding has a row for its class token, SigLIP's only the patches.
        prefix = 1 if tower.config.model_type == "clip_vision_model" else 0
        (key,) = (name for name in tower.state_dict() if name.endswith("embeddings.position_embedding.weight"))
        return key, prefix
    raise ValueError(f"Cannot resize a {tower.config.model_type} vision tower.")


def resize_vision_tower(tower: PreTrainedModel, image_size: int) -> PreTrainedModel:
    r"""
    The same tower for `image_size`-pixel images: a new tower of that size whose weights are the given tower's, its
    learned position embedding resampled (bicubic, the prefix rows kept) from the old patch grid to the new one.
    Rotary embeddings (EVA-02) are computed from the new size by the tower itself.

    Args:
        tower: A timm (`timm_wrapper`), CLIP or SigLIP vision model.
        image_size (`int`): The new side; the patch grid becomes `image_size // patch_size` a side.
    """
    old_size, patch_size = vision_geometry(tower.config)
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < patch_size:
        raise ValueError(f"image_size must be an integer of at least one patch ({patch_size} px), got {image_size!r}.")
    key, num_prefix_tokens = _absolute_position_embedding(tower)
    config = copy.deepcopy(tower.config)
    if config.model_type == "timm_wrapper":
        config.model_args = {**(config.model_args or {}), "img_size": image_size}
    else:
        config.image_size = image_size
    state = tower.state_dict()
    old_grid, new_grid = old_size // patch_size, image_size // patch_size
    table = state[key]
    rows = table if table.ndim == 3 else table[None]
    if rows.shape[1] != num_prefix_tokens + old_grid**2:
        raise ValueError(
            f"The tower's position embedding has {rows.shape[1]} rows, not {num_prefix_tokens} prefix rows and a "
            f"{old_grid}x{old_grid} grid."
        )
    resampled = resample_abs_pos_embed(
        rows.float(), [new_grid, new_grid], [old_grid, old_grid], num_prefix_tokens=num_prefix_tokens
    ).to(table.dtype)
    state[key] = resampled if table.ndim == 3 else resampled[0]
    resized = type(tower)(config).to(table.dtype)
    # Strict: every weight of the old tower lands in the new one, nothing is re-initialised.
    resized.load_state_dict(state)
    return resized


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


def load_tokenizer(source):
    """The tokenizer of a Hub id or folder, with eos as pad when it has no pad token (GPT-NeoX's has none)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def processor_for_tower(tokenizer, tower: PreTrainedModel, vision_model: str | None = None, **processor_kwargs):
    """The processor of a model with this tower: images resized to the tower's size and normalized with the mean and
    std it was trained with, patches of its patch size. `processor_kwargs` go to [`VLMambaProcessor`]."""
    image_size, patch_size = vision_geometry(tower.config)
    mean, std = _normalization(vision_model, tower)
    image_processor = VLMambaImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=mean, image_std=std
    )
    return VLMambaProcessor(image_processor, tokenizer, patch_size=patch_size, **processor_kwargs)


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
    image_size: int | None = None,
    **config_kwargs,
):
    r"""
    Builds a fresh model (pretrained tower and language model, newly initialised connector) and its processor.

    Args:
        family (`str`): `"mamba"` (Mamba-VL, any state-space backbone of `SSM_TEXT_MODEL_TYPES`), `"pythia"`
            (Pythia-VL), or a backbone's model type (`"mamba2"`, `"falcon_mamba"`, `"falcon_h1"`: Mamba-VL, that
            backbone required).
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
        image_size (`int`, *optional*): Build for another image side than the tower was trained at (the paper's
            480 px experiment): the tower's position embedding is resampled to the new patch grid
            ([`resize_vision_tower`]), and the image processor and image block follow.
        config_kwargs: Further config fields (`connector_type`, `vision_feature_layer`, `freeze_vision_tower`, ...).

    Returns:
        `(model, processor)`; `model.save_pretrained(d)` and `processor.save_pretrained(d)` make a loadable folder.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {', '.join(FAMILIES)}.")
    config_class, model_class = FAMILIES[family]

    tokenizer = load_tokenizer(tokenizer or language_model)
    # Markers asked for by name become tokens; the reference's defaults must already be pieces of the vocabulary.
    defaults = {"###", "&&"}
    named = [marker for marker in dict.fromkeys((image_begin_token, image_end_token, row_separator_token))
             if marker is not None and marker not in defaults and marker not in tokenizer.get_vocab()]
    if named:
        tokenizer.add_special_tokens({"additional_special_tokens": named}, replace_extra_special_tokens=False)

    tower = _load_vision_tower(vision_model, dtype, image_size)
    processor = processor_for_tower(
        tokenizer,
        tower,
        vision_model,
        image_token=image_token,
        image_begin_token=image_begin_token,
        image_end_token=image_end_token,
        row_separator_token=row_separator_token,
        instruction_first=instruction_first,
    )

    language = AutoModelForCausalLM.from_pretrained(language_model, dtype=dtype)
    if family in SSM_TEXT_MODEL_TYPES[1:] and language.config.model_type != family:
        raise ValueError(f"{language_model} is a {language.config.model_type!r} model; family {family!r} needs one.")
    if language.config.model_type not in config_class.text_model_types:
        raise ValueError(
            f"{language_model} is a {language.config.model_type!r} model; family {family!r} needs "
            f"{' or '.join(map(repr, config_class.text_model_types))}."
        )
    if len(tokenizer) > language.get_input_embeddings().num_embeddings:
        language.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=True)

    # The head is tied as the language model's is (Mamba's and FalconMamba-7B's differ).
    config_kwargs.setdefault("tie_word_embeddings", language.config.tie_word_embeddings)
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
    "load_tokenizer",
    "processor_for_tower",
    "resize_vision_tower",
    "set_generation_defaults",
]
