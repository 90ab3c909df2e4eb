# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Tiny offline models: a tokenizer trained on the spot and small configs, for demos and tests (no downloads)."""

import math
import random

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, PreTrainedTokenizerFast

from .builder import FAMILIES, set_generation_defaults
from .models.image_processing_vlmamba import VLMambaImageProcessor
from .models.processing_vlmamba import VLMambaProcessor


EOS = "<|endoftext|>"
# The image-block markers of the reference (begin and end, row separator).
MARKERS = ("###", "&&")
WORDS = (
    "a the red blue green small large circle square triangle on left right of image picture shows there is are "
    "two three one what colour shape how many where answer question caption provide sentence provided locate region "
    "described by yes no"
).split()

def vision_configs(image_size: int = 28, patch_size: int = 14, width: int = 32, depth: int = 2) -> dict[str, dict]:
    """Tiny vision towers by kind: `timm` (EVA-02 architecture), `clip`, `siglip`."""
    timm = {
        "model_type": "timm_wrapper",
        "architecture": "eva02_large_patch14_clip_336",
        "do_pooling": False,
        "model_args": {"img_size": image_size, "patch_size": patch_size, "embed_dim": width, "depth": depth,
                       "num_heads": 2},
    }
    clip = {
        "model_type": "clip_vision_model", "image_size": image_size, "patch_size": patch_size, "hidden_size": width,
        "intermediate_size": 2 * width, "num_hidden_layers": depth, "num_attention_heads": 4,
    }
    return {"timm": timm, "clip": clip, "siglip": {**clip, "model_type": "siglip_vision_model"}}


def text_config(family: str, vocab_size: int, width: int = 32, depth: int = 2) -> dict:
    """A tiny `mamba` or `gpt_neox` language-model config of the given width and depth."""
    special = {"eos_token_id": 0, "pad_token_id": 0, "bos_token_id": 0}
    if family == "mamba":
        return {"model_type": "mamba", "hidden_size": width, "num_hidden_layers": depth, "state_size": 8,
                "vocab_size": vocab_size, **special}
    if family == "mamba2":  # heads x head_dim = 2 x width, as Mamba-2's expansion
        return {"model_type": "mamba2", "hidden_size": width, "num_hidden_layers": depth, "state_size": 8,
                "num_heads": 4, "head_dim": width // 2, "n_groups": 1, "chunk_size": 16, "expand": 2,
                "vocab_size": vocab_size, **special}
    if family == "falcon_mamba":
        return {"model_type": "falcon_mamba", "hidden_size": width, "num_hidden_layers": depth, "state_size": 8,
                "vocab_size": vocab_size, **special}
    if family == "falcon_h1":
        return {"model_type": "falcon_h1", "hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 2 * width, "mamba_d_ssm": 2 * width,
                "mamba_n_heads": 4, "mamba_d_head": width // 2, "mamba_d_state": 8, "mamba_n_groups": 1,
                "mamba_chunk_size": 16, "max_position_embeddings": 2048, "vocab_size": vocab_size,
                "tie_word_embeddings": False, "embedding_multiplier": 2.0, "lm_head_multiplier": 0.5, **special}
    if family == "pythia":
        return {"model_type": "gpt_neox", "hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": 4,
                "intermediate_size": 4 * width, "vocab_size": vocab_size, "max_position_embeddings": 2048, **special}
    raise ValueError(f"Unknown family {family!r}; expected one of {', '.join(FAMILIES)}.")


def ssm_backbone_config(
    model_type: str,
    width: int,
    state_size: int,
    *,
    attention_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int | None = None,
    **fields,
):
    """A `mamba2`, `falcon_mamba` or `falcon_h1` config whose mixers match Mamba-1's at `width`: inner width
    2 x `width`, state `state_size`, convolution 4; Mamba-2's heads of `gcd(2 * width, 64)` channels. FalconH1 also
    takes its attention heads, MLP width and positions. `fields` (vocabulary, depth, token ids, ...) pass through."""
    inner = 2 * width
    head_dim = math.gcd(inner, 64)
    if model_type == "falcon_mamba":
        return AutoConfig.for_model(model_type, hidden_size=width, state_size=state_size, expand=2, conv_kernel=4,
                                    **fields)
    if model_type == "mamba2":
        return AutoConfig.for_model(model_type, hidden_size=width, num_heads=inner // head_dim, head_dim=head_dim,
                                    state_size=state_size, n_groups=1, expand=2, conv_kernel=4, **fields)
    if model_type == "falcon_h1":
        return AutoConfig.for_model(
            model_type, hidden_size=width, num_attention_heads=attention_heads, num_key_value_heads=attention_heads,
            intermediate_size=intermediate_size, mamba_d_ssm=inner, mamba_n_heads=inner // head_dim,
            mamba_d_head=head_dim, mamba_d_state=state_size, mamba_n_groups=1,
            max_position_embeddings=max_position_embeddings, **fields,
        )
    raise ValueError(f"Unknown backbone {model_type!r}; expected mamba2, falcon_mamba or falcon_h1.")


def corpus(num_lines: int = 400, seed: int = 0) -> list[str]:
    """Random sentences over a small vocabulary, with the reference's `###` / `&&` markers among them."""
    rng = random.Random(seed)
    lines = []
    for _ in range(num_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        lines.append(" ".join(words) + rng.choice([".", "?", " ### ", " && ", "\n"]))
    return lines


def train_tokenizer(texts: list[str] | None = None, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (default `corpus()`), with `<|endoftext|>` as eos and pad."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts if texts is not None else corpus(), trainer=trainer)
    # The image-block markers are single ordinary pieces, as in GPT-NeoX's vocabulary (the processor requires it).
    tokenizer.add_tokens([AddedToken(marker, normalized=False, special=False) for marker in MARKERS
                          if marker not in tokenizer.get_vocab()])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS, bos_token=EOS)


def tiny_processor(tokenizer=None, image_size: int = 28, patch_size: int = 14, **kwargs) -> VLMambaProcessor:
    image_processor = VLMambaImageProcessor(size={"height": image_size, "width": image_size})
    return VLMambaProcessor(image_processor, tokenizer or train_tokenizer(), patch_size=patch_size, **kwargs)


def tiny_model(family: str, processor: VLMambaProcessor, vision: str = "timm", width: int = 32, depth: int = 2,
               vision_depth: int | None = None, **config_kwargs):
    """A randomly initialised model whose config matches `processor` (vocabulary padded to a multiple of 8).

    `depth` is the language model's number of layers, and the vision tower's unless `vision_depth` is given.
    """
    config_class, model_class = FAMILIES[family]
    tokenizer = processor.tokenizer
    vocab_size = len(tokenizer) + (-len(tokenizer)) % 8
    layout = processor.image_layout()
    text = text_config(family, vocab_size, width, depth)
    if "tie_word_embeddings" in text:
        config_kwargs.setdefault("tie_word_embeddings", text["tie_word_embeddings"])
    config = config_class(
        vision_config=vision_configs(
            layout["image_size"], layout["patch_size"], width, depth if vision_depth is None else vision_depth
        )[vision],
        text_config=text,
        **layout,
        **config_kwargs,
    )
    model = model_class(config).eval()
    set_generation_defaults(model, tokenizer)
    return model


__all__ = [
    "vision_configs",
    "text_config",
    "ssm_backbone_config",
    "corpus",
    "train_tokenizer",
    "tiny_processor",
    "tiny_model",
]
