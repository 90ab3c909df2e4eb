# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Batches of structured examples for `Trainer`: task template -> processor -> right-padded tensors with labels.

Use it with `TrainingArguments(remove_unused_columns=False)`, so that `Trainer` hands over the dataset rows (the
structured examples of `vlmamba.models.tasks`) as they are.

Labels are -100 everywhere except the supervised answer tokens (their "." and eos included): never on the image
block, its markers, the instruction, questions, options or padding. How the loss averages them is the model config's
`loss_reduction`: `"token"` (default, transformers' convention) or `"sample"` (each sample's mean, then the mean over
samples, as the reference trained).
"""

import os
from dataclasses import dataclass

import torch
from transformers.feature_extraction_utils import BatchFeature

from .images import open_image


@dataclass
class VLMambaDataCollator:
    """Turns a list of structured examples into `input_ids`, `attention_mask`, `labels` and `pixel_values`.

    Args:
        processor: the model's `VLMambaProcessor`, whose prompt format (layout, text normalization, box format)
            writes every example.
        max_length: cut each sample on the right to this many tokens (never into the image block: that is an error).
        pad_to_multiple_of: pad the batch length to a multiple of this.

    An example's `image` may be a PIL image, a path (opened here, lazily) or missing for text-only examples.
    """

    processor: object
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def encode(self, example: dict, index=None) -> dict:
        """One example -> `input_ids`, `labels` (lists) and `pixel_values` (or None)."""
        name = example.get("id", index) if isinstance(example, dict) else index
        if not isinstance(example, dict):
            raise ValueError(f"Example {name} must be a dict of fields, got {type(example).__name__}.")
        image = example.get("image")
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image, row=name)
        if image is not None:
            example = {**example, "image": image}
        return self.processor.encode_example(example, image=image, max_length=self.max_length, index=index)

    def __call__(self, examples: list[dict]) -> BatchFeature:
        encoded = [self.encode(example, index) for index, example in enumerate(examples)]
        tokenizer = self.processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has neither a pad token nor an eos token to pad with.")
        length = max(len(item["input_ids"]) for item in encoded)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, item in enumerate(encoded):
            size = len(item["input_ids"])
            input_ids[row, :size] = torch.tensor(item["input_ids"], dtype=torch.long)
            labels[row, :size] = torch.tensor(item["labels"], dtype=torch.long)
            attention_mask[row, :size] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        pixel_values = [item["pixel_values"] for item in encoded if item["pixel_values"] is not None]
        if pixel_values:
            batch["pixel_values"] = torch.cat(pixel_values)
        return BatchFeature(batch)


__all__ = ["VLMambaDataCollator"]
