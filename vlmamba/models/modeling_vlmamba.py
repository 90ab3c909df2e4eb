# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""PyTorch Mamba-VL and Pythia-VL models."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, LinearAttentionCacheLayerMixin
from transformers.masking_utils import find_packed_sequence_indices
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.mamba.modeling_mamba import MambaMixer
from transformers.utils import logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.versions import require_version

from .configuration_vlmamba import MambaVLConfig, PythiaVLConfig, VLMambaConfig
from .mamba_kernels import install_device_dispatch, packed_sequences
from .selective_scan import positions_in_sequences
from .vision_scan import VLMambaVSSL2Connector, VLMambaVSSMLPConnector


logger = logging.get_logger(__name__)

# The first release in which every model takes and returns its cache as `cache`.
MIN_TRANSFORMERS_VERSION = "5.24"


def check_transformers_version() -> None:
    """Raises an `ImportError` naming the installed release when transformers is older than the models need."""
    require_version(
        f"transformers>={MIN_TRANSFORMERS_VERSION}",
        f"Mamba-VL and Pythia-VL pass their cache as `cache`, which needs transformers {MIN_TRANSFORMERS_VERSION} or "
        f"newer: pip install -U 'transformers>={MIN_TRANSFORMERS_VERSION}'.",
    )


check_transformers_version()
install_device_dispatch()


@dataclass
class VLModelOutputWithPast(ModelOutput):
    r"""
    Output of [`MambaVLModel`] and [`PythiaVLModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Final hidden states of the language model.
        cache (`Cache`, *optional*):
            Returned when `use_cache=True`: the convolution and recurrent states of Mamba-VL, the key/value cache of
            Pythia-VL. (`past_key_values` and `cache_params` are deprecated names of this field.)
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Hidden states of every language-model layer, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Attention weights of Pythia-VL, when `output_attentions=True`.
        image_hidden_states (`torch.FloatTensor` of shape `(num_images, num_image_tokens, hidden_size)`, *optional*):
            Projected patch features written into the placeholder positions.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class VLCausalLMOutputWithPast(ModelOutput):
    r"""
    Output of [`MambaVLForConditionalGeneration`] and [`PythiaVLForConditionalGeneration`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Next-token cross-entropy over the positions whose label is not -100, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
            Language-model head scores.
        cache, hidden_states, attentions, image_hidden_states:
            As in [`VLModelOutputWithPast`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    image_hidden_states: torch.FloatTensor | None = None


class VLMambaMLPConnector(nn.Module):
    """Two-layer MLP from vision features to the language model's width (Linear -> activation -> Linear)."""

    def __init__(self, vision_hidden_size: int, config: VLMambaConfig):
        super().__init__()
        text_hidden_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(vision_hidden_size, text_hidden_size, bias=config.connector_bias)
        self.act = ACT2FN[config.connector_hidden_act]
        self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size, bias=config.connector_bias)

    def forward(self, image_features: torch.Tensor, patches_per_side: int | None = None) -> torch.Tensor:
        """`(num_images, num_patches, vision_hidden)` -> `(num_images, num_patches, text_hidden)`."""
        return self.linear_2(self.act(self.linear_1(image_features)))


CONNECTOR_CLASSES = {"mlp": VLMambaMLPConnector, "vss_mlp": VLMambaVSSMLPConnector, "vss_l2": VLMambaVSSL2Connector}


class VLMambaPreTrainedModel(PreTrainedModel):
    """Weight init and flags shared by the Mamba-VL and Pythia-VL classes."""

    config_class = VLMambaConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = []

    @torch.no_grad()
    def _init_weights(self, module):
        # Nested pretrained models (tower, language model) are initialised by their own `_init_weights`. Modules are
        # visited children first, so a VSS connector's Mamba layer re-initializes its own linear layers afterwards.
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MambaMixer):
            # As a Mamba language model initializes its layers: S4D-real A, D = 1, dt in [time_step_min, max].
            module.init_mamba_weights()
            init.kaiming_uniform_(module.conv1d.weight, a=math.sqrt(5))
            if module.conv1d.bias is not None:
                init.zeros_(module.conv1d.bias)
            init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        # Loading puts new, trainable parameters in place of the built ones: the config's frozen tower is frozen again.
        model.freeze_vision_tower_as_configured()
        model._compute_language_model_buffers()
        return loaded

    @torch.no_grad()
    def _compute_language_model_buffers(self) -> None:
        """Sets what the language model computes rather than loads (FalconH1's µP vector, a buffer no checkpoint
        holds). Loading leaves such buffers empty and relies on the model's own init of itself, which transformers
        skips for a model nested in custom code like this one, so it is called here."""
        language_model = (self.model if isinstance(self, VLMambaForConditionalGeneration) else self).language_model
        language_model._init_weights(language_model)

    def freeze_vision_tower_as_configured(self) -> None:
        """Takes the vision tower's parameters out of training when the config says `freeze_vision_tower`."""
        if self.config.freeze_vision_tower:
            self.get_vision_tower().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen tower stays deterministic (no dropout / drop-path) while the rest trains.
        if self.config.freeze_vision_tower and hasattr(self, "get_vision_tower"):
            self.get_vision_tower().eval()
        return self


class VLMambaModel(VLMambaPreTrainedModel):
    """
    Vision tower + connector + language model (no head). Image patches are projected and written, in raster order,
    into the placeholder positions of `input_ids`. Shared by Mamba-VL and Pythia-VL, which differ only in the
    language model and its cache.
    """

    # Loading the headless model from a checkpoint of the full model leaves the head out on purpose.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: VLMambaConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        vision_hidden_size = getattr(config.vision_config, "hidden_size", None)
        if config.vision_config.model_type == "timm_wrapper":
            vision_hidden_size = self.vision_tower.timm_model.num_features
        self.connector = CONNECTOR_CLASSES[config.connector_type](vision_hidden_size, config)
        self.language_model = self._build_language_model(config)
        self.freeze_vision_tower_as_configured()
        self.post_init()

    def _build_language_model(self, config: VLMambaConfig) -> PreTrainedModel:
        return AutoModel.from_config(config.text_config)

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_vision_tower(self):
        return self.vision_tower

    def embed_tokens(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """The language model's embeddings of `input_ids`, scaled as the language model scales the ids it embeds."""
        embeddings = self.get_input_embeddings()(input_ids)
        embedding_multiplier, _ = text_multipliers(self.config.text_config)
        return embeddings * embedding_multiplier if embedding_multiplier != 1.0 else embeddings

    def _check_pixel_values(self, pixel_values: torch.Tensor):
        size = self.config.image_size
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or tuple(pixel_values.shape[2:]) != (size, size):
            raise ValueError(
                f"pixel_values must have shape (num_images, 3, {size}, {size}), got {tuple(pixel_values.shape)}. "
                "Use the model's processor to prepare images."
            )
        if not pixel_values.is_floating_point():
            raise ValueError(
                "pixel_values must be floating point (the image processor's normalized output), got "
                f"{pixel_values.dtype}. Use the model's processor to prepare images."
            )

    def _vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch features of the configured tower layer, prefix tokens dropped: `(num_images, num_patches, dim)`."""
        tower = self.vision_tower
        layer = self.config.vision_feature_layer
        pixel_values = pixel_values.to(device=self.device, dtype=tower.dtype)
        if self.config.vision_config.model_type == "timm_wrapper":
            # Through the wrapper's own call, not `timm_model`'s methods: FSDP shards the wrapper as one unit (it is in
            # `_no_split_modules`) and gathers its weights in the wrapper's forward hooks.
            if layer is None:
                features = tower(pixel_values, do_pooling=False, return_dict=True).last_hidden_state
            else:
                features = tower(
                    pixel_values, output_hidden_states=[layer], output_fmt="NLC", do_pooling=False, return_dict=True
                ).hidden_states[0]
        else:
            outputs = tower(pixel_values=pixel_values, output_hidden_states=layer is not None, return_dict=True)
            if layer is not None:
                features = outputs.hidden_states[layer]
            else:
                features = outputs.last_hidden_state
                # CLIP applies its final norm to the pooled token only; the reference feature is the normed output.
                post_layernorm = getattr(getattr(tower, "vision_model", None), "post_layernorm", None)
                if self.config.vision_config.model_type == "clip_vision_model" and post_layernorm is not None:
                    features = post_layernorm(features)
        num_patches = self.config.num_image_tokens
        if features.shape[1] < num_patches:
            raise ValueError(
                f"The vision tower returned {features.shape[1]} tokens per image, fewer than the {num_patches} "
                f"patches of a {self.config.image_size}px image with {self.config.patch_size}px patches."
            )
        # Prefix tokens (CLS, registers) come first in every supported tower.
        return features[:, features.shape[1] - num_patches :]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """
        Encodes images and projects them to the language model's width.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, image_size, image_size)`)

        Returns:
            `torch.FloatTensor` of shape `(num_images, num_image_tokens, text_hidden_size)`.
        """
        self._check_pixel_values(pixel_values)
        features = self._vision_features(pixel_values)
        connector_dtype = next(self.connector.parameters()).dtype
        return self.connector(features.to(connector_dtype), patches_per_side=self.config.patches_per_side)

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor
    ) -> torch.BoolTensor:
        """Boolean mask `(batch_size, sequence_length)` of the image placeholder positions."""
        if input_ids is not None:
            return input_ids == self.config.image_token_id
        image_embedding = self.get_input_embeddings()(
            torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
        )
        return (inputs_embeds == image_embedding).all(-1)

    def merge_image_features(
        self, inputs_embeds: torch.Tensor, placeholder_mask: torch.BoolTensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Writes `image_features` (all images, in order) into the placeholder positions of `inputs_embeds`."""
        _check_placeholder_count(placeholder_mask, *image_features.shape[:2])
        image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), image_features)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | VLModelOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Token ids with one `image_token_id` per image patch (the processor builds them).
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, image_size, image_size)`, *optional*):
                Images of the whole batch, in the order their placeholders appear.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding.
            position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Pythia-VL's positions. Without an `attention_mask`, positions that restart within a row mark packed
                sequences (transformers' padding-free convention, as `VLMambaDataCollator(pack_to=...)` writes them):
                Pythia-VL then attends within each sequence, and Mamba-VL restarts its convolution and scan at each.
            seq_idx (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The packed sequence each token belongs to (mamba-ssm's convention), instead of restarting positions.
            cache (`Cache`, *optional*):
                Mamba-VL's recurrent states or Pythia-VL's key/value cache, as returned by an earlier call.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
                Embeddings instead of `input_ids`; placeholder positions are found by their embedding.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        seq_idx = self._packed_sequences(kwargs.pop("seq_idx", None), position_ids, attention_mask, cache, use_cache)
        if seq_idx is not None:
            use_cache = False
            if position_ids is None:
                position_ids = positions_in_sequences(seq_idx)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        image_features = None
        if pixel_values is not None:
            image_features = self.get_image_features(pixel_values)
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
            inputs_embeds = self.merge_image_features(inputs_embeds, placeholder_mask, image_features)
        elif _is_prefill(cache) and input_ids is not None and (input_ids == self.config.image_token_id).any():
            # Decided on the step, not on the cache object: `generate()` creates an empty cache before the prefill.
            raise ValueError(
                "input_ids contain image placeholder tokens but no pixel_values were given; pass the images the "
                "processor returned."
            )

        # Options left unset keep the language model's own defaults.
        options = {"position_ids": position_ids, "output_hidden_states": output_hidden_states,
                   "output_attentions": output_attentions}
        with packed_sequences(seq_idx if self.config.text_config.model_type in RECURRENT_PACKING else None):
            outputs = self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                use_cache=use_cache,
                return_dict=True,
                **{name: value for name, value in options.items() if value is not None},
                **kwargs,
            )

        output = VLModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache if use_cache else None,
            hidden_states=outputs.hidden_states,
            attentions=getattr(outputs, "attentions", None),
            image_hidden_states=image_features,
        )
        return output if return_dict else output.to_tuple()


    def _packed_sequences(self, seq_idx, position_ids, attention_mask, cache, use_cache) -> torch.Tensor | None:
        """The packed-sequence index `(batch, length)` of a padding-free batch, or None for ordinary rows: `seq_idx`
        as given, else from `position_ids` that restart within a row when there is no `attention_mask` (transformers'
        rule, `find_packed_sequence_indices`). Raises where packing cannot be honoured."""
        if seq_idx is None and cache is None:
            seq_idx = packed_sequence_index(position_ids, attention_mask)
        if seq_idx is None:
            return None
        model_type = self.config.text_config.model_type
        if model_type not in PACKED_TEXT_MODEL_TYPES:
            raise ValueError(
                f"Packed sequences (seq_idx, or position_ids restarting within a row) are supported for the "
                f"{', '.join(PACKED_TEXT_MODEL_TYPES)} language models; this model's is {model_type!r}, whose mixers "
                "would let each sequence see the one before it. Pad the batch instead."
            )
        if cache is not None or use_cache:
            raise ValueError("Packed sequences cannot be used with a cache: pass use_cache=False (training, scoring).")
        if attention_mask is not None and model_type not in RECURRENT_PACKING:
            raise ValueError(
                "Packed sequences on an attention model need attention_mask=None: transformers builds the "
                "block-diagonal mask from the positions only without one."
            )
        return seq_idx


# Language models whose cache is recurrent states only (no attention layer, so no sequence length).
RECURRENT_TEXT_MODEL_TYPES = ("mamba", "mamba2", "falcon_mamba")
# Language models that take packed sequences: Mamba's mixers through `packed_sequences`, GPT-NeoX through
# transformers' block-diagonal masks (sdpa, eager, flex) or sequence lengths (flash attention) from the positions.
RECURRENT_PACKING = ("mamba", "falcon_mamba")
PACKED_TEXT_MODEL_TYPES = (*RECURRENT_PACKING, "gpt_neox")


def text_multipliers(text_config) -> tuple[float, float]:
    """The scales of the token embeddings and of the logits that a language model's own classes apply (FalconH1's
    `embedding_multiplier` and `lm_head_multiplier`; 1 for the others). Its base model scales only the embeddings of
    ids it looks up itself and its causal-LM class the logits; the VL model does the lookup and has the head, so it
    applies both."""
    return getattr(text_config, "embedding_multiplier", 1.0), getattr(text_config, "lm_head_multiplier", 1.0)


def _is_prefill(cache: Cache | None) -> bool:
    """Whether a forward with `cache` starts a sequence: no cache, or one that holds no state yet."""
    if cache is None:
        return True
    if any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in cache.layers):
        return not cache.has_previous_state()
    return cache.get_seq_length() == 0


def _check_placeholder_count(placeholder_mask: torch.BoolTensor, num_images: int, tokens_per_image: int) -> None:
    """The inputs hold exactly `tokens_per_image` placeholders for each of the `num_images` images."""
    num_placeholders = int(placeholder_mask.sum())
    if num_placeholders != num_images * tokens_per_image:
        per_sample = placeholder_mask.sum(-1).tolist()
        raise ValueError(
            f"The inputs hold {num_placeholders} image placeholder tokens (per sample: {per_sample}), but "
            f"pixel_values holds {num_images} image(s) of {tokens_per_image} patches = "
            f"{num_images * tokens_per_image} features. Each image needs exactly {tokens_per_image} "
            "placeholders; build inputs with the model's processor."
        )


# A recurrent cache holds no sequence length. Mamba-VL records on it the ids it has consumed, so that `generate()` given
# the cached prompt followed by new tokens (transformers' convention for reusing a cache) feeds only the new tokens.
_CACHED_IDS = "_vlmamba_cached_ids"


def _record_cached_ids(cache: Cache | None, before: torch.Tensor | None, input_ids: torch.Tensor | None) -> None:
    """Appends `input_ids` to what `cache` held before (`_cached_ids` of it: empty for a fresh cache, `None` when
    unknown); ids fed as embeddings are not known."""
    if cache is None:
        return
    if input_ids is not None and before is not None and before.numel() == 0:
        before = input_ids.new_zeros(input_ids.shape[0], 0)
    known = input_ids is not None and before is not None and before.shape[0] == input_ids.shape[0]
    setattr(cache, _CACHED_IDS, torch.cat([before.to(input_ids.device), input_ids], dim=1) if known else None)


def _cached_ids(cache: Cache | None) -> torch.Tensor | None:
    """The ids `cache` holds: an empty tensor for a fresh cache, `None` when unknown (fed as embeddings)."""
    if cache is None or _is_prefill(cache):
        return torch.zeros(0, 0, dtype=torch.long)
    return getattr(cache, _CACHED_IDS, None)


def packed_sequence_index(
    position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """The packed sequence of every token `(batch, length)` when `position_ids` restart within a row and there is no
    `attention_mask` (transformers' padding-free rule, `find_packed_sequence_indices`); None for ordinary rows."""
    if position_ids is None or attention_mask is not None:
        return None
    return find_packed_sequence_indices(position_ids if position_ids.dim() == 2 else position_ids.view(1, -1))


def per_sample_loss(
    logits: torch.Tensor, labels: torch.LongTensor, ignore_index: int = -100, seq_idx: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy averaged over each sample's supervised tokens, then over the batch's samples, a
    sample without supervised tokens counting as 0 (as the reference trained).

    logits: `(batch, length, vocab)`; labels: `(batch, length)`, aligned with the inputs (shifted here); seq_idx:
    `(batch, length)` for packed rows, whose every sequence is a sample (`packed_sample_ids`), else one per row.
    """
    logits = logits[:, :-1].float()
    targets = labels[:, 1:].to(logits.device)
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index, reduction="none"
    ).view(targets.shape)
    if seq_idx is None:
        counts = (targets != ignore_index).sum(dim=1)
        return (losses.sum(dim=1) / counts.clamp(min=1)).mean()
    ids, samples = packed_sample_ids(seq_idx.to(logits.device))
    ids = ids[:, 1:].reshape(-1)  # a target belongs to the sample of the token it is
    sums = losses.new_zeros(samples).index_add_(0, ids, losses.reshape(-1))
    counts = losses.new_zeros(samples).index_add_(0, ids, (targets != ignore_index).reshape(-1).to(losses.dtype))
    return (sums / counts.clamp(min=1)).mean()


def packed_sample_ids(seq_idx: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The sample of every token of a packed batch, numbered over the whole batch, and the number of samples.

    seq_idx: `(batch, length)`; a sample is a run of equal values within a row (the values need not be consecutive).
    """
    starts = torch.zeros_like(seq_idx, dtype=torch.long)
    starts[:, 1:] = (seq_idx[:, 1:] != seq_idx[:, :-1]).long()
    within = starts.cumsum(dim=-1)
    per_row = within[:, -1] + 1
    offsets = per_row.cumsum(0) - per_row
    return within + offsets[:, None], int(per_row.sum())


class VLMambaForConditionalGeneration(VLMambaPreTrainedModel, GenerationMixin):
    """Shared head, loss and generation hooks of Mamba-VL and Pythia-VL."""

    base_model_class = VLMambaModel

    def __init__(self, config: VLMambaConfig):
        super().__init__(config)
        self.model = self.base_model_class(config)
        text_config = config.text_config
        self.lm_head = nn.Linear(text_config.hidden_size, text_config.vocab_size, bias=False)
        # The head ties to the language model's embedding, whose name is the backbone's (`embeddings` for Mamba-1/2
        # and FalconMamba, `embed_tokens` for FalconH1, `embed_in` for GPT-NeoX).
        language_model = self.model.language_model
        embedding = next(name for name, module in language_model.named_children()
                         if module is language_model.get_input_embeddings())
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{embedding}.weight"}
        self.post_init()

    @property
    def accepts_loss_kwargs(self) -> bool:
        # `Trainer` then passes `num_items_in_batch` and leaves the loss unscaled; a per-sample mean cannot use it, so
        # with "sample" the Trainer divides by the gradient-accumulation steps itself.
        return self.config.loss_reduction == "token"

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_decoder(self):
        return self.model.language_model

    def get_vision_tower(self):
        return self.model.vision_tower

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """See [`VLMambaModel.get_image_features`]."""
        return self.model.get_image_features(pixel_values)

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """Repeats every sample `expand_size` times (beam search, `num_return_sequences`). `pixel_values` holds the
        images of all samples in a row, so each sample's images are repeated as a group ([a, b] -> [a, b, a, b]):
        repeating them image by image ([a, a, b, b]) would hand a copy of a two-image sample the wrong images."""
        pixel_values = model_kwargs.pop("pixel_values", None)
        if pixel_values is not None and expand_size > 1:
            placeholders = self.model.get_placeholder_mask(input_ids, model_kwargs.get("inputs_embeds")).sum(-1)
            per_sample = (placeholders // self.config.num_image_tokens).tolist()
            if sum(per_sample) != pixel_values.shape[0]:
                raise ValueError(
                    f"The inputs hold image placeholders for {sum(per_sample)} image(s) (per sample: {per_sample}), "
                    f"but pixel_values holds {pixel_values.shape[0]}; build inputs with the model's processor."
                )
            groups = pixel_values.split(per_sample)
            pixel_values = torch.cat([group for group in groups for _ in range(expand_size)])
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        if pixel_values is not None:
            model_kwargs["pixel_values"] = pixel_values
        return input_ids, model_kwargs

    def save_pretrained(self, save_directory, *args, **kwargs):
        # FSDP2 swaps the class of a sharded model for one it makes in torch (`FSDP<name>`); the auto_map and the
        # remote code saved next to the weights must name this package's class, so it is put back while saving.
        sharded_class = type(self)
        self.__class__ = next(cls for cls in sharded_class.__mro__ if not cls.__module__.startswith("torch."))
        try:
            # `register_for_auto_class` records one Auto class; the headless model shares the weights' prefix, so
            # `AutoModel` can load the same folder too, and the head serves `AutoModelForCausalLM` for text-only use.
            if self._auto_class is not None:
                auto_map = dict(getattr(self.config, "auto_map", None) or {})
                module = type(self.model).__module__.split(".")[-1]
                auto_map.setdefault("AutoModel", f"{module}.{type(self.model).__name__}")
                auto_map.setdefault("AutoModelForCausalLM", f"{module}.{type(self).__name__}")
                self.config.auto_map = auto_map
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = sharded_class

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> tuple | VLCausalLMOutputWithPast:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Targets aligned with `input_ids` (shifted inside the loss); -100 marks positions without loss.
            logits_to_keep (`int` or `torch.Tensor`, *optional*):
                Compute logits for the last `logits_to_keep` positions only (0 = all).
            kwargs:
                `num_items_in_batch` (from `Trainer`) is passed to the loss so that gradient accumulation averages
                over all supervised tokens.

            Other arguments as in [`VLMambaModel.forward`].

        Example:

        ```python
        >>> import vlmamba
        >>> from transformers import AutoModelForImageTextToText, AutoProcessor
        >>> model = AutoModelForImageTextToText.from_pretrained("path/to/mamba-vl")
        >>> processor = AutoProcessor.from_pretrained("path/to/mamba-vl")
        >>> inputs = processor(images=[image], text=["<image>Provide a one-sentence caption for the provided image."],
        ...                    return_tensors="pt")
        >>> out = model.generate(**inputs, max_new_tokens=30)
        >>> processor.post_process_image_text_to_text(out, skip_special_tokens=True)
        ```
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        loss_kwargs = {k: kwargs.pop(k) for k in ("num_items_in_batch", "ignore_index", "shift_labels") if k in kwargs}
        before = _cached_ids(cache) if getattr(self, "_is_stateful", False) else None
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        if getattr(self, "_is_stateful", False):
            # A recurrent cache records the ids it holds (see `_CACHED_IDS`).
            _record_cached_ids(outputs.cache, before, input_ids)
        logits = self._logits(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))

        loss = None
        if labels is not None and self.config.loss_reduction == "sample":
            seq_idx = self.model._packed_sequences(kwargs.get("seq_idx"), position_ids, attention_mask, None, False)
            loss = per_sample_loss(logits, labels, loss_kwargs.get("ignore_index", -100), seq_idx=seq_idx)
        elif labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **loss_kwargs
            )

        output = VLCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
        )
        return output if return_dict else output.to_tuple()

    def _logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The head's logits, scaled as the language model's own head scales them."""
        logits = self.lm_head(hidden_states.to(self.lm_head.weight.dtype))
        _, lm_head_multiplier = text_multipliers(self.config.text_config)
        return logits * lm_head_multiplier if lm_head_multiplier != 1.0 else logits

    def _images_of_the_fed_tokens(self, model_inputs: dict, input_ids: torch.LongTensor) -> dict:
        """`model_inputs` of a first step that feeds only the end of `input_ids` (the rest is in the cache), with
        `pixel_values` cut to the images whose blocks are in the fed tokens (each sample's last ones)."""
        pixel_values = model_inputs.get("pixel_values")
        if pixel_values is None:
            return model_inputs
        tokens, image = self.config.num_image_tokens, self.config.image_token_id
        images = (input_ids == image).sum(-1) // tokens
        fed = (model_inputs["input_ids"] == image).sum(-1) // tokens
        if torch.equal(fed, images):  # every block is fed (a cache generate() cannot slice): nothing to cut
            return model_inputs
        first = torch.cumsum(images, 0) - images  # each sample's first image in pixel_values
        keep = [index for row in range(len(input_ids))
                for index in range(int(first[row] + images[row] - fed[row]), int(first[row] + images[row]))]
        model_inputs["pixel_values"] = pixel_values[keep] if keep else None
        return model_inputs

    def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, cache: Cache | None = None, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, inputs_embeds=inputs_embeds, cache=cache, **kwargs
        )
        # A cache given to generate() already holds the start of the prompt: only the images of the rest are encoded.
        if kwargs.get("is_first_iteration") and cache is not None and not _is_prefill(cache):
            model_inputs = self._images_of_the_fed_tokens(model_inputs, input_ids)
        return model_inputs

    def prefill(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        cache: Cache | None = None,
    ) -> VLCausalLMOutputWithPast:
        r"""
        Feeds a prompt into a cache, `chunk_size` tokens at a time, each image encoded when its first placeholder is
        reached and dropped once its block is done: activations are those of one chunk and one or two images, however
        long the prompt and however many images it holds. The logits and cache are those of one forward over the
        whole prompt (a Mamba cache continues exactly, see `mamba_kernels`).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): as the processor builds them, any
                number of image blocks per sample.
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, image_size, image_size)`, *optional*): every
                image of the batch, in the order of their blocks.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 0 on (left) padding.
            chunk_size (`int`, *optional*): tokens per forward (at least 2 after the first chunk); the whole prompt at
                once by default.
            cache (`Cache`, *optional*): a cache to continue (the prompt then follows what it holds).

        Returns:
            [`VLCausalLMOutputWithPast`] with the logits of the last position and the `cache`; continue with
            `model.generate(**full_inputs, cache=copy.deepcopy(output.cache))` (the prompt followed by the new
            tokens, as with any transformers cache). Pythia-VL's positions count real tokens only, as `generate()`
            numbers a left-padded prompt.
        """
        length = input_ids.shape[1]
        chunk_size = length if chunk_size is None else chunk_size
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        placeholders = input_ids == self.config.image_token_id
        tokens_per_image = self.config.num_image_tokens
        _check_placeholder_count(placeholders, 0 if pixel_values is None else pixel_values.shape[0], tokens_per_image)
        # Each placeholder's rank among the batch's placeholders, in the order the images are given (row by row), and
        # the column of each image's last placeholder (the image is dropped once a chunk has passed it).
        ranks = (placeholders.flatten().cumsum(0) - 1).view_as(input_ids)
        last_columns = placeholders.nonzero()[tokens_per_image - 1 :: tokens_per_image, 1].tolist()
        recurrent = self.config.text_config.model_type in RECURRENT_TEXT_MODEL_TYPES
        # Attention positions count real tokens only, as generate() numbers a left-padded prompt.
        positions = None
        if not recurrent and attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # No chunk after the first is a single token: transformers' Mamba-2 mixers take a one-token forward on a
        # cache for a decoding step, which ignores the attention mask (a padding token would enter the state).
        starts = list(range(0, length, max(chunk_size, 2)))
        if len(starts) > 1 and length - starts[-1] == 1:
            starts.pop()  # the last token joins the chunk before it
        ends = starts[1:] + [length]
        features, output = {}, None
        for start, end in zip(starts, ends):
            embeds = self.model.embed_tokens(input_ids[:, start:end])
            where = placeholders[:, start:end]
            if where.any():
                rank = ranks[:, start:end][where]
                image, patch = rank // tokens_per_image, rank % tokens_per_image
                for index in image.unique().tolist():
                    if index not in features:
                        features[index] = self.model.get_image_features(pixel_values[index : index + 1])[0]
                rows = torch.stack([features[i][p] for i, p in zip(image.tolist(), patch.tolist())])
                embeds = embeds.masked_scatter(where.unsqueeze(-1), rows.to(embeds.dtype))
                for index in [index for index in features if last_columns[index] < end]:
                    del features[index]
            if attention_mask is None:
                mask = None
            else:
                # A Mamba mixer masks the tokens it is given; attention masks everything the cache holds too.
                mask = attention_mask[:, start:end] if recurrent else attention_mask[:, :end]
            before = _cached_ids(cache)
            extra = {} if positions is None else {"position_ids": positions[:, start:end]}
            output = self.model(
                inputs_embeds=embeds, attention_mask=mask, cache=cache, use_cache=True, return_dict=True, **extra
            )
            cache = output.cache
            _record_cached_ids(cache, before, input_ids[:, start:end])
        return VLCausalLMOutputWithPast(logits=self._logits(output.last_hidden_state[:, -1:]), cache=cache)


class MambaVLPreTrainedModel(VLMambaPreTrainedModel):
    """The flags of every Mamba-VL class."""

    config_class = MambaVLConfig
    # Units that device maps and FSDP's auto-wrap keep whole, for each backbone.
    _no_split_modules = ["MambaBlock", "Mamba2Block", "FalconMambaBlock", "FalconH1DecoderLayer"]
    _is_stateful = True


class PythiaVLPreTrainedModel(VLMambaPreTrainedModel):
    """The flags of every Pythia-VL class."""

    config_class = PythiaVLConfig
    _no_split_modules = ["GPTNeoXLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class MambaVLModel(MambaVLPreTrainedModel, VLMambaModel):
    """Mamba-VL without its language-modelling head."""

    def _build_language_model(self, config: MambaVLConfig) -> PreTrainedModel:
        language_model = super()._build_language_model(config)
        if config.norm_type == "layernorm":
            # transformers' blocks read only `norm.weight.dtype` and call the norm, so a LayerNorm takes the RMSNorm's
            # place in each block and as the final norm; the mixers, their fast paths and the cache are unchanged.
            text_config = config.text_config
            for block in language_model.layers:
                block.norm = nn.LayerNorm(text_config.hidden_size, eps=text_config.layer_norm_epsilon)
            language_model.norm_f = nn.LayerNorm(text_config.hidden_size, eps=text_config.layer_norm_epsilon)
        return language_model


class PythiaVLModel(PythiaVLPreTrainedModel, VLMambaModel):
    """Pythia-VL without its language-modelling head."""


class MambaVLForConditionalGeneration(MambaVLPreTrainedModel, VLMambaForConditionalGeneration):
    """
    Mamba-VL: vision tower + connector + Mamba language model with tied input/output embeddings. `generate()`
    keeps the recurrent states in `cache`; images are encoded once, at the prefill step.
    """

    base_model_class = MambaVLModel
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embeddings.weight"}

    def _new_tokens_after_the_cached_prompt(self, model_inputs: dict, held: torch.Tensor) -> dict:
        """`model_inputs` of generate()'s first step cut to what follows the prompt `cache` holds, with the images of
        that part only; an `input_ids` that does not start with the cached prompt is an error."""
        ids = model_inputs["input_ids"]
        length = held.shape[1]
        if ids.shape[0] != held.shape[0] or ids.shape[1] <= length or not torch.equal(ids[:, :length], held.to(ids)):
            raise ValueError(
                f"generate() got a Mamba-VL cache holding a prompt of {length} tokens (batch {held.shape[0]}) and "
                f"input_ids of shape {tuple(ids.shape)} that do not continue it: pass the cached prompt followed by "
                "the new tokens, as with any transformers cache."
            )
        model_inputs["input_ids"] = ids[:, length:]
        if model_inputs.get("attention_mask") is not None:
            model_inputs["attention_mask"] = model_inputs["attention_mask"][:, length:]
        return self._images_of_the_fed_tokens(model_inputs, ids)

    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    def prepare_inputs_for_generation(
        self,
        input_ids,
        inputs_embeds=None,
        use_cache=None,
        cache: Cache | None = None,
        attention_mask: torch.LongTensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            cache=cache,
            attention_mask=attention_mask,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        if self.config.text_config.model_type not in RECURRENT_TEXT_MODEL_TYPES:
            # A hybrid's cache also holds attention layers: it knows its length, and the attention needs the mask.
            return model_inputs
        # After the prefill the mixer would apply the full-length mask to a one-token step; padding is already
        # folded into the recurrent state, so decoding steps take no mask.
        if use_cache and not is_first_iteration:
            model_inputs["attention_mask"] = None
        elif is_first_iteration and cache is not None and not _is_prefill(cache):
            held = _cached_ids(cache)
            if held is None:
                raise ValueError(
                    "generate() got a Mamba-VL cache whose prompt was fed as embeddings: a recurrent cache holds no "
                    "length, so the tokens it covers are unknown. Fill it with input_ids (or model.prefill)."
                )
            model_inputs = self._new_tokens_after_the_cached_prompt(model_inputs, held)
        return model_inputs


class PythiaVLForConditionalGeneration(PythiaVLPreTrainedModel, VLMambaForConditionalGeneration):
    """
    Pythia-VL: vision tower + connector + GPT-NeoX language model with an untied head. `generate()` uses the
    key/value cache in `cache`; images are encoded once, at the prefill step.
    """

    base_model_class = PythiaVLModel
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_in.weight"}


__all__ = [
    "VLMambaPreTrainedModel",
    "VLMambaModel",
    "VLMambaForConditionalGeneration",
    "MambaVLPreTrainedModel",
    "PythiaVLPreTrainedModel",
    "MambaVLModel",
    "MambaVLForConditionalGeneration",
    "PythiaVLModel",
    "PythiaVLForConditionalGeneration",
    "VLMambaMLPConnector",
    "CONNECTOR_CLASSES",
    "VLModelOutputWithPast",
    "VLCausalLMOutputWithPast",
]
