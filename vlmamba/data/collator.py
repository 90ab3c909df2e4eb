# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Batches of structured examples for `Trainer`: task template -> processor -> right-padded tensors with labels.

Use it with `TrainingArguments(remove_unused_columns=False)`, so that `Trainer` hands over the dataset rows (the
structured examples of `vlmamba.models.tasks`) as they are.

Labels are -100 everywhere except the supervised answer tokens (their "." and eos included): never on the image
block, its markers, the instruction, questions, options or padding. How the loss averages them is the model config's
`loss_reduction`: `"token"` (default, transformers' convention) or `"sample"` (each sample's mean, then the mean over
samples, as the reference trained).

An example with `keep_case` set (AI2D, DocVQA and InfographicVQA rows, whose questions name labels and text in the
image by their case) is written without lower-casing (`normalize_text="keep_case"`) when the processor normalizes
text, as the reference wrote them and as vlmamba's evaluation prompts them; with `normalize_text=False` it is written
as given, like every other example.

Padding-free batches: with `pack_to=N` the examples are packed, in order, into rows of at most N tokens (each into the
first row with room), with `position_ids` that restart at 0 for every example and no `attention_mask`, transformers'
padding-free convention: Mamba-VL restarts its convolution and scan at every example, Pythia-VL attends within each
example (transformers' block-diagonal masks, or sequence lengths with flash attention), so that no compute goes to
padding and no example sees another. Each row's free tail is padding (labels -100) whose positions continue its last
example's, so that every sequence of a row is an example (which `loss_reduction="sample"` and the count of samples
without supervised tokens rely on). An example's first label is -100, so that no example is trained to predict the
next one's first token. An example longer than N tokens is an error that names it.

A sample can end up with no supervised token (a `max_length` that cuts its whole answer): it trains nothing, and a
batch of such samples is a step with loss 0. The collator logs a warning for every batch that holds one, naming the
samples by their `id` (or their position in the batch, for examples without one).
"""

import os
from dataclasses import dataclass

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .images import open_image


logger = logging.get_logger(__name__)


@dataclass
class VLMambaDataCollator:
    """Turns a list of structured examples into `input_ids`, `attention_mask`, `labels` and `pixel_values`.

    Args:
        processor: the model's `VLMambaProcessor`, whose prompt format (layout, text normalization, box format)
            writes every example.
        max_length: cut each sample on the right to this many tokens (never into the image block: that is an error).
        pad_to_multiple_of: pad the batch length to a multiple of this.
        pack_to: pack the examples into rows of at most this many tokens (padding-free; see the module docstring)
            instead of one right-padded row per example.

    An example's `image` may be a PIL image, a path (opened here, lazily) or missing for text-only examples. Errors
    and warnings name an example by its `id` field, or by its position in the batch when it has none.

    Raises:
        ValueError: `max_length`, `pad_to_multiple_of` or `pack_to` is not a positive number of tokens.
    """

    processor: object
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    pack_to: int | None = None

    def __post_init__(self):
        for name in ("max_length", "pad_to_multiple_of", "pack_to"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of tokens (or None), got {value}.")

    def encode(self, example: dict, index=None) -> dict:
        """One example -> `input_ids`, `labels` (lists) and `pixel_values` (or None). `index` (its position in the
        batch) names it in errors when it has no `id`."""
        if not isinstance(example, dict):
            raise ValueError(f"Example {index} must be a dict of fields, got {type(example).__name__}.")
        name = _name(example, index)
        image = example.get("image")
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image, row=name)
        if image is not None:
            example = {**example, "image": image}
        variant = {}
        if example.get("keep_case") is True and self.processor.normalize_text is True:
            variant["normalize_text"] = "keep_case"
        return self.processor.encode_example(example, image=image, max_length=self.max_length, index=index, **variant)

    def __call__(self, examples: list[dict]) -> BatchFeature:
        encoded = [self.encode(example, index) for index, example in enumerate(examples)]
        unsupervised = [
            f"id {example['id']!r}" if example.get("id") is not None else f"batch position {index}"
            for index, (example, item) in enumerate(zip(examples, encoded))
            if all(label == -100 for label in item["labels"])
        ]
        if unsupervised:
            every = len(unsupervised) == len(encoded)
            which = "every sample" if every else f"{len(unsupervised)} of {len(encoded)} samples"
            cause = f"max_length={self.max_length} cut their answers" if self.max_length else "they have no answer"
            logger.warning(
                f"No supervised token in {which} of this batch ({', '.join(unsupervised)}): {cause}, so they train "
                f"nothing{' (the step has loss 0)' if every else ''}."
            )
        tokenizer = self.processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has neither a pad token nor an eos token to pad with.")
        if self.pack_to is not None:
            return self._packed(examples, encoded, pad_id)
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

    def _packed(self, examples: list[dict], encoded: list[dict], pad_id: int) -> BatchFeature:
        """The padding-free batch: examples packed first-fit, in order, into rows of at most `pack_to` tokens."""
        rows: list[list[int]] = []
        free: list[int] = []
        for index, item in enumerate(encoded):
            size = len(item["input_ids"])
            if size > self.pack_to:
                raise ValueError(
                    f"Example {_name(examples[index], index)!r} has {size} tokens, more than pack_to={self.pack_to}: "
                    "raise pack_to, or cut examples with max_length."
                )
            row = next((number for number, room in enumerate(free) if room >= size), None)
            if row is None:
                rows.append([])
                free.append(self.pack_to)
                row = len(rows) - 1
            rows[row].append(index)
            free[row] -= size
        length = max(self.pack_to - room for room in free)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        position_ids = torch.zeros((len(rows), length), dtype=torch.long)
        pixel_values = []
        for row, members in enumerate(rows):
            start = 0
            for index in members:
                item = encoded[index]
                size = len(item["input_ids"])
                input_ids[row, start : start + size] = torch.tensor(item["input_ids"], dtype=torch.long)
                labels[row, start + 1 : start + size] = torch.tensor(item["labels"][1:], dtype=torch.long)
                position_ids[row, start : start + size] = torch.arange(size)
                if item["pixel_values"] is not None:
                    pixel_values.append(item["pixel_values"])
                start += size
            # The free tail: padding that continues the last example (after it, so it changes nothing of it).
            last = len(encoded[members[-1]]["input_ids"])
            position_ids[row, start:] = torch.arange(last, last + length - start)
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
        if pixel_values:
            batch["pixel_values"] = torch.cat(pixel_values)
        return BatchFeature(batch)


def _name(example: dict, index):
    """How errors and warnings name an example: its `id`, else its position in the batch."""
    return example["id"] if example.get("id") is not None else index


__all__ = ["VLMambaDataCollator"]
