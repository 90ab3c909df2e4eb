# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Task templates: a structured example -> the prompt and target text the models were trained on.

An example is a plain dict (a `datasets` row works as it is). `build_prompt` writes it as a list of segments, each
a string and whether it is supervised (its tokens get labels) or context (labels -100). The strings are the reference
templates byte for byte: no role markers, one segment per reference turn (the reference tokenizes every turn on its
own, so a processor that tokenizes segment by segment reproduces its ids), every answer followed by the eos. The image
is a segment of its own holding `image_token`, where the processor puts the image block.

Fields common to all tasks:

- `task` (required): one of `TASKS`.
- `image`: a PIL image; its size is the image size of pixel boxes.
- `image_size`: `(height, width)` of the image the pixel boxes refer to; takes precedence over `image`'s size.
- `boxes_normalized`: `True` when the boxes are already XYXY in [0, 1] (no image size needed then).

Boxes are XYXY in pixels of the original image unless `boxes_normalized`. They are normalized by the image size and
written with `vlmamba.models.boxes.format_box`, `[x1,y1,x2,y2]` with two decimals by default; a box format with
`reference_size` normalizes them with the reference's arithmetic (`boxes.BoxFormat`).

Fields per task (a target field may be left out when `for_generation=True`):

- `captioning`: `caption` (the target); `prompt`, optional, replaces the instruction (LLaVA-Pretrain's own human
  prompts; an `<image>` tag in it is removed and the prompt is otherwise written as given).
- `vqa`: `question` and `answer` as strings, or as lists of equal length for several QA turns about one image;
  `ocr_tokens`, a list of strings, written only with `build_prompt(ocr_tokens=True)`.
- `multiple_choice`: `question`; `choices`, a list of strings, or of pixel boxes for grounded multiple choice
  (each option is then written as a box followed by ".", and the instruction ends with a newline, as in the
  reference); `answer`, the correct option's index or letter; `ocr`, optional, a list of `(label, text)` pairs written
  after the instruction in the given order (AI2D; the reference sorts them by label). For several questions about one
  image, `question`, `choices` and `answer` are lists.
- `grounding`: `expression` and `box`, or `expressions` and `boxes` for several regions of one image (one turn each).
- `dense_captioning`: `box` and `phrase`, or `boxes` and `phrases` (the reverse of grounding).
- `grounded_captioning`: `caption` and `entities`, a list of `{"span": (start, end), "boxes": [box, ...]}` where
  `span` gives character offsets into `caption`. Each span becomes `||{chunk} [box][box]||`. Entities with the same
  span are merged (boxes in the given order); partly overlapping spans are an error.
- `image_text_match`: `caption` and `answer` (a bool, or 0/1), written as "True." or "False.".
- `chat`: `conversations` in LLaVA format, a list of `{"from": "human" | "gpt", "value": str}` starting with a human
  turn. An `<image>` tag in the human text is removed (the layout places the image). The gpt turns are supervised,
  and one eos follows the final turn.

Text normalization (`normalize_text`):

- `True` (default): `format_text` on captions, questions, answers, expressions, phrases and chat turns, as the
  reference does: strip, `str.capitalize()` (which lower-cases everything after the first character), then a "."
  unless the text ends in ".", "?" or "!". Multiple-choice options are capitalized without the period.
- `"keep_case"`: the same without `str.capitalize()`, except that multiple-choice options are still capitalized. This
  is the reference's setting for AI2D questions and for DocVQA and InfographicVQA, where capital letters matter.
- `False`: the text is written as given, only stripped (no period is added, so a target may lack the "." the
  templates show).

Evaluation variants (keywords of `build_prompt`; the defaults are the training templates above), for the prompts the
reference's evaluation scripts wrote differently from its training data:

- `vqa_format="plain"`: each question on a line of its own without `Question:` / `Answer:`,
  `"{instruction}\\n{Question}\\n"` (POPE).
- `ocr_tokens=True`: the `ocr_tokens` joined by spaces after the instruction,
  `"{instruction}\\nOCR text:\\n{tokens}"`, then the questions (TextVQA, with Rosetta OCR tokens).
- `merge_turns=True`: adjacent text segments are joined into one, so that a processor tokenizes them as one string
  (GQA, TextVQA, POPE, VSR). The image still splits the text: with `instruction_first`, the instruction before the
  image stays a segment of its own, as in the reference.

As in the reference, chat turns are normalized before the `<image>` tag is removed: `"<image>\\nWhat is it?"` becomes
`"what is it?"` and `"What is it?\\n<image>"` becomes `"What is it?."`. Captioning's `prompt` and the OCR text are
never normalized.
"""

import math
import numbers
import string
from collections.abc import Mapping
from dataclasses import dataclass

from .boxes import BoxFormat, format_box, normalize_box


TASKS = (
    "captioning",
    "vqa",
    "multiple_choice",
    "grounding",
    "dense_captioning",
    "grounded_captioning",
    "image_text_match",
    "chat",
)

# The reference's instruction of each task (its one active template per task). Chat has none: its first human turn
# takes the instruction's place.
TASK_INSTRUCTIONS = {
    "captioning": "Provide a one-sentence caption for the provided image.",
    "vqa": "Answer the question using a single word or phrase.",
    "multiple_choice": "Answer with the option's letter from the given choices directly.",
    "grounding": "Locate the region that is described by:",
    "dense_captioning": "Provide a short description of the region:",
    "grounded_captioning": "Provide a one-sentence caption for the image and mention each entity.",
    "image_text_match": "Determine if the image matches the description:",
    "chat": "",
}

# Greedy decoding lengths of the reference's evaluation scripts, per task (the first benchmark named; others in
# parentheses). Tasks the reference does not evaluate get vlmamba's own choice.
MAX_NEW_TOKENS = {
    "captioning": 40,  # COCO, NoCaps (TextCaps: 15)
    "vqa": 15,  # VQAv2 (GQA, TextVQA: 20)
    "multiple_choice": 10,  # AI2D (Visual7W: 20)
    "grounding": 120,  # RefCOCO, RefCOCO+, RefCOCOg
    "image_text_match": 120,  # VSR (POPE: 120)
    "dense_captioning": 40,  # not evaluated by the reference: a region phrase is no longer than a caption
    "grounded_captioning": 200,  # not evaluated by the reference: a caption plus about 20 tokens per box
    "chat": 256,  # not evaluated by the reference
}

DEFAULT_IMAGE_TOKEN = "<image>"
# GPT-NeoX's eos, which ends every answer in the reference.
DEFAULT_EOS_TOKEN = "<|endoftext|>"
# The tag LLaVA's data writes in the human text where the image goes.
LLAVA_IMAGE_TAG = "<image>"
NORMALIZE_TEXT_MODES = (True, False, "keep_case")
# "qa": the vqa template's "Question: ... Answer: " turns; "plain": the question alone (POPE's evaluation prompt).
VQA_FORMATS = ("qa", "plain")
MULTIPLE_CHOICE_LETTERS = string.ascii_uppercase
# Stand-ins for the boxes of a grounded caption while the caption is normalized, as the reference writes them.
_COORDS_PLACEHOLDER = "<coords_{}>"


def check_normalize_text(normalize_text) -> None:
    """Raises a `ValueError` unless `normalize_text` is one of `NORMALIZE_TEXT_MODES`."""
    if not (normalize_text is True or normalize_text is False or normalize_text == "keep_case"):
        raise ValueError(f"normalize_text must be one of {NORMALIZE_TEXT_MODES}, got {normalize_text!r}.")


def format_text(text: str, *, capitalize: bool = True, punctuate: bool = True) -> str:
    """The reference's text normalization: strip, `str.capitalize()` (the rest of the string is lower-cased), and a
    final "." unless the text ends in ".", "?" or "!"."""
    text = text.strip()
    if capitalize:
        text = text.capitalize()
    if punctuate and not text.endswith((".", "?", "!")):
        text += "."
    return text


@dataclass(frozen=True)
class TaskPrompt:
    """An example written as text.

    Args:
        task: the example's task.
        segments: `(text, supervised)` pairs in sequence order. The image is the unsupervised segment equal to the
            `image_token` passed to `build_prompt`; supervised segments are the answers with their eos.
    """

    task: str
    segments: list[tuple[str, bool]]

    @property
    def text(self) -> str:
        """All segments joined."""
        return "".join(text for text, _ in self.segments)

    @property
    def prompt(self) -> str:
        """The text before the first supervised segment: what `generate()` continues."""
        parts = []
        for text, supervised in self.segments:
            if supervised:
                break
            parts.append(text)
        return "".join(parts)

    @property
    def target(self) -> str:
        """The supervised segments joined."""
        return "".join(text for text, supervised in self.segments if supervised)


class _Example:
    """Reads and validates the fields of one example; every error names the example and the field."""

    def __init__(
        self,
        data,
        task,
        index,
        normalize_text,
        box_format,
        image_token,
        eos_token,
        for_generation,
        vqa_format="qa",
        ocr_tokens=False,
    ):
        self.data = data
        self.task = task
        self.index = index
        self.normalize_text = normalize_text
        self.box_format = box_format
        self.image_token = image_token
        self.eos = eos_token
        self.for_generation = for_generation
        self.vqa_format = vqa_format
        self.ocr_tokens = ocr_tokens
        self._image_size = None

    def error(self, message: str) -> ValueError:
        where = "Example" if self.index is None else f"Example {self.index}"
        return ValueError(f"{where} (task {self.task!r}): {message}")

    def has(self, field: str) -> bool:
        return self.data.get(field) is not None

    def get(self, field: str):
        value = self.data.get(field)
        if value is None:
            raise self.error(f"missing field {field!r}.")
        return value

    def sequence(self, label: str, value, length: int | None = None) -> list:
        if not _is_list(value):
            raise self.error(f"field {label!r} must be a list, got {value!r}.")
        if length is not None and len(value) != length:
            raise self.error(f"field {label!r} must have {length} item(s), got {len(value)}.")
        if len(value) == 0:
            raise self.error(f"field {label!r} is empty.")
        return list(value)

    def string(self, label: str, value) -> str:
        if not isinstance(value, str):
            raise self.error(f"field {label!r} must be a string, got {value!r}.")
        if not value.strip():
            raise self.error(f"field {label!r} is empty.")
        return self.without_image_token(label, value)

    def without_image_token(self, label: str, text: str) -> str:
        if self.image_token in text:
            raise self.error(f"field {label!r} contains the image token {self.image_token!r}: {text!r}.")
        return text

    def normalize(self, text: str) -> str:
        if self.normalize_text is True:
            return format_text(text)
        if self.normalize_text == "keep_case":
            return format_text(text, capitalize=False)
        return text.strip()

    def sentence(self, label: str, value) -> str:
        """A caption, question, answer, expression or phrase, normalized as `normalize_text` says."""
        return self.normalize(self.string(label, value))

    def option(self, label: str, value) -> str:
        text = self.string(label, value)
        return text.strip() if self.normalize_text is False else format_text(text, punctuate=False)

    def image_size(self, label: str):
        if self._image_size is None:
            if self.has("image_size"):
                self._image_size = self.data["image_size"]
            elif self.has("image"):
                size = getattr(self.data["image"], "size", None)
                if not (isinstance(size, tuple) and len(size) == 2):
                    raise self.error(
                        f"field 'image' gives no (width, height) size (got {type(self.data['image']).__name__}); "
                        "pass a PIL image or 'image_size'."
                    )
                self._image_size = (size[1], size[0])
            else:
                raise self.error(
                    f"field {label!r} holds pixel boxes, which need the image size: give 'image' (a PIL image) or "
                    "'image_size' (height, width), or set 'boxes_normalized' for boxes already in [0, 1]."
                )
        return self._image_size

    def box(self, label: str, value) -> str:
        """A box written in the box format (without the period the templates add)."""
        normalized = self.data.get("boxes_normalized", False)
        if not isinstance(normalized, bool):
            raise self.error(f"field 'boxes_normalized' must be a bool, got {normalized!r}.")
        if not normalized:
            image_size = self.image_size(label)
            try:
                reference_size = None if self.box_format is None else self.box_format.reference_size
                value = normalize_box(value, image_size, name=f"field {label!r}", reference_size=reference_size)
            except ValueError as error:
                raise self.error(str(error)) from None
        try:
            return format_box(value, self.box_format)
        except ValueError as error:
            raise self.error(f"field {label!r}: {error}") from None

    def queries(self, single: str, many: str) -> tuple[list, bool]:
        """The query field given as `single` (one value) or `many` (a list): the values and whether it was `many`."""
        if self.has(single) and self.has(many):
            raise self.error(f"give either {single!r} or {many!r}, not both.")
        if self.has(many):
            return self.sequence(many, self.data[many]), True
        if not self.has(single):
            raise self.error(f"missing field {single!r} (or {many!r} for several).")
        return [self.data[single]], False

    def one_or_more(self, field: str, kinds: str) -> tuple[list, bool]:
        """A field holding one string or a list of them: the values and whether it was a list."""
        value = self.get(field)
        if isinstance(value, str):
            return [value], False
        if _is_list(value):
            return self.sequence(field, value), True
        raise self.error(f"field {field!r} must be {kinds}, got {value!r}.")

    def targets(self, count: int, many: bool, single: str, plural: str | None = None) -> list:
        """The `(label, value)` targets of `count` queries, from the field `single` (one query) or `plural` (a list;
        the same field when not given): all of them, or for generation the first `count - 1` (context for the last
        query, whose target the model writes)."""
        plural = plural or single
        field, other = (plural, single) if many else (single, plural)
        if other != field and self.has(other):
            raise self.error(f"field {other!r} does not go with the query field used here; give {field!r}.")
        needed = count - 1 if self.for_generation else count
        if not self.has(field):
            if needed == 0:
                return []
            raise self.error(f"missing field {field!r}.")
        value = self.data[field]
        if not many:
            return [(field, value)][:needed]
        values = self.sequence(field, value)
        if len(values) != count and not (self.for_generation and len(values) == count - 1):
            raise self.error(f"field {field!r} has {len(values)} item(s) for {count} queries.")
        return [(f"{field}[{position}]", item) for position, item in enumerate(values[:needed])]


def _is_list(value) -> bool:
    """A list, tuple or array: anything sized and iterable except text and dicts."""
    return not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__len__") and hasattr(value, "__iter__")


def _strip_image_tag(text: str) -> str:
    text = text.replace(f"\n{LLAVA_IMAGE_TAG}", "").replace(f"{LLAVA_IMAGE_TAG}\n", "")
    if LLAVA_IMAGE_TAG in text:
        text = text.replace(LLAVA_IMAGE_TAG, "").strip()
    return text


def _captioning(example: _Example) -> list[tuple[str, bool]]:
    if example.has("prompt"):
        prompt = example.data["prompt"]
        if not isinstance(prompt, str):
            raise example.error(f"field 'prompt' must be a string, got {prompt!r}.")
        instruction = example.string("prompt", _strip_image_tag(prompt))
    else:
        instruction = TASK_INSTRUCTIONS["captioning"]
    turns = [(f"{instruction}\n", False)]
    if not example.for_generation:
        turns.append((example.sentence("caption", example.get("caption")) + example.eos, True))
    return turns


def _vqa(example: _Example) -> list[tuple[str, bool]]:
    questions, many = example.one_or_more("question", "a string or a list of strings")
    answers = example.targets(len(questions), many, "answer")
    instruction = TASK_INSTRUCTIONS["vqa"]
    if example.ocr_tokens:
        tokens = example.get("ocr_tokens")
        if not _is_list(tokens):
            raise example.error(f"field 'ocr_tokens' must be a list of strings, got {tokens!r}.")
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise example.error(f"field 'ocr_tokens[{position}]' must be a string, got {token!r}.")
        # An image without OCR tokens gets an empty line, as in the reference.
        instruction += "\nOCR text:\n" + example.without_image_token("ocr_tokens", " ".join(tokens))
    turns = [(instruction, False)]
    template = "\nQuestion: {}\nAnswer: " if example.vqa_format == "qa" else "\n{}\n"
    for position, question in enumerate(questions):
        label = f"question[{position}]" if many else "question"
        turns.append((template.format(example.sentence(label, question)), False))
        if position < len(answers):
            turns.append((example.sentence(*answers[position]) + example.eos, True))
    return turns


def _answer_index(example: _Example, label: str, answer, num_choices: int) -> int:
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in MULTIPLE_CHOICE_LETTERS:
        index = MULTIPLE_CHOICE_LETTERS.index(answer.upper())
    elif isinstance(answer, numbers.Integral) and not isinstance(answer, bool):
        index = int(answer)
    else:
        raise example.error(f"field {label!r} must be an option index or letter, got {answer!r}.")
    if not 0 <= index < num_choices:
        raise example.error(f"field {label!r} is {answer!r}, but there are {num_choices} choices.")
    return index


def _multiple_choice(example: _Example) -> list[tuple[str, bool]]:
    questions, many = example.one_or_more("question", "a string or a list of strings")
    choices = example.get("choices")
    choices = example.sequence("choices", choices, len(questions)) if many else [choices]
    choices = [
        example.sequence(f"choices[{position}]" if many else "choices", options)
        for position, options in enumerate(choices)
    ]
    kinds = {isinstance(option, str) for options in choices for option in options}
    if len(kinds) > 1:
        raise example.error("field 'choices' mixes strings and boxes; give all options as text or all as boxes.")
    grounded = kinds == {False}
    answers = example.targets(len(questions), many, "answer")

    instruction = TASK_INSTRUCTIONS["multiple_choice"]
    ocr = example.data.get("ocr")
    # No OCR text, or an empty list of it, leaves the instruction alone.
    if ocr is not None and not (_is_list(ocr) and len(ocr) == 0):
        lines = []
        for position, pair in enumerate(example.sequence("ocr", ocr)):
            if not _is_list(pair) or len(pair) != 2:
                raise example.error(f"field 'ocr[{position}]' must be a (label, text) pair, got {pair!r}.")
            label, text = (example.string(f"ocr[{position}]", str(item)) for item in pair)
            lines.append(f"{label}: {text}")
        instruction = instruction + "\nOCR text:\n" + "\n".join(lines)
    elif grounded:
        # The reference ends the grounded multiple-choice instruction with a newline, the text one without.
        instruction += "\n"
    turns = [(instruction, False)]

    for position, (question, options) in enumerate(zip(questions, choices)):
        suffix = f"[{position}]" if many else ""
        if len(options) > len(MULTIPLE_CHOICE_LETTERS):
            raise example.error(f"field 'choices{suffix}' has {len(options)} options; at most 26 have letters.")
        turns.append((f"\nQuestion: {example.sentence('question' + suffix, question)}\n", False))
        written = []
        for letter, (number, option) in zip(MULTIPLE_CHOICE_LETTERS, enumerate(options)):
            label = f"choices{suffix}[{number}]"
            text = example.box(label, option) + "." if grounded else example.option(label, option)
            written.append(f"{letter}: {text}\n")
        written[-1] += "Answer: "
        turns.extend((text, False) for text in written)
        if position < len(answers):
            index = _answer_index(example, *answers[position], len(options))
            turns.append((f"{MULTIPLE_CHOICE_LETTERS[index]}.{example.eos}", True))
    return turns


def _grounding(example: _Example) -> list[tuple[str, bool]]:
    expressions, many = example.queries("expression", "expressions")
    boxes = example.targets(len(expressions), many, "box", "boxes")
    turns = [(TASK_INSTRUCTIONS["grounding"], False)]
    for position, expression in enumerate(expressions):
        label = f"expressions[{position}]" if many else "expression"
        turns.append((f"\n{example.sentence(label, expression)}\n", False))
        if position < len(boxes):
            turns.append((f"{example.box(*boxes[position])}.{example.eos}", True))
    return turns


def _dense_captioning(example: _Example) -> list[tuple[str, bool]]:
    boxes, many = example.queries("box", "boxes")
    phrases = example.targets(len(boxes), many, "phrase", "phrases")
    turns = [(f"{TASK_INSTRUCTIONS['dense_captioning']}\n", False)]
    for position, box in enumerate(boxes):
        turns.append((f"{example.box(f'boxes[{position}]' if many else 'box', box)}.\n", False))
        if position < len(phrases):
            turns.append((f"{example.sentence(*phrases[position])}\n", True))
    if not example.for_generation:
        # One eos after the last phrase only.
        turns[-1] = (turns[-1][0] + example.eos, True)
    return turns


def _span(example: _Example, label: str, span, length: int) -> tuple[int, int]:
    if not _is_list(span) or len(span) != 2:
        raise example.error(f"field {label!r} must be (start, end) character offsets, got {span!r}.")
    bounds = []
    for value in span:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value % 1:
            raise example.error(f"field {label!r} must hold integer offsets, got {span!r}.")
        bounds.append(int(value))
    start, end = bounds
    if not 0 <= start < end <= length:
        raise example.error(f"field {label!r} {span!r} is not a non-empty span of the {length}-character caption.")
    return start, end


def _grounded_captioning(example: _Example) -> list[tuple[str, bool]]:
    turns = [(f"{TASK_INSTRUCTIONS['grounded_captioning']}\n", False)]
    if example.for_generation:
        return turns
    caption = example.string("caption", example.get("caption"))
    if "<coords_" in caption:
        raise example.error(f"field 'caption' holds box placeholders; give the plain caption: {caption!r}.")
    boxes_by_span: dict[tuple[int, int], list[tuple[str, object]]] = {}
    for position, entity in enumerate(example.sequence("entities", example.get("entities"))):
        label = f"entities[{position}]"
        if not isinstance(entity, Mapping) or entity.get("span") is None or entity.get("boxes") is None:
            raise example.error(f"field {label!r} must be a dict with 'span' and 'boxes', got {entity!r}.")
        span = _span(example, f"{label}.span", entity["span"], len(caption))
        boxes = example.sequence(f"{label}.boxes", entity["boxes"])
        boxes_by_span.setdefault(span, []).extend((f"{label}.boxes[{number}]", box) for number, box in enumerate(boxes))

    # Chunks are marked with placeholders, the caption is normalized, then the placeholders become boxes: boxes are
    # never touched by the normalization.
    pieces, boxes, end = [], [], 0
    for start, stop in sorted(boxes_by_span):
        if start < end:
            raise example.error(f"field 'entities' has overlapping spans ending at {end} and starting at {start}.")
        count = len(boxes_by_span[start, stop])
        placeholders = "".join(_COORDS_PLACEHOLDER.format(len(boxes) + n) for n in range(count))
        pieces.append(f"{caption[end:start]}||{caption[start:stop]} {placeholders}||")
        boxes.extend(boxes_by_span[start, stop])
        end = stop
    pieces.append(caption[end:])
    text = example.sentence("caption", "".join(pieces))
    for number, (label, box) in enumerate(boxes):
        text = text.replace(_COORDS_PLACEHOLDER.format(number), example.box(label, box))
    return turns + [(text + example.eos, True)]


def _image_text_match(example: _Example) -> list[tuple[str, bool]]:
    caption = example.sentence("caption", example.get("caption"))
    turns = [(f"{TASK_INSTRUCTIONS['image_text_match']}\n", False), (f"{caption}\n", False)]
    if not example.for_generation:
        answer = example.get("answer")
        if isinstance(answer, bool) or (isinstance(answer, numbers.Integral) and answer in (0, 1)):
            turns.append((f"{bool(answer)}.{example.eos}", True))
        else:
            raise example.error(f"field 'answer' must be a bool (or 0/1), got {answer!r}.")
    return turns


def _chat(example: _Example) -> list[tuple[str, bool]]:
    conversation = example.sequence("conversations", example.get("conversations"))
    if example.for_generation and len(conversation) > 1 and _role(example, conversation, -1) == "gpt":
        conversation = conversation[:-1]
    turns = []
    for position, message in enumerate(conversation):
        label = f"conversations[{position}]"
        role = _role(example, conversation, position)
        if position == 0 and role != "human":
            raise example.error(f"field {label!r} must be a human turn: the conversation starts with the human.")
        value = message.get("value")
        if role == "human":
            if not isinstance(value, str) or not value.strip():
                raise example.error(f"field {label + '.value'!r} must be a non-empty string, got {value!r}.")
            # Normalized before the tag is removed, as in the reference.
            value = _strip_image_tag(example.normalize(value))
            turns.append((example.without_image_token(f"{label}.value", value) + "\n", False))
        else:
            turns.append((f"{example.sentence(f'{label}.value', value)}\n", True))
    if not example.for_generation:
        if not turns[-1][1]:
            raise example.error("field 'conversations' must end with a gpt turn (the target).")
        turns[-1] = (turns[-1][0] + example.eos, True)
    return turns


def _role(example: _Example, conversation: list, position: int) -> str:
    message = conversation[position]
    label = f"conversations[{position % len(conversation)}]"
    if not isinstance(message, Mapping):
        raise example.error(f"field {label!r} must be a dict with 'from' and 'value', got {message!r}.")
    role = message.get("from")
    if role not in ("human", "gpt"):
        raise example.error(f"field {label + '.from'!r} must be 'human' or 'gpt', got {role!r}.")
    return role


_BUILDERS = {
    "captioning": _captioning,
    "vqa": _vqa,
    "multiple_choice": _multiple_choice,
    "grounding": _grounding,
    "dense_captioning": _dense_captioning,
    "grounded_captioning": _grounded_captioning,
    "image_text_match": _image_text_match,
    "chat": _chat,
}


def build_prompt(
    example: Mapping,
    *,
    instruction_first: bool = False,
    normalize_text: bool | str = True,
    box_format: BoxFormat | str | None = None,
    image_token: str = DEFAULT_IMAGE_TOKEN,
    eos_token: str = DEFAULT_EOS_TOKEN,
    for_generation: bool = False,
    index: int | str | None = None,
    with_image: bool = True,
    vqa_format: str = "qa",
    ocr_tokens: bool = False,
    merge_turns: bool = False,
) -> TaskPrompt:
    """Writes a structured example in its task's template (fields: see the module docstring).

    Args:
        example: the example, a dict with a `task` and that task's fields.
        instruction_first: the task-aware layout, `[instruction][image][rest]`, instead of `[image][instruction][rest]`.
            Only the first turn moves: the task instruction (with AI2D's OCR text, or LLaVA-Pretrain's prompt), or
            the first human turn of a chat. Questions, options and expressions stay after the image.
        normalize_text: `True`, `"keep_case"` or `False` (see the module docstring).
        box_format: how boxes are written (a `BoxFormat`, or its kind `"text"` / `"location"`); the reference text
            format by default.
        image_token: the image segment, which the processor replaces by the image block.
        eos_token: written after each answer (dense captioning and chat: after the last one only).
        for_generation: leave out the last answer and its eos, so the text ends where the model starts writing; the
            answer field may then be missing. Earlier answers of a multi-turn example stay as context. No segment is
            supervised then, so `prompt == text`.
        index: the example's id or its position in its dataset, named in errors.
        with_image: `False` leaves the image segment out, for text-only examples.
        vqa_format: `"qa"` (the template) or `"plain"` (the question alone on its line, POPE's evaluation prompt);
            vqa only.
        ocr_tokens: write the example's `ocr_tokens` after the instruction (TextVQA's evaluation prompt); vqa only.
        merge_turns: join adjacent text segments of the same kind (context or supervised) into one, except across the
            image, so that the processor tokenizes them as one string (the reference's GQA, TextVQA, POPE and VSR
            evaluation prompts).

    Returns:
        A `TaskPrompt`.
    """
    if index is not None and (not isinstance(index, (int, str)) or isinstance(index, bool)):
        raise ValueError(f"index must be an integer, a string id or None, got {index!r}.")
    if not isinstance(example, Mapping):
        where = "Example" if index is None else f"Example {index}"
        raise ValueError(f"{where} must be a dict of fields, got {type(example).__name__}.")
    task = example.get("task")
    if task not in TASKS:
        where = "Example" if index is None else f"Example {index}"
        raise ValueError(f"{where}: field 'task' must be one of {TASKS}, got {task!r}.")
    check_normalize_text(normalize_text)
    if isinstance(box_format, str):
        box_format = BoxFormat(kind=box_format)
    elif box_format is not None and not isinstance(box_format, BoxFormat):
        raise ValueError(f"box_format must be a BoxFormat, 'text', 'location' or None, got {box_format!r}.")
    if not isinstance(image_token, str) or not image_token:
        raise ValueError(f"image_token must be a non-empty string, got {image_token!r}.")
    if not isinstance(eos_token, str):
        raise ValueError(f"eos_token must be a string, got {eos_token!r}.")
    if vqa_format not in VQA_FORMATS:
        raise ValueError(f"vqa_format must be one of {VQA_FORMATS}, got {vqa_format!r}.")
    for name, flag in (("ocr_tokens", ocr_tokens), ("merge_turns", merge_turns)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}.")
    if task != "vqa" and (vqa_format != "qa" or ocr_tokens):
        where = "Example" if index is None else f"Example {index}"
        raise ValueError(f"{where}: vqa_format and ocr_tokens apply to task 'vqa' only, got task {task!r}.")

    reader = _Example(
        example, task, index, normalize_text, box_format, image_token, eos_token, for_generation, vqa_format, ocr_tokens
    )
    turns = _BUILDERS[task](reader)
    image = [(image_token, False)] if with_image else []
    segments = [turns[0], *image, *turns[1:]] if instruction_first else [*image, *turns]
    if for_generation:
        segments = [(text, False) for text, _ in segments]
    if merge_turns:
        segments = _merge_segments(segments, image_token if with_image else None)
    return TaskPrompt(task=task, segments=segments)


def _merge_segments(segments: list[tuple[str, bool]], image_token: str | None) -> list[tuple[str, bool]]:
    merged = []
    for text, supervised in segments:
        previous = merged[-1] if merged else None
        if previous is not None and previous[1] == supervised and image_token not in (text, previous[0]):
            merged[-1] = (previous[0] + text, supervised)
        else:
            merged.append((text, supervised))
    return merged


__all__ = [
    "TASKS",
    "TASK_INSTRUCTIONS",
    "MAX_NEW_TOKENS",
    "DEFAULT_IMAGE_TOKEN",
    "DEFAULT_EOS_TOKEN",
    "LLAVA_IMAGE_TAG",
    "NORMALIZE_TEXT_MODES",
    "VQA_FORMATS",
    "MULTIPLE_CHOICE_LETTERS",
    "TaskPrompt",
    "format_text",
    "check_normalize_text",
    "build_prompt",
]
