# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""One image, one prompt: generate, read the boxes out of the answer, draw them (the library side of
`vlmamba predict`)."""

import os
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from .evaluation.boxes import draw_boxes
from .models.tasks import MAX_NEW_TOKENS, TASKS


# The field of a task's example that the user's prompt fills.
PROMPT_FIELDS = {
    "captioning": "prompt",
    "vqa": "question",
    "multiple_choice": "question",
    "grounding": "expression",
    "grounded_captioning": None,
    "image_text_match": "caption",
    "dense_captioning": None,
}
PREDICT_TASKS = tuple(PROMPT_FIELDS)
# Decoding length for free prompts (no task).
DEFAULT_MAX_NEW_TOKENS = 64


def load_model(model_name_or_path: str | os.PathLike, device: str | None = None, trust_remote_code: bool = True):
    """Loads a Mamba-VL / Pythia-VL folder or Hub id with its processor, in eval mode. Returns `(model, processor)`."""
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def task_prompt(processor, task: str | None, prompt: str | None = None, choices=None, box=None, image=None) -> str:
    """The text to generate from: the task's reference prompt filled with `prompt` (and `choices` for multiple choice,
    a pixel `box` of `image` for dense captioning), or `prompt` itself without a task, with the image placeholder
    put first when the prompt has none."""
    if task is None:
        if not prompt:
            raise ValueError("Give a prompt, a task, or both.")
        return prompt if processor.image_token in prompt else processor.image_token + prompt
    if task not in PROMPT_FIELDS:
        raise ValueError(f"Unknown task {task!r}; predict supports {PREDICT_TASKS} (all tasks: {TASKS}).")
    example = {"task": task, "image": image}
    field = PROMPT_FIELDS[task]
    if field is not None and prompt:
        example[field] = prompt
    elif field is not None and task != "captioning":
        raise ValueError(f"Task {task!r} needs a prompt: the {field}.")
    if task == "multiple_choice":
        if not choices:
            raise ValueError("Task 'multiple_choice' needs choices.")
        example["choices"] = list(choices)
    if task == "dense_captioning":
        if box is None:
            raise ValueError("Task 'dense_captioning' needs a box (x1, y1, x2, y2 in pixels).")
        example["box"] = box
    return processor.build_prompt(example, for_generation=True).text


@torch.no_grad()
def predict(
    model,
    processor,
    image: Image.Image | str | os.PathLike,
    prompt: str | None = None,
    task: str | None = None,
    choices=None,
    box=None,
    max_new_tokens: int | None = None,
    output_image: str | os.PathLike | None = None,
) -> dict:
    """Greedy generation for one image.

    Returns a dict with `prompt` (the text the model continued), `text` (the answer), `phrases`, `boxes` (pixel XYXY
    of `image`), `boxes_normalized`, and `output_image` (the PNG with the boxes drawn, when `output_image` is given).
    """
    if not isinstance(image, Image.Image):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image not found: {path}")
        try:
            image = Image.open(path)
            image.load()
        except OSError as error:
            raise ValueError(f"Cannot read image {path}: {error}") from None
    image = image.convert("RGB")
    text = task_prompt(processor, task, prompt, choices=choices, box=box, image=image)
    if max_new_tokens is None:
        max_new_tokens = MAX_NEW_TOKENS[task] if task else DEFAULT_MAX_NEW_TOKENS
    inputs = processor(images=[image], text=[text], return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    result = processor.post_process_grounding(new_tokens, image_sizes=[(image.height, image.width)])[0]
    result = {"prompt": text, **result}
    if output_image is not None:
        labels = [phrase or f"box {number}" for number, phrase in enumerate(result["phrases"])]
        draw_boxes(image, result["boxes"], labels=labels, path=output_image)
        result["output_image"] = str(output_image)
    return result


__all__ = ["PREDICT_TASKS", "load_model", "task_prompt", "predict"]
