# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Configurations of Mamba-VL and Pythia-VL."""

import re
from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# The paper's vision tower: EVA-02-L/14 at 336 px through transformers' timm wrapper. `do_pooling=False`
# because the model consumes patch tokens, never the pooled vector.
EVA02_VISION_CONFIG = {
    "architecture": "eva02_large_patch14_clip_336",
    "do_pooling": False,
    "model_args": {"img_size": 336},
}

# Vision towers the image merge knows how to read features from.
SUPPORTED_VISION_MODEL_TYPES = ("timm_wrapper", "clip_vision_model", "siglip_vision_model")

# Connectors by name: the two-layer MLP of Mamba-VL and LLaVA, and VL-Mamba's Vision Selective Scan connectors
# (`vision_scan.py`).
CONNECTOR_TYPES = ("mlp", "vss_mlp", "vss_l2")
VSS_SCANS = ("bidirectional", "cross")
VSS_MERGES = ("sum", "mean")
LOSS_REDUCTIONS = ("token", "sample")
# Language models of the Mamba-VL family: transformers' state-space backbones, Mamba-1 (the paper's), Mamba-2,
# FalconMamba, and the hybrid FalconH1 (Mamba-2 mixers and attention side by side in every layer).
SSM_TEXT_MODEL_TYPES = ("mamba", "mamba2", "falcon_mamba", "falcon_h1")
# Norms of Mamba-VL's blocks and final norm: transformers' RMSNorm, or LayerNorm with a bias, which the paper's
# published checkpoints were trained with.
MAMBA_NORM_TYPES = ("rms", "layernorm")

# Ids of the reference image block in the GPT-NeoX-20B tokenizer: `###` opens and closes the block and `&&`
# ends every patch row (the reference replaces the last `&&` by the closing `###`). The placeholder is the
# first id after the tokenizer's 50277 pieces, where `<image>` lands when it is added as a special token.
REFERENCE_IMAGE_TOKEN_ID = 50277
REFERENCE_IMAGE_BEGIN_TOKEN_ID = 4118
REFERENCE_IMAGE_END_TOKEN_ID = 4118
REFERENCE_ROW_SEPARATOR_TOKEN_ID = 10494


def vision_geometry(vision_config: PreTrainedConfig) -> tuple[int | None, int | None]:
    """Returns `(image_size, patch_size)` as declared by a vision sub-config, `None` where it says nothing."""
    if vision_config.model_type == "timm_wrapper":
        model_args = vision_config.model_args or {}
        image_size, patch_size = model_args.get("img_size"), model_args.get("patch_size")
        # timm names state the geometry, e.g. `eva02_large_patch14_clip_336`.
        name = vision_config.architecture.split(".")[0]
        if patch_size is None and (match := re.search(r"patch(\d+)", name)):
            patch_size = int(match.group(1))
        if image_size is None and (match := re.search(r"_(\d+)$", name)):
            image_size = int(match.group(1))
        if isinstance(image_size, (list, tuple)):
            if len(set(image_size)) != 1:
                raise ValueError(f"Only square images are supported, the vision config has img_size={image_size}.")
            image_size = image_size[0]
        return image_size, patch_size
    return getattr(vision_config, "image_size", None), getattr(vision_config, "patch_size", None)


@strict
class VLMambaConfig(PreTrainedConfig):
    r"""
    Shared configuration of the vision-language models of this library: a vision tower, a connector and a language
    model (`text_config`). Use [`MambaVLConfig`] or [`PythiaVLConfig`].

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            The vision tower: a `timm_wrapper` config (default: EVA-02-L/14-336), a `clip_vision_model` or a
            `siglip_vision_model` config.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            The language model: a `mamba` config for Mamba-VL, a `gpt_neox` config for Pythia-VL.
        image_size (`int`, *optional*):
            Side of the square images the tower sees. Derived from `vision_config` when not given.
        patch_size (`int`, *optional*):
            Side of one patch. Derived from `vision_config` when not given.
        vision_feature_layer (`int`, *optional*):
            `None` (default) takes the tower's final output after its final norm, as the reference does. An integer
            takes the output of that block instead (Python indexing over the blocks, no final norm).
            Prefix tokens (CLS, registers) are always dropped.
        connector_type (`str`, *optional*, defaults to `"mlp"`):
            One of `CONNECTOR_TYPES`. `"mlp"` is Linear -> activation -> Linear; `"vss_mlp"` (`MLP(Norm(VSS(V) +
            V))`) and `"vss_l2"` (`V' = Linear(V)`, `Linear(Norm(VSS(act(V')) + V'))`) are VL-Mamba's Vision
            Selective Scan connectors (`vision_scan.py`).
        connector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the connector.
        connector_bias (`bool`, *optional*, defaults to `True`):
            Whether the connector's linear layers have biases.
        vss_scan (`str`, *optional*, defaults to `"bidirectional"`):
            The VSS connectors' scan: `"bidirectional"` (raster order and its reverse) or `"cross"` (raster,
            column-major and the reverse of each).
        vss_share_directions (`bool`, *optional*, defaults to `False`):
            One Mamba layer for every scan direction instead of one per direction.
        vss_merge (`str`, *optional*, defaults to `"sum"`):
            How the directions' outputs, back in raster order, are merged: `"sum"` or `"mean"`.
        vss_depthwise_conv (`bool`, *optional*, defaults to `False`):
            A 3x3 depthwise convolution and SiLU over the patch grid before the scan.
        vss_state_size, vss_expand, vss_conv_kernel (`int`, *optional*, default to 16, 2 and 4):
            State size, inner expansion and causal convolution width of the scan's Mamba layers.
        vss_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the VSS connectors' LayerNorm.
        image_token_id (`int`, *optional*):
            The placeholder id: one per image patch in `input_ids`, replaced by the projected patch features.
        image_begin_token_id, image_end_token_id, row_separator_token_id (`int`, *optional*):
            Ids that frame the image block: begin marker, separator after every patch row, end marker (the end
            marker replaces the last row separator). `None` leaves the marker out. The defaults are the
            reference's GPT-NeoX pieces `###`, `###` and `&&`.
        loss_reduction (`str`, *optional*, defaults to `"token"`):
            How the training loss averages the cross-entropy: `"token"`, over all supervised tokens of the batch
            (transformers' convention; exact under gradient accumulation), or `"sample"`, over each sample's
            supervised tokens and then over the samples, a sample without supervised tokens counting as 0, as the
            reference trained (short answers weigh as much as long ones).
        freeze_vision_tower (`bool`, *optional*, defaults to `True`):
            Freeze the vision tower's parameters (and keep it in eval mode) when the model is built.
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether the language model returns its cache (recurrent state or key/values).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of the connector and an untied `lm_head`.
    """

    text_model_types: ClassVar[tuple[str, ...]] = ()

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_size: int | None = None
    patch_size: int | None = None
    vision_feature_layer: int | None = None
    connector_type: str = "mlp"
    connector_hidden_act: str = "gelu"
    connector_bias: bool = True
    vss_scan: str = "bidirectional"
    vss_share_directions: bool = False
    vss_merge: str = "sum"
    vss_depthwise_conv: bool = False
    vss_state_size: int = 16
    vss_expand: int = 2
    vss_conv_kernel: int = 4
    vss_norm_eps: float = 1e-5
    image_token_id: int = REFERENCE_IMAGE_TOKEN_ID
    image_begin_token_id: int | None = REFERENCE_IMAGE_BEGIN_TOKEN_ID
    image_end_token_id: int | None = REFERENCE_IMAGE_END_TOKEN_ID
    row_separator_token_id: int | None = REFERENCE_ROW_SEPARATOR_TOKEN_ID
    loss_reduction: str = "token"
    freeze_vision_tower: bool = True
    use_cache: bool = True
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # Configs saved before the processor owned the prompt layout carry it too; the processor's copy is the one read.
        kwargs.pop("instruction_first", None)
        super().__post_init__(**kwargs)
        declared_image_size, declared_patch_size = vision_geometry(self.vision_config)
        if self.image_size is None:
            self.image_size = declared_image_size
        if self.patch_size is None:
            self.patch_size = declared_patch_size
        # Checked here rather than in `validate_*` hooks so that users get a plain `ValueError`.
        self._check_vision()
        self._check_text()
        self._check_connector()
        self._check_image_block_ids()
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}.")

    def _check_vision(self):
        """Checks the vision tower type and the patch grid."""
        if self.vision_config.model_type not in SUPPORTED_VISION_MODEL_TYPES:
            raise ValueError(
                f"vision_config has model_type {self.vision_config.model_type!r}; supported vision towers are "
                f"{', '.join(SUPPORTED_VISION_MODEL_TYPES)}."
            )
        if self.image_size is None or self.patch_size is None:
            raise ValueError(
                "image_size and patch_size could not be derived from vision_config "
                f"({self.vision_config.model_type}); pass them explicitly."
            )
        # The grid is what a stride-`patch_size` convolution without padding reads: image_size // patch_size patches
        # a side (SigLIP-SO400M/14 at 384 px: 27, its last 6 pixel rows and columns unread).
        if self.patch_size <= 0 or self.image_size < self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) and patch_size ({self.patch_size}) must be positive, with at least "
                "one patch per side."
            )
        declared_image_size, declared_patch_size = vision_geometry(self.vision_config)
        for name, ours, declared in (
            ("image_size", self.image_size, declared_image_size),
            ("patch_size", self.patch_size, declared_patch_size),
        ):
            if declared is not None and declared != ours:
                raise ValueError(
                    f"{name}={ours} disagrees with the vision tower's {name}={declared} "
                    f"({self.vision_config.model_type}); set one value in both places."
                )
        if self.vision_feature_layer is not None and self.vision_config.model_type == "timm_wrapper":
            if (self.vision_config.model_args or {}).get("features_only"):
                raise ValueError("vision_feature_layer needs a timm model without features_only=True.")

    def _check_text(self):
        """Checks that the language model belongs to this family."""
        if self.text_config.model_type not in self.text_model_types:
            raise ValueError(
                f"{type(self).__name__} needs a text_config of type {' or '.join(map(repr, self.text_model_types))}, "
                f"got {self.text_config.model_type!r}."
            )

    def _check_connector(self):
        """Checks the connector name and the vision scan's settings."""
        if self.connector_type not in CONNECTOR_TYPES:
            raise ValueError(
                f"Unknown connector_type {self.connector_type!r}; expected one of {', '.join(CONNECTOR_TYPES)}."
            )
        if self.vss_scan not in VSS_SCANS:
            raise ValueError(f"Unknown vss_scan {self.vss_scan!r}; expected one of {', '.join(VSS_SCANS)}.")
        if self.vss_merge not in VSS_MERGES:
            raise ValueError(f"Unknown vss_merge {self.vss_merge!r}; expected one of {', '.join(VSS_MERGES)}.")
        for name in ("vss_state_size", "vss_expand", "vss_conv_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.vss_norm_eps > 0:
            raise ValueError(f"vss_norm_eps must be positive, got {self.vss_norm_eps!r}.")

    def _check_image_block_ids(self):
        """Checks that every image-block id is a row of the language model's embedding matrix."""
        vocab_size = self.text_config.vocab_size
        for name in ("image_token_id", "image_begin_token_id", "image_end_token_id", "row_separator_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the language model's vocabulary (size {vocab_size}); "
                    "resize the token embeddings after adding tokens to the tokenizer."
                )
        for name in ("image_begin_token_id", "image_end_token_id", "row_separator_token_id"):
            if getattr(self, name) == self.image_token_id:
                raise ValueError(f"{name} must differ from image_token_id ({self.image_token_id}).")

    @property
    def patches_per_side(self) -> int:
        """Number of patch rows (and columns) of one image: `image_size // patch_size`."""
        return self.image_size // self.patch_size

    @property
    def num_image_tokens(self) -> int:
        """Number of placeholder tokens (patches) of one image."""
        return self.patches_per_side**2

    def image_block_ids(self) -> list[int]:
        """
        The token ids one image occupies in `input_ids`: begin marker, then each row of placeholders followed by a
        row separator, the last separator replaced by the end marker (601 ids for 336 px / 14 px patches).
        """
        return image_block_ids(
            self.patches_per_side,
            self.image_token_id,
            self.image_begin_token_id,
            self.row_separator_token_id,
            self.image_end_token_id,
        )


def image_block_ids(
    patches_per_side: int,
    image_token_id: int,
    begin_token_id: int | None,
    row_separator_token_id: int | None,
    end_token_id: int | None,
) -> list[int]:
    """Layout of one image block; shared by the config and the processor so both always agree."""
    rows = []
    for row in range(patches_per_side):
        rows.extend([image_token_id] * patches_per_side)
        last_row = row == patches_per_side - 1
        if not last_row and row_separator_token_id is not None:
            rows.append(row_separator_token_id)
    head = [begin_token_id] if begin_token_id is not None else []
    tail = [end_token_id] if end_token_id is not None else []
    return head + rows + tail


@strict
class MambaVLConfig(VLMambaConfig):
    r"""
    Configuration of a Mamba-VL model: vision tower, connector and a state-space language model. Defaults describe
    Mamba-VL-1.4B (EVA-02-L/14-336 + `state-spaces/mamba-1.4b-hf`), with input and output embeddings tied.
    `text_config` may be any of `SSM_TEXT_MODEL_TYPES`: `mamba` (the paper's), `mamba2`, `falcon_mamba` or the
    hybrid `falcon_h1`; the vision tower, connector, image merge and generation are the same for all of them.

    Args:
        norm_type (`str`, *optional*, defaults to `"rms"`):
            The norm of every Mamba block and of the final norm: `"rms"` (transformers' `MambaRMSNorm`, as the
            `state-spaces/mamba-*-hf` checkpoints) or `"layernorm"` (`nn.LayerNorm` with a bias, eps
            `text_config.layer_norm_epsilon`), the norm the paper's published Mamba-VL checkpoints were trained with
            (those also keep the residual stream in the model dtype: `text_config.residual_in_fp32=False`). The mixers
            are transformers' own in both cases. Further arguments: [`VLMambaConfig`].

    Example:

    ```python
    >>> from vlmamba import MambaVLConfig, MambaVLForConditionalGeneration
    >>> config = MambaVLConfig()
    >>> model = MambaVLForConditionalGeneration(config)  # random weights
    ```
    """

    model_type = "mamba_vl"
    text_model_types: ClassVar[tuple[str, ...]] = SSM_TEXT_MODEL_TYPES
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(AutoConfig, model_type="timm_wrapper", init_kwargs=EVA02_VISION_CONFIG),
        "text_config": SubConfigSpec(
            AutoConfig, model_type="mamba", init_kwargs={"hidden_size": 2048, "num_hidden_layers": 48}
        ),
    }

    tie_word_embeddings: bool = True
    norm_type: str = "rms"

    def _check_text(self):
        super()._check_text()
        if self.norm_type not in MAMBA_NORM_TYPES:
            raise ValueError(f"Unknown norm_type {self.norm_type!r}; expected one of {', '.join(MAMBA_NORM_TYPES)}.")
        if self.norm_type != "rms" and self.text_config.model_type != "mamba":
            raise ValueError(
                f"norm_type={self.norm_type!r} is for Mamba-1 language models (the paper's checkpoints); a "
                f"{self.text_config.model_type!r} text_config keeps its own norms."
            )


@strict
class PythiaVLConfig(VLMambaConfig):
    r"""
    Configuration of a Pythia-VL model: vision tower, connector and a GPT-NeoX (Pythia) language model. Defaults
    describe Pythia-VL-1.4B (EVA-02-L/14-336 + `EleutherAI/pythia-1.4b`), with untied output embeddings.

    Example:

    ```python
    >>> from vlmamba import PythiaVLConfig, PythiaVLForConditionalGeneration
    >>> config = PythiaVLConfig()
    >>> model = PythiaVLForConditionalGeneration(config)  # random weights
    ```
    """

    model_type = "pythia_vl"
    text_model_types: ClassVar[tuple[str, ...]] = ("gpt_neox",)
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(AutoConfig, model_type="timm_wrapper", init_kwargs=EVA02_VISION_CONFIG),
        "text_config": SubConfigSpec(
            AutoConfig,
            model_type="gpt_neox",
            init_kwargs={
                "hidden_size": 2048,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "intermediate_size": 8192,
                "vocab_size": 50304,
                "max_position_embeddings": 2048,
                "rotary_pct": 0.25,
                "bos_token_id": 0,
                "eos_token_id": 0,
            },
        ),
    }

    tie_word_embeddings: bool = False


__all__ = [
    "SSM_TEXT_MODEL_TYPES",
    "VLMambaConfig",
    "MambaVLConfig",
    "PythiaVLConfig",
    "image_block_ids",
    "vision_geometry",
]
