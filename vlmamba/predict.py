# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""One image, one prompt: generate, read the boxes out of the answer, draw them (the library side of
`vlmamba predict`)."""

import json
import os
from pathlib import Path

from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from .evaluation.boxes import draw_boxes
from .models.configuration_vlmamba import MambaVLConfig, PythiaVLConfig
from .models.image_processing_vlmamba import open_image
from .models.processing_vlmamba import generate_answers
from .models.tasks import TASKS


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


def _looks_like_a_path(name: str) -> bool:
    """Whether `name` can only be a local path: a Hub id is `name` or `owner/name`, never absolute, relative to `.`
    or `~`, nor with more than one `/`."""
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _check_model_folder(path: Path) -> None:
    """A local folder holds a vlmamba model's config, read before transformers is asked to load it (which would
    answer a foreign or unknown `model_type` with a question about remote code)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json: it is not a saved model (save_pretrained writes one).")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config_file} is not a JSON object: {error}") from None
    known = (MambaVLConfig.model_type, PythiaVLConfig.model_type)
    if model_type not in known:
        raise ValueError(
            f"{config_file} has model_type {model_type!r}; vlmamba loads {' and '.join(known)} models."
        )


def load_model(model_name_or_path: str | os.PathLike, device: str | None = None, trust_remote_code: bool = True):
    """Loads a Mamba-VL / Pythia-VL folder or Hub id with its processor, in eval mode. Returns `(model, processor)`.

    A path that does not exist is a `FileNotFoundError` naming it, rather than a Hub lookup of a folder's name."""
    name = os.fspath(model_name_or_path)
    path = Path(name).expanduser()
    if not path.exists() and (isinstance(model_name_or_path, Path) or _looks_like_a_path(name)):
        raise FileNotFoundError(f"Model folder not found: {path}")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"The model must be a folder (save_pretrained's output) or a Hub id, got the file {path}"
        )
    if path.is_dir():
        _check_model_folder(path)
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def task_example(processor, task: str | None, prompt: str | None = None, choices=None, box=None, image=None) -> dict:
    """The example `generate_answers` takes for one image: the task's fields filled with `prompt` (and `choices` for
    multiple choice, a pixel `box` of `image` for dense captioning), or without a task `prompt` itself as a free
    prompt, with the image placeholder put first when the prompt has none."""
    if task is None:
        if not prompt:
            raise ValueError("Give a prompt, a task, or both.")
        return {"image": image, "prompt": prompt if processor.image_token in prompt else processor.image_token + prompt}
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
    return example


def task_prompt(processor, task: str | None, prompt: str | None = None, choices=None, box=None, image=None) -> str:
    """The text to generate from (see `task_example`): the task's reference prompt in the processor's format, or the
    free prompt."""
    example = task_example(processor, task, prompt, choices=choices, box=box, image=image)
    if task is None:
        return example["prompt"]
    return processor.build_prompt(example, for_generation=True).text


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
    """Greedy generation for one image (one `generate_answers` call).

    Returns a dict with `prompt` (the text the model continued), `text` (the answer), `phrases`, `boxes` (pixel XYXY
    of `image`), `boxes_normalized`, `dropped_boxes`, and `output_image`: the PNG with the boxes drawn, written when
    `output_image` is given and the answer has boxes (`None` otherwise). A box is labelled with its phrase, a
    grounding answer's with the expression, and otherwise `box N`.
    """
    if not isinstance(image, Image.Image):
        if not Path(image).is_file():
            raise FileNotFoundError(f"Image not found: {Path(image)}")
        image = open_image(image)
    example = task_example(processor, task, prompt, choices=choices, box=box, image=image)
    answer = generate_answers(model, processor, [example], max_new_tokens=max_new_tokens)[0]
    result = {key: answer[key] for key in ("prompt", "text", "phrases", "boxes", "boxes_normalized", "dropped_boxes")}
    result["output_image"] = None
    if output_image is not None and result["boxes"]:
        unnamed = example.get("expression") if task == "grounding" else None
        labels = [phrase or unnamed or f"box {number}" for number, phrase in enumerate(result["phrases"])]
        draw_boxes(image, result["boxes"], labels=labels, path=output_image)
        result["output_image"] = str(output_image)
    return result


__all__ = ["PREDICT_TASKS", "load_model", "task_example", "task_prompt", "predict"]
