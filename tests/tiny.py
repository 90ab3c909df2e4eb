"""Tiny models shared by the tests (the transformers ModelTester pattern): nothing is downloaded."""

import torch

from vlmamba.toy import FAMILIES, tiny_model, tiny_processor, train_tokenizer


IMAGE_SIZE = 28
PATCH_SIZE = 14
_TOKENIZER = None


def make_tokenizer():
    """A fresh copy of the locally trained test tokenizer (trained once per session)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = train_tokenizer()
    return _TOKENIZER.__class__(tokenizer_object=_TOKENIZER.backend_tokenizer.__class__.from_str(
        _TOKENIZER.backend_tokenizer.to_str()), eos_token=_TOKENIZER.eos_token, pad_token=_TOKENIZER.pad_token,
        bos_token=_TOKENIZER.bos_token)


def make_processor(**kwargs):
    return tiny_processor(make_tokenizer(), image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, **kwargs)


def make_model(family, processor, vision="timm", seed=0, **kwargs):
    torch.manual_seed(seed)
    return tiny_model(family, processor, vision, **kwargs)


def save_tiny(family, directory, vision="timm", **kwargs):
    """Saves a tiny random model and its processor to `directory`, as a user publishing a checkpoint would."""
    processor = make_processor()
    model = make_model(family, processor, vision, **kwargs)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return model, processor


__all__ = ["FAMILIES", "IMAGE_SIZE", "PATCH_SIZE", "make_tokenizer", "make_processor", "make_model", "save_tiny"]
