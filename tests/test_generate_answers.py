# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""`generate_answers`, the one inference path: batched answers equal one-by-one generation, prompts are tokenized as
in training, boxes are read by the processor, and bad examples are named."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import IMAGE_SIZE, make_model, make_processor
from vlmamba import generate_answers
from vlmamba.models.processing_vlmamba import FREE_PROMPT_MAX_NEW_TOKENS, free_prompt


def _image(seed: int, size=(40, 30)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _examples():
    return [
        {"task": "captioning", "image": _image(0), "max_new_tokens": 7},
        {"task": "vqa", "question": "What colour is the square?", "image": _image(1), "max_new_tokens": 3},
        {"image": _image(2), "prompt": "<image>Describe it in detail.", "max_new_tokens": 5},
        {"task": "grounding", "expression": "the red circle", "image": _image(3), "max_new_tokens": 6},
        {"prompt": "A text-only prompt about shapes", "image": None, "max_new_tokens": 4},
    ]


def _one_by_one(model, processor, example) -> list[int]:
    """The example alone, unpadded, through `build_prompt`, `encode_prompt` and plain `generate()`."""
    image = example["image"]
    if "task" in example:
        prompt = processor.build_prompt(example, for_generation=True, with_image=image is not None)
    else:
        prompt = free_prompt(example["prompt"], processor.image_token)
    encoded = processor.encode_prompt(prompt, image=image)
    input_ids = torch.tensor([encoded["input_ids"]])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if encoded["pixel_values"] is not None:
        inputs["pixel_values"] = encoded["pixel_values"]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=example["max_new_tokens"], do_sample=False)
    tokens = output[0, input_ids.shape[1] :].tolist()
    eos = processor.tokenizer.eos_token_id
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_batched_answers_equal_one_by_one_generation(family):
    processor = make_processor()
    model = make_model(family, processor).eval()
    examples = _examples()
    answers = generate_answers(model, processor, examples, batch_size=3)
    assert len(answers) == len(examples)
    for example, answer in zip(examples, answers):
        assert answer["tokens"] == _one_by_one(model, processor, example)
        assert len(answer["tokens"]) <= example["max_new_tokens"]
        assert answer["text"] == processor.tokenizer.decode(answer["tokens"], skip_special_tokens=True)
    # The task prompts are written with the processor's format; the free prompts are kept as given.
    assert answers[1]["prompt"] == processor.build_prompt(examples[1], for_generation=True).text
    assert answers[2]["prompt"] == "<image>Describe it in detail."
    assert answers[4]["boxes"] is None  # no image to scale boxes to


def test_a_free_prompt_is_tokenized_as_the_processor_tokenizes_text():
    processor = make_processor()
    text = "Look:<image> and tell me, what is shown?"
    encoded = processor.encode_prompt(free_prompt(text, processor.image_token), image=_image(0))
    assert encoded["input_ids"] == processor(images=[_image(0)], text=[text])["input_ids"][0]


class ScriptedModel:
    """Answers every sample with `answer`, then the eos; records each call's `max_new_tokens`."""

    def __init__(self, tokenizer, answer: str):
        self.tokenizer, self.answer = tokenizer, answer
        self.device, self.dtype, self.calls = torch.device("cpu"), torch.float32, []

    def generate(self, input_ids, attention_mask, max_new_tokens, pixel_values=None, **kwargs):
        self.calls.append(max_new_tokens)
        assert kwargs["do_sample"] is False and kwargs["num_beams"] == 1
        # Left padding: every sample's last position is a real token.
        assert bool(attention_mask[:, -1].all())
        new = (self.tokenizer(self.answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id])
        new = torch.tensor([new[:max_new_tokens]] * len(input_ids))
        return torch.cat([input_ids, new], dim=1)


def test_boxes_are_read_by_the_processor_in_pixels_of_each_image():
    processor = make_processor()
    model = ScriptedModel(processor.tokenizer, "[0.10,0.20,0.50,0.60].")
    examples = [
        {"task": "grounding", "expression": "it", "image": _image(0, size=(200, 100))},
        {"task": "grounding", "expression": "it", "image": _image(1, size=(20, 20)), "image_size": (100, 200)},
    ]
    answers = generate_answers(model, processor, examples)
    expected = processor.post_process_grounding(["[0.10,0.20,0.50,0.60]."], image_sizes=[(100, 200)])[0]
    for answer in answers:
        assert answer["boxes"] == expected["boxes"] and len(answer["boxes"]) == 1
        assert answer["boxes"][0] == pytest.approx([20.0, 20.0, 100.0, 60.0])
        assert answer["boxes_normalized"][0] == pytest.approx([0.1, 0.2, 0.5, 0.6])


def test_each_answer_is_cut_to_its_own_length_and_lengths_are_grouped():
    processor = make_processor()
    model = ScriptedModel(processor.tokenizer, "one two three four five six seven eight")
    examples = [{"image": _image(i), "prompt": "<image>Go on:", "max_new_tokens": n} for i, n in enumerate((2, 8, 2))]
    answers = generate_answers(model, processor, examples, batch_size=2)
    full = processor.tokenizer("one two three four five six seven eight", add_special_tokens=False)["input_ids"]
    assert [answer["tokens"] for answer in answers] == [full[:2], full[:8], full[:2]]
    # Sorted by length: the two short examples share a call.
    assert model.calls == [2, 8]
    default = generate_answers(model, processor, [{"image": _image(0), "prompt": "<image>"}])
    assert model.calls[-1] == FREE_PROMPT_MAX_NEW_TOKENS and default[0]["tokens"] == full


def test_bad_examples_are_named(tmp_path):
    processor = make_processor()
    model = ScriptedModel(processor.tokenizer, "x")
    good = {"image": _image(0), "prompt": "<image>"}
    with pytest.raises(ValueError, match=r"Example 1: give a 'task' with its fields, or a 'prompt'"):
        generate_answers(model, processor, [good, {"image": _image(1)}])
    with pytest.raises(ValueError, match=r"Example 'q7': .*not found: .*missing\.png"):
        generate_answers(model, processor, [good, {"id": "q7", "image": tmp_path / "missing.png", "prompt": "<image>"}])
    with pytest.raises(ValueError, match=r"Example 0: field 'max_new_tokens' must be a positive integer, got 0"):
        generate_answers(model, processor, [{**good, "max_new_tokens": 0}])
    with pytest.raises(ValueError, match=r"Example 2: field 'task' must be one of"):
        generate_answers(model, processor, [good, good, {"task": "dance", "image": _image(2)}])
    with pytest.raises(ValueError, match="got an image but its prompt has no image segment"):
        generate_answers(model, processor, [{"image": _image(0), "prompt": "no placeholder"}])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        generate_answers(model, processor, [good], batch_size=0)
    assert IMAGE_SIZE  # the tiny processor's images are squashed to this size whatever their own
