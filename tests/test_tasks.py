import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmamba.models.boxes import BoxFormat
from vlmamba.models.tasks import (
    MAX_NEW_TOKENS,
    TASK_INSTRUCTIONS,
    TASKS,
    TaskPrompt,
    build_prompt,
    format_text,
)


EOS = "<|endoftext|>"
IMG = ("<image>", False)
# Pixel boxes below refer to a 200 x 100 (width x height) image.
SIZE = (100, 200)

# One example per template, with the reference's segments written out by hand: (text, supervised).
TEMPLATES = {
    "captioning": (
        {"task": "captioning", "caption": "  A man RIDING a horse ", "image_size": SIZE},
        [
            IMG,
            ("Provide a one-sentence caption for the provided image.\n", False),
            ("A man riding a horse.<|endoftext|>", True),
        ],
    ),
    "captioning_llava_prompt": (
        {"task": "captioning", "prompt": "<image>\nDescribe the image concisely.", "caption": "two dogs!"},
        [IMG, ("Describe the image concisely.\n", False), ("Two dogs!<|endoftext|>", True)],
    ),
    "captioning_llava_prompt_after": (
        {"task": "captioning", "prompt": "Give a brief description of the image.\n<image>", "caption": "a cat"},
        [IMG, ("Give a brief description of the image.\n", False), ("A cat.<|endoftext|>", True)],
    ),
    "vqa": (
        {"task": "vqa", "question": "what color is the CAT?", "answer": "BLACK"},
        [
            IMG,
            ("Answer the question using a single word or phrase.", False),
            ("\nQuestion: What color is the cat?\nAnswer: ", False),
            ("Black.<|endoftext|>", True),
        ],
    ),
    "vqa_turns": (
        {"task": "vqa", "question": ["is it day", "How many people?"], "answer": ["yes", "2"]},
        [
            IMG,
            ("Answer the question using a single word or phrase.", False),
            ("\nQuestion: Is it day.\nAnswer: ", False),
            ("Yes.<|endoftext|>", True),
            ("\nQuestion: How many people?\nAnswer: ", False),
            ("2.<|endoftext|>", True),
        ],
    ),
    "multiple_choice": (
        {
            "task": "multiple_choice",
            "question": "which is the largest?",
            "choices": ["sun", "the MOON", "earth"],
            "answer": 0,
        },
        [
            IMG,
            ("Answer with the option's letter from the given choices directly.", False),
            ("\nQuestion: Which is the largest?\n", False),
            ("A: Sun\n", False),
            ("B: The moon\n", False),
            ("C: Earth\nAnswer: ", False),
            ("A.<|endoftext|>", True),
        ],
    ),
    "multiple_choice_ocr": (
        {
            "task": "multiple_choice",
            "question": "Which label shows the Leaf?",
            "choices": ["A", "D"],
            "answer": "B",
            "ocr": [("A", "stem"), ("D", "leaf")],
        },
        [
            IMG,
            ("Answer with the option's letter from the given choices directly.\nOCR text:\nA: stem\nD: leaf", False),
            ("\nQuestion: Which label shows the leaf?\n", False),
            ("A: A\n", False),
            ("B: D\nAnswer: ", False),
            ("B.<|endoftext|>", True),
        ],
    ),
    "multiple_choice_grounded": (
        {
            "task": "multiple_choice",
            "question": "which is the cat?",
            "choices": [[0, 0, 100, 50], [100, 50, 200, 100]],
            "answer": "b",
            "image_size": SIZE,
        },
        [
            IMG,
            ("Answer with the option's letter from the given choices directly.\n", False),
            ("\nQuestion: Which is the cat?\n", False),
            ("A: [0.00,0.00,0.50,0.50].\n", False),
            ("B: [0.50,0.50,1.00,1.00].\nAnswer: ", False),
            ("B.<|endoftext|>", True),
        ],
    ),
    "grounding": (
        {"task": "grounding", "expression": "the man on the LEFT", "box": [20, 10, 100, 50], "image_size": SIZE},
        [
            IMG,
            ("Locate the region that is described by:", False),
            ("\nThe man on the left.\n", False),
            ("[0.10,0.10,0.50,0.50].<|endoftext|>", True),
        ],
    ),
    "grounding_regions": (
        {
            "task": "grounding",
            "expressions": ["a dog", "grass."],
            "boxes": [[20, 10, 100, 50], [0, 0, 200, 100]],
            "image_size": SIZE,
        },
        [
            IMG,
            ("Locate the region that is described by:", False),
            ("\nA dog.\n", False),
            ("[0.10,0.10,0.50,0.50].<|endoftext|>", True),
            ("\nGrass.\n", False),
            ("[0.00,0.00,1.00,1.00].<|endoftext|>", True),
        ],
    ),
    "dense_captioning": (
        {
            "task": "dense_captioning",
            "boxes": [[20, 10, 100, 50], [0, 0, 200, 100]],
            "phrases": ["a red car", "Blue SKY"],
            "image_size": SIZE,
        },
        [
            IMG,
            ("Provide a short description of the region:\n", False),
            ("[0.10,0.10,0.50,0.50].\n", False),
            ("A red car.\n", True),
            ("[0.00,0.00,1.00,1.00].\n", False),
            ("Blue sky.\n<|endoftext|>", True),
        ],
    ),
    "grounded_captioning": (
        {
            "task": "grounded_captioning",
            "caption": "a dog chases two cats in the Park",
            "image_size": SIZE,
            "entities": [
                {"span": (13, 21), "boxes": [[0, 0, 10, 10], [10, 10, 20, 20]]},
                {"span": (0, 5), "boxes": [[0, 0, 200, 100]]},
            ],
        },
        [
            IMG,
            ("Provide a one-sentence caption for the image and mention each entity.\n", False),
            (
                "||a dog [0.00,0.00,1.00,1.00]|| chases ||two cats [0.00,0.00,0.05,0.10][0.05,0.10,0.10,0.20]|| "
                "in the park.<|endoftext|>",
                True,
            ),
        ],
    ),
    "image_text_match": (
        {"task": "image_text_match", "caption": "the cat is ON the table", "answer": True},
        [
            IMG,
            ("Determine if the image matches the description:\n", False),
            ("The cat is on the table.\n", False),
            ("True.<|endoftext|>", True),
        ],
    ),
    "chat": (
        {
            "task": "chat",
            "conversations": [
                {"from": "human", "value": "What is the man doing?"},
                {"from": "gpt", "value": "He is riding a Horse."},
                {"from": "human", "value": "why"},
                {"from": "gpt", "value": "To get to town"},
            ],
        },
        [
            IMG,
            ("What is the man doing?\n", False),
            ("He is riding a horse.\n", True),
            ("Why.\n", False),
            ("To get to town.\n<|endoftext|>", True),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_reference_templates(name):
    example, expected = TEMPLATES[name]
    built = build_prompt(example)
    assert isinstance(built, TaskPrompt) and built.task == example["task"]
    assert built.segments == expected
    assert built.text == "".join(text for text, _ in expected)
    assert built.target == "".join(text for text, supervised in expected if supervised)
    assert built.segments[0] == IMG


def test_every_task_has_a_template_instruction_and_length():
    assert {example["task"] for example, _ in TEMPLATES.values()} == set(TASKS)
    assert set(TASK_INSTRUCTIONS) == set(TASKS) == set(MAX_NEW_TOKENS)
    assert MAX_NEW_TOKENS["captioning"] == 40 and MAX_NEW_TOKENS["vqa"] == 15
    assert MAX_NEW_TOKENS["multiple_choice"] == 10 and MAX_NEW_TOKENS["grounding"] == 120


def test_whole_texts_written_out():
    # The same strings as one piece each, as they read in a training log.
    texts = {
        "vqa_turns": "<image>Answer the question using a single word or phrase.\nQuestion: Is it day.\nAnswer: Yes."
        "<|endoftext|>\nQuestion: How many people?\nAnswer: 2.<|endoftext|>",
        "dense_captioning": "<image>Provide a short description of the region:\n[0.10,0.10,0.50,0.50].\nA red car.\n"
        "[0.00,0.00,1.00,1.00].\nBlue sky.\n<|endoftext|>",
        "multiple_choice_grounded": "<image>Answer with the option's letter from the given choices directly.\n\n"
        "Question: Which is the cat?\nA: [0.00,0.00,0.50,0.50].\nB: [0.50,0.50,1.00,1.00].\nAnswer: B.<|endoftext|>",
        "chat": "<image>What is the man doing?\nHe is riding a horse.\nWhy.\nTo get to town.\n<|endoftext|>",
    }
    for name, text in texts.items():
        assert build_prompt(TEMPLATES[name][0]).text == text


def test_chat_image_tag_is_removed_after_normalization_as_the_reference():
    def first_turn(value):
        example = {"task": "chat", "conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": "a"}]}
        return build_prompt(example).segments[1][0]

    assert first_turn("<image>\nWhat is in the Picture?") == "what is in the picture?\n"
    assert first_turn("What is in the picture?\n<image>") == "What is in the picture?.\n"
    assert first_turn("Describe <image> it") == "Describe  it.\n"
    raw = {
        "task": "chat",
        "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A Cat"}],
    }
    assert build_prompt(raw, normalize_text=False).text == "<image>What is it?\nA Cat\n<|endoftext|>"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("  hello world  ", "Hello world."),
        ("The NASA Rover", "The nasa rover."),  # capitalize() lower-cases the rest, as the reference
        ("what is it?", "What is it?"),
        ("Wow!", "Wow!"),
        ("done.", "Done."),
        ("e.g.", "E.g."),
        ("3 dogs", "3 dogs."),
        ("école", "École."),
        ("\n multi\nline \t", "Multi\nline."),
        ("", "."),
        ("?", "?"),
    ],
)
def test_format_text(text, expected):
    assert format_text(text) == expected


def test_format_text_flags():
    assert format_text(" The NASA rover ", capitalize=False) == "The NASA rover."
    assert format_text(" red ", punctuate=False) == "Red"
    assert format_text(" x ", capitalize=False, punctuate=False) == "x"


def test_normalize_text_modes():
    example = {"task": "vqa", "question": " what does label B show ", "answer": "Stem of the LEAF "}
    segments = build_prompt(example, normalize_text=False).segments
    assert segments[2:] == [("\nQuestion: what does label B show\nAnswer: ", False), ("Stem of the LEAF" + EOS, True)]
    segments = build_prompt(example, normalize_text="keep_case").segments
    assert segments[2:] == [("\nQuestion: what does label B show.\nAnswer: ", False), ("Stem of the LEAF." + EOS, True)]
    # AI2D as the reference: the question keeps its case, the options are still capitalized.
    ai2d = {"task": "multiple_choice", "question": "which label is the Leaf", "choices": ["a", "b and C"], "answer": 1}
    text = build_prompt(ai2d, normalize_text="keep_case").text
    assert text.endswith("\nQuestion: which label is the Leaf.\nA: A\nB: B and c\nAnswer: B.<|endoftext|>")
    assert build_prompt(ai2d, normalize_text=False).text.endswith(
        "\nQuestion: which label is the Leaf\nA: a\nB: b and C\nAnswer: B.<|endoftext|>"
    )
    # Fixed strings (instruction, True/False, letters, boxes) do not depend on the mode.
    itm = {"task": "image_text_match", "caption": "a Cat", "answer": 0}
    assert build_prompt(itm, normalize_text=False).text.endswith("\na Cat\nFalse.<|endoftext|>")
    with pytest.raises(ValueError, match="normalize_text"):
        build_prompt(example, normalize_text="lower")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_instruction_first_moves_only_the_first_turn(name):
    example, _ = TEMPLATES[name]
    default = build_prompt(example).segments
    moved = build_prompt(example, instruction_first=True).segments
    assert moved == [default[1], IMG, *default[2:]]
    first = moved[0][0]
    if example["task"] == "chat":
        assert first == "What is the man doing?\n"
    elif "prompt" in example:
        assert first == _strip_tag(example["prompt"]) + "\n"
    else:
        # Only the instruction (with AI2D's OCR text): questions, options, expressions stay after the image.
        assert first.startswith(TASK_INSTRUCTIONS[example["task"]])
        assert "Question:" not in first and "[" not in first and not moved[0][1]


def _strip_tag(prompt):
    return prompt.replace("\n<image>", "").replace("<image>\n", "")


def test_instruction_first_layouts_written_out():
    vqa = TEMPLATES["vqa"][0]
    assert build_prompt(vqa, instruction_first=True).text == (
        "Answer the question using a single word or phrase.<image>\nQuestion: What color is the cat?\nAnswer: "
        "Black.<|endoftext|>"
    )
    itm = TEMPLATES["image_text_match"][0]
    assert build_prompt(itm, instruction_first=True, for_generation=True).text == (
        "Determine if the image matches the description:\n<image>The cat is on the table.\n"
    )


# Tasks whose examples here have exactly one answer segment.
SINGLE_ANSWER = [name for name, (_, segments) in TEMPLATES.items() if sum(flag for _, flag in segments) == 1]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("instruction_first", [False, True])
def test_for_generation_drops_the_last_answer(name, instruction_first):
    example, _ = TEMPLATES[name]
    train = build_prompt(example, instruction_first=instruction_first)
    generate = build_prompt(example, instruction_first=instruction_first, for_generation=True)
    assert train.text.startswith(generate.text)
    assert generate.prompt == generate.text and generate.target == ""
    assert not any(flag for _, flag in generate.segments)
    assert generate.segments == [(text, False) for text, _ in train.segments[: len(generate.segments)]]
    last = train.segments[len(generate.segments) :]
    assert len(last) == 1 and last[0][1] and last[0][0].endswith(EOS)
    if name in SINGLE_ANSWER:
        assert train.prompt + train.target == train.text
        assert generate.text == train.prompt


def test_for_generation_without_the_answer_fields():
    without = {
        "captioning": ({"task": "captioning"}, "caption"),
        "vqa": ({"task": "vqa", "question": "what color is the CAT?"}, "answer"),
        "multiple_choice": (
            {"task": "multiple_choice", "question": "which is the largest?", "choices": ["sun", "the MOON", "earth"]},
            "answer",
        ),
        "grounding": ({"task": "grounding", "expression": "the man on the LEFT"}, "box"),
        "dense_captioning": (
            {
                "task": "dense_captioning",
                "boxes": [[20, 10, 100, 50], [0, 0, 200, 100]],
                "phrases": ["a red car"],
                "image_size": SIZE,
            },
            "phrases",
        ),
        "grounded_captioning": ({"task": "grounded_captioning"}, "caption"),
        "image_text_match": ({"task": "image_text_match", "caption": "the cat is ON the table"}, "answer"),
        "chat": ({"task": "chat", "conversations": TEMPLATES["chat"][0]["conversations"][:3]}, "conversations"),
    }
    for task, (example, field) in without.items():
        full = TEMPLATES[task][0]
        assert build_prompt(example, for_generation=True).text == build_prompt(full, for_generation=True).text
        if field != "conversations":
            with pytest.raises(ValueError, match=f"task '{task}'.*'{field}'"):
                build_prompt(example)
    # Several QA turns: the earlier answers stay as context.
    vqa = {"task": "vqa", "question": ["is it day", "How many people?"], "answer": ["yes"]}
    assert build_prompt(vqa, for_generation=True).text.endswith(
        "Answer: Yes.<|endoftext|>\nQuestion: How many people?\nAnswer: "
    )
    with pytest.raises(ValueError, match="'answer' has 1 item"):
        build_prompt(vqa)
    with pytest.raises(ValueError, match="missing field 'answer'"):
        build_prompt({"task": "vqa", "question": ["a", "b"]}, for_generation=True)


# Random examples of every task, for the properties every template must have.
_words = st.text(alphabet="abcXYZ ?!.,'\n", min_size=1, max_size=12).filter(lambda text: text.strip())


@st.composite
def _pixel_box(draw, height, width):
    x1, x2 = sorted(draw(st.lists(st.integers(0, width), min_size=2, max_size=2)))
    y1, y2 = sorted(draw(st.lists(st.integers(0, height), min_size=2, max_size=2)))
    return [x1, y1, x2, y2]


@st.composite
def _examples(draw):
    task = draw(st.sampled_from(TASKS))
    height, width = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
    box = _pixel_box(height, width)
    example = {"task": task, "image_size": (height, width)}
    count = draw(st.integers(1, 4))
    many = count > 1 or draw(st.booleans())
    if task == "captioning":
        example["caption"] = draw(_words)
        if draw(st.booleans()):
            example["prompt"] = draw(_words) + draw(st.sampled_from(["", "\n<image>", "<image>\n"]))
    elif task in ("vqa", "multiple_choice"):
        questions = draw(st.lists(_words, min_size=count, max_size=count))
        example["question"] = questions if many else questions[0]
        if task == "vqa":
            answers = draw(st.lists(_words, min_size=count, max_size=count))
        else:
            grounded = draw(st.booleans())
            choices = [draw(st.lists(box if grounded else _words, min_size=1, max_size=5)) for _ in questions]
            answers = [draw(st.integers(0, len(options) - 1)) for options in choices]
            example["choices"] = choices if many else choices[0]
            if draw(st.booleans()):
                example["ocr"] = draw(st.lists(st.tuples(_words, _words), max_size=3))
        example["answer"] = answers if many else answers[0]
    elif task in ("grounding", "dense_captioning"):
        queries = draw(st.lists(_words, min_size=count, max_size=count))
        boxes = draw(st.lists(box, min_size=count, max_size=count))
        texts = ("expression", "expressions") if task == "grounding" else ("phrase", "phrases")
        example.update({texts[1]: queries, "boxes": boxes} if many else {texts[0]: queries[0], "box": boxes[0]})
    elif task == "grounded_captioning":
        caption = draw(st.text(alphabet="abcXYZ ,.", min_size=2, max_size=40).filter(lambda text: text.strip()))
        cuts = sorted(set(draw(st.lists(st.integers(0, len(caption)), min_size=2, max_size=8))))
        spans = [(start, end) for start, end in zip(cuts[::2], cuts[1::2]) if start < end]
        if not spans:
            spans = [(0, len(caption))]
        example["caption"] = caption
        example["entities"] = [{"span": span, "boxes": draw(st.lists(box, min_size=1, max_size=3))} for span in spans]
    elif task == "image_text_match":
        example.update(caption=draw(_words), answer=draw(st.booleans()))
    else:
        turns = []
        for _ in range(count):
            turns += [{"from": "human", "value": draw(_words)}, {"from": "gpt", "value": draw(_words)}]
        example["conversations"] = turns
    return example, count == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _examples(),
    st.booleans(),
    st.sampled_from([True, False, "keep_case"]),
    st.sampled_from([None, BoxFormat(kind="location")]),
)
def test_generation_prompt_is_a_prefix_of_the_training_text(example_and_single, instruction_first, normalize, boxes):
    example, single = example_and_single
    options = dict(instruction_first=instruction_first, normalize_text=normalize, box_format=boxes)
    train = build_prompt(example, **options)
    generate = build_prompt(example, for_generation=True, **options)
    assert train.text.startswith(generate.text)
    assert generate.prompt == generate.text
    # The image block is one unsupervised segment in its place; the text ends with a supervised eos.
    assert [segment for segment in train.segments if segment[0] == "<image>"] == [IMG]
    assert train.segments.index(IMG) == (1 if instruction_first else 0)
    assert train.segments[-1][1] and train.segments[-1][0].endswith(EOS)
    assert not train.segments[1 - train.segments.index(IMG)][1]
    supervised = [text for text, flag in train.segments if flag]
    if example["task"] not in ("dense_captioning", "chat"):
        assert all(text.endswith(EOS) for text in supervised)
    assert train.text.count(EOS) == (
        1 if example["task"] in ("dense_captioning", "chat", "captioning", "grounded_captioning") else len(supervised)
    )
    if single:
        assert train.prompt + train.target == train.text
        assert generate.text == train.prompt


def test_boxes_normalized_by_the_image_size_from_pil_or_image_size():
    pil = Image.new("RGB", (200, 100))  # width x height
    example = {"task": "grounding", "expression": "a dog", "box": [20, 10, 100, 50]}
    expected = "[0.10,0.10,0.50,0.50].<|endoftext|>"
    assert build_prompt({**example, "image": pil}).target == expected
    assert build_prompt({**example, "image_size": (100, 200)}).target == expected
    # image_size says what the pixel boxes refer to, even when the image itself was resized.
    assert build_prompt({**example, "image": Image.new("RGB", (20, 10)), "image_size": (100, 200)}).target == expected
    normalized = {**example, "box": [0.1, 0.1, 0.5, 0.5], "boxes_normalized": True}
    assert build_prompt(normalized).target == expected


def test_location_token_box_format():
    example = {"task": "grounding", "expression": "a dog", "box": [20, 10, 100, 50], "image_size": SIZE}
    expected = "<loc_100><loc_100><loc_500><loc_500>.<|endoftext|>"
    assert build_prompt(example, box_format=BoxFormat(kind="location")).target == expected
    assert build_prompt(example, box_format="location").target == expected
    coarse = build_prompt(example, box_format=BoxFormat(kind="location", num_bins=10)).target
    assert coarse == "<loc_1><loc_1><loc_5><loc_5>.<|endoftext|>"
    grounded = build_prompt(TEMPLATES["grounded_captioning"][0], box_format="location").target
    assert grounded.startswith("||a dog <loc_0><loc_0><loc_999><loc_999>|| chases ||two cats <loc_0><loc_0>")
    mc = build_prompt(TEMPLATES["multiple_choice_grounded"][0], box_format="location").segments
    assert mc[3] == ("A: <loc_0><loc_0><loc_500><loc_500>.\n", False)


def test_custom_image_and_eos_tokens():
    example = TEMPLATES["vqa"][0]
    built = build_prompt(example, image_token="<img>", eos_token="</s>")
    assert built.segments[0] == ("<img>", False)
    assert (
        built.text == "<img>Answer the question using a single word or phrase.\nQuestion: What color is the cat?\n"
        "Answer: Black.</s>"
    )


def test_grounded_captioning_spans():
    def caption(text, *spans, **options):
        entities = [{"span": span, "boxes": [[0, 0, 1, 1]]} for span in spans]
        example = {"task": "grounded_captioning", "caption": text, "entities": entities, "image_size": (1, 1)}
        return build_prompt(example, **options).target

    box = "[0.00,0.00,1.00,1.00]"
    assert caption("The Dog runs", (4, 7)) == f"The ||dog {box}|| runs.{EOS}"
    assert caption("The Dog runs", (4, 7), normalize_text="keep_case") == f"The ||Dog {box}|| runs.{EOS}"
    assert caption(" a dog", (1, 6), normalize_text=False) == f"||a dog {box}||{EOS}"
    assert caption("a dog", (0, 5)) == f"||a dog {box}||.{EOS}"
    # The same span twice: one chunk with both boxes, as the reference's duplicate noun chunks.
    assert caption("a dog runs", (2, 5), (2, 5)) == f"A ||dog {box}{box}|| runs.{EOS}"
    assert caption("a dog runs", (2.0, 5.0)) == f"A ||dog {box}|| runs.{EOS}"
    with pytest.raises(ValueError, match="overlapping spans"):
        caption("a dog runs", (0, 5), (2, 10))
    with pytest.raises(ValueError, match=r"'entities\[0\].span'"):
        caption("a dog", (3, 9))
    with pytest.raises(ValueError, match=r"'entities\[0\].span'"):
        caption("a dog", (3, 3))


def test_multiple_choice_several_questions_and_answer_forms():
    example = {
        "task": "multiple_choice",
        "question": ["q one", "q two"],
        "choices": [["x", "y"], ["z", "w", "v"]],
        "answer": ["B", 2],
    }
    built = build_prompt(example)
    assert [text for text, flag in built.segments if flag] == ["B.<|endoftext|>", "C.<|endoftext|>"]
    assert built.text.endswith(
        "A: X\nB: Y\nAnswer: B.<|endoftext|>\nQuestion: Q two.\nA: Z\nB: W\nC: V\nAnswer: C.<|endoftext|>"
    )
    generate = build_prompt({**example, "answer": ["B"]}, for_generation=True)
    assert generate.text.endswith("Answer: B.<|endoftext|>\nQuestion: Q two.\nA: Z\nB: W\nC: V\nAnswer: ")


def test_chat_for_generation_ending_with_a_human_turn():
    conversation = [{"from": "human", "value": "<image>\nDescribe it."}]
    built = build_prompt({"task": "chat", "conversations": conversation}, for_generation=True)
    assert built.segments == [IMG, ("describe it.\n", False)]
    with pytest.raises(ValueError, match="must end with a gpt turn"):
        build_prompt({"task": "chat", "conversations": conversation})


@pytest.mark.parametrize(
    "example, message",
    [
        ({"task": "captioning"}, "task 'captioning'.*missing field 'caption'"),
        ({"task": "captioning", "caption": "  "}, "task 'captioning'.*field 'caption' is empty"),
        ({"task": "captioning", "caption": 3}, "field 'caption' must be a string"),
        ({"task": "captioning", "caption": "a <image> b"}, "field 'caption' contains the image token"),
        ({"task": "vqa", "answer": "yes"}, "task 'vqa'.*missing field 'question'"),
        ({"task": "vqa", "question": ["a", "b"], "answer": "yes"}, "task 'vqa'.*field 'answer' must be a list"),
        ({"task": "vqa", "question": ["a", "b"], "answer": ["x", 2]}, r"field 'answer\[1\]' must be a string"),
        (
            {"task": "multiple_choice", "question": "q", "choices": ["a", "b"], "answer": 2},
            "task 'multiple_choice'.*field 'answer' is 2, but there are 2 choices",
        ),
        (
            {"task": "multiple_choice", "question": "q", "choices": ["a", "b"], "answer": True},
            "field 'answer' must be an option index or letter",
        ),
        (
            {"task": "multiple_choice", "question": "q", "choices": ["a", [0, 0, 1, 1]], "answer": 0},
            "mixes strings and boxes",
        ),
        (
            {"task": "multiple_choice", "question": "q", "choices": ["a"], "answer": 0, "ocr": [("A",)]},
            r"field 'ocr\[0\]' must be a \(label, text\) pair",
        ),
        ({"task": "grounding", "expression": "a", "box": [0, 0, 1, 1]}, "task 'grounding'.*field 'box' holds pixel"),
        (
            {"task": "grounding", "expression": "a", "box": [0, 0, 300, 50], "image_size": SIZE},
            "task 'grounding'.*field 'box'.*outside the 200x100",
        ),
        (
            {
                "task": "grounding",
                "expressions": ["a", "b"],
                "boxes": [[0, 0, 1, 1], [0, 0, 201, 1]],
                "image_size": SIZE,
            },
            r"field 'boxes\[1\]'.*outside",
        ),
        (
            {"task": "grounding", "expression": "a", "boxes": [[0, 0, 1, 1]], "image_size": SIZE},
            "field 'boxes' does not go with",
        ),
        ({"task": "grounding", "expression": "a", "expressions": ["b"]}, "either 'expression' or 'expressions'"),
        (
            {"task": "grounding", "expression": "a", "box": [0, 0, 2, 1], "boxes_normalized": True},
            "field 'box'.*not normalized",
        ),
        ({"task": "grounding", "expression": "a", "box": [0, 0, 1], "image_size": SIZE}, "field 'box'.*4 numbers"),
        (
            {"task": "dense_captioning", "boxes": [[0, 0, 1, 1]] * 2, "phrases": ["a"], "image_size": SIZE},
            "task 'dense_captioning'.*field 'phrases' has 1 item",
        ),
        ({"task": "grounded_captioning", "caption": "a dog", "entities": []}, "field 'entities' is empty"),
        (
            {"task": "grounded_captioning", "caption": "a dog", "entities": [{"span": (0, 1)}]},
            r"field 'entities\[0\]' must be a dict with 'span' and 'boxes'",
        ),
        ({"task": "image_text_match", "caption": "a", "answer": "yes"}, "task 'image_text_match'.*field 'answer'"),
        ({"task": "chat", "conversations": [{"from": "user", "value": "a"}]}, r"'conversations\[0\].from'"),
        ({"task": "chat", "conversations": [{"from": "gpt", "value": "a"}]}, "must be a human turn"),
        ({"task": "chat", "conversations": "hi"}, "field 'conversations' must be a list"),
        ({"task": "segmentation"}, "field 'task' must be one of"),
        ({}, "field 'task' must be one of"),
    ],
)
def test_errors_name_the_task_and_field(example, message):
    with pytest.raises(ValueError, match=message):
        build_prompt(example)
    with pytest.raises(ValueError, match=r"^Example 7\b"):
        build_prompt(example, index=7)


def test_pil_image_without_boxes_is_not_needed_and_bad_images_are_reported():
    assert build_prompt({"task": "vqa", "question": "q", "answer": "a", "image": object()}).target == "A." + EOS
    example = {"task": "grounding", "expression": "a", "box": [0, 0, 1, 1], "image": {"path": "x.jpg"}}
    with pytest.raises(ValueError, match=re.escape("field 'image' gives no (width, height) size")):
        build_prompt(example)


def test_argument_errors():
    example = TEMPLATES["vqa"][0]
    with pytest.raises(ValueError, match="must be a dict"):
        build_prompt(["task", "vqa"])
    with pytest.raises(ValueError, match="image_token"):
        build_prompt(example, image_token="")
    with pytest.raises(ValueError, match="box_format"):
        build_prompt(example, box_format=3)
    with pytest.raises(ValueError, match="index"):
        build_prompt(example, index=2.5)
    with pytest.raises(ValueError, match="Example q7 .task 'vqa'.: missing field 'question'"):
        build_prompt({"task": "vqa", "answer": "yes"}, index="q7")  # an id names the example too


def test_arrays_and_numpy_numbers_are_accepted():
    np = pytest.importorskip("numpy")
    grounding = {
        "task": "grounding",
        "expressions": ["a dog"],
        "boxes": np.array([[20, 10, 100, 50]]),
        "image_size": np.array(SIZE),
    }
    assert build_prompt(grounding).target == "[0.10,0.10,0.50,0.50].<|endoftext|>"
    mc = {"task": "multiple_choice", "question": "q", "choices": ["a", "b"], "answer": np.int64(1)}
    assert build_prompt(mc).target == "B.<|endoftext|>"
    entities = [{"span": np.array([2, 5]), "boxes": np.array([[0.0, 0.0, 1.0, 1.0]])}]
    grit = {"task": "grounded_captioning", "caption": "a dog", "entities": entities, "boxes_normalized": True}
    assert build_prompt(grit).target == "A ||dog [0.00,0.00,1.00,1.00]||.<|endoftext|>"
    with pytest.raises(ValueError, match="box placeholders"):
        build_prompt({**grit, "caption": "a <coords_0> dog"})
