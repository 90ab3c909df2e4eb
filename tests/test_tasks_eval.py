# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The evaluation-only prompt variants of `build_prompt`: POPE's plain question, TextVQA's OCR text, one-string
prompts (GQA, TextVQA, POPE, VSR), with the reference's strings written out by hand."""

import pytest

from vlmamba.models.tasks import build_prompt


IMG = ("<image>", False)
VQA = "Answer the question using a single word or phrase."


def segments(example, **kwargs):
    return build_prompt(example, for_generation=True, **kwargs).segments


def test_pope_plain_question_one_string():
    example = {"task": "vqa", "question": "is there a DOG in the image?", "answer": "yes"}
    assert segments(example, vqa_format="plain", merge_turns=True) == [
        IMG,
        ("Answer the question using a single word or phrase.\nIs there a dog in the image?\n", False),
    ]
    # Without merging, the turns are those of the template, only without "Question:" / "Answer:".
    assert segments(example, vqa_format="plain") == [IMG, (VQA, False), ("\nIs there a dog in the image?\n", False)]


def test_textvqa_ocr_tokens_in_one_string():
    example = {"task": "vqa", "question": "what does the sign say?", "ocr_tokens": ["STOP", "25", "Main", "st"]}
    assert segments(example, ocr_tokens=True, merge_turns=True) == [
        IMG,
        (
            "Answer the question using a single word or phrase.\nOCR text:\nSTOP 25 Main st\n"
            "Question: What does the sign say?\nAnswer: ",
            False,
        ),
    ]
    # No tokens: an empty OCR line, as the reference wrote it.
    example["ocr_tokens"] = []
    assert segments(example, ocr_tokens=True, merge_turns=True)[1][0] == (
        "Answer the question using a single word or phrase.\nOCR text:\n\nQuestion: What does the sign say?\nAnswer: "
    )


def test_ocr_tokens_move_with_the_instruction_when_instruction_first():
    example = {"task": "vqa", "question": "what is written?", "ocr_tokens": ["hello"]}
    assert segments(example, ocr_tokens=True, merge_turns=True, instruction_first=True) == [
        ("Answer the question using a single word or phrase.\nOCR text:\nhello", False),
        IMG,
        ("\nQuestion: What is written?\nAnswer: ", False),
    ]


def test_ocr_tokens_are_ignored_without_the_option():
    example = {"task": "vqa", "question": "what is written?", "ocr_tokens": ["hello"]}
    assert segments(example) == [IMG, (VQA, False), ("\nQuestion: What is written?\nAnswer: ", False)]


def test_gqa_one_string_and_instruction_first_as_the_reference():
    example = {"task": "vqa", "question": "is the car red?", "answer": "no"}
    assert segments(example, merge_turns=True) == [
        IMG,
        ("Answer the question using a single word or phrase.\nQuestion: Is the car red?\nAnswer: ", False),
    ]
    assert segments(example, merge_turns=True, instruction_first=True) == [
        (VQA, False),
        IMG,
        ("\nQuestion: Is the car red?\nAnswer: ", False),
    ]


def test_vsr_one_string():
    example = {"task": "image_text_match", "caption": "the cat is ON the table", "answer": True}
    assert segments(example, merge_turns=True) == [
        IMG,
        ("Determine if the image matches the description:\nThe cat is on the table.\n", False),
    ]


def test_merge_turns_for_training_keeps_answers_supervised():
    example = {"task": "vqa", "question": ["is it day", "how many?"], "answer": ["yes", "2"]}
    prompt = build_prompt(example, merge_turns=True, vqa_format="plain")
    assert prompt.segments == [
        IMG,
        ("Answer the question using a single word or phrase.\nIs it day.\n", False),
        ("Yes.<|endoftext|>", True),
        ("\nHow many?\n", False),
        ("2.<|endoftext|>", True),
    ]
    # Text-only: nothing splits the context.
    assert build_prompt(example, merge_turns=True, with_image=False, for_generation=True).segments == [
        (VQA + "\nQuestion: Is it day.\nAnswer: Yes.<|endoftext|>\nQuestion: How many?\nAnswer: ", False)
    ]


def test_defaults_are_the_training_templates():
    example = {"task": "vqa", "question": "is it red?", "ocr_tokens": ["a"]}
    assert build_prompt(example, for_generation=True) == build_prompt(
        example, for_generation=True, vqa_format="qa", ocr_tokens=False, merge_turns=False
    )


@pytest.mark.parametrize(
    "example, kwargs, message",
    [
        ({"task": "vqa", "question": "q"}, {"vqa_format": "short"}, "vqa_format must be one of"),
        ({"task": "vqa", "question": "q"}, {"merge_turns": 1}, "merge_turns must be a bool"),
        ({"task": "vqa", "question": "q"}, {"ocr_tokens": True}, "missing field 'ocr_tokens'"),
        ({"task": "vqa", "question": "q", "ocr_tokens": "STOP"}, {"ocr_tokens": True}, "'ocr_tokens' must be a list"),
        ({"task": "vqa", "question": "q", "ocr_tokens": ["a", 3]}, {"ocr_tokens": True}, r"'ocr_tokens\[1\]'"),
        ({"task": "vqa", "question": "q", "ocr_tokens": ["<image>"]}, {"ocr_tokens": True}, "image token"),
        ({"task": "captioning"}, {"vqa_format": "plain"}, "apply to task 'vqa' only"),
        ({"task": "grounding", "expression": "x"}, {"ocr_tokens": True}, "apply to task 'vqa' only"),
    ],
)
def test_bad_variant_arguments_raise(example, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_prompt(example, for_generation=True, index=3, **kwargs)
