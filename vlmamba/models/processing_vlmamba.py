# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Processor of Mamba-VL and Pythia-VL: images to pixel values, text with image placeholders to token ids, generated
text back to text and boxes; and `generate_answers`, the one inference path from examples to parsed answers."""

from collections.abc import Mapping, Sequence

import PIL.Image
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import get_image_size, is_valid_image, to_numpy_array
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import AddedToken

from .boxes import BoxFormat, count_dropped_boxes, location_tokens, parse_grounding
from .configuration_vlmamba import image_block_ids
from .image_processing_vlmamba import is_image_source, open_image
from .tasks import MAX_NEW_TOKENS, TASKS, TaskPrompt, build_prompt, check_normalize_text


# Messages have no role markers, as in the reference: text items are written as they are, image items become the
# image placeholder, an assistant turn ends with the eos. `VLMambaProcessor.apply_chat_template` hands the template
# only text and image items, written by the processor's prompt format: a task item as its task's prompt, a plain
# conversation as the `chat` task (each turn ending with a newline, one eos after a final assistant turn).
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{- eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)
# Ways of normalizing a pixel box for its text (`BoxFormat.reference_size`).
BOX_NORMALIZATIONS = ("direct", "reference")
# The prompt-format settings a single prompt may depart from; the box format and the tokens are the model's.
LAYOUT_OVERRIDES = ("instruction_first", "normalize_text")
# Fields of a chat task item that are the task's query; everything else in the item is an error.
TASK_ITEM_FIELDS = ("question", "choices", "ocr", "expression", "box", "caption")
# Decoding length of a free prompt (an example given as `prompt` text rather than as a task), and the saved
# `max_new_tokens` default of a model vlmamba builds.
FREE_PROMPT_MAX_NEW_TOKENS = 64


class VLMambaProcessor(ProcessorMixin):
    r"""
    Turns images and text into model inputs. Each `image_token` in the text becomes one image block: the begin
    marker, then each row of patch placeholders followed by a row separator, the last separator replaced by the end
    marker (601 ids for 336 px images and 14 px patches). The block is spliced in at the token-id level, so the
    markers keep their exact ids whatever text surrounds them.

    Args:
        image_processor ([`VLMambaImageProcessor`]):
            Resizes (squash, no crop), rescales and normalizes images.
        tokenizer ([`PreTrainedTokenizerBase`]):
            The language model's tokenizer. The processor sets its `padding_side` to `"left"`, generation's side.
        chat_template (`str`, *optional*):
            Jinja template for `apply_chat_template`.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            The placeholder users write in the text, one per image. Added as a special token when missing.
        image_begin_token, image_end_token, row_separator_token (`str`, *optional*):
            Markers of the image block. A marker that is already a single piece of the tokenizer keeps its id (the
            reference uses the GPT-NeoX pieces `###`, `###` and `&&`); any other string is added as a special token.
            `None` leaves the marker out.
        patch_size (`int`, *optional*, defaults to 14):
            Patch side of the vision tower; with the image processor's size it gives the patch grid.
        instruction_first (`bool`, *optional*, defaults to `False`):
            The task-aware layout ([instruction][image][rest]) the model was trained with.
        normalize_text (`bool` or `"keep_case"`, *optional*, defaults to `True`):
            The text normalization of the model's prompts and targets (see `tasks.build_prompt`): `True` for the
            reference's, `"keep_case"` without lower-casing, `False` for text as given.
        location_bins (`int`, *optional*):
            Write boxes as location tokens `<loc_0>` ... `<loc_{location_bins - 1}>`, one per coordinate, instead of
            the reference text format `[x1,y1,x2,y2]`. The tokens are added to the tokenizer as normal (not special)
            tokens, so decoding with `skip_special_tokens=True` keeps them. For new models only: the reference
            checkpoints were trained on the text format.
        box_normalization (`str`, *optional*, defaults to `"direct"`):
            How a pixel box is normalized before it is written: `"direct"` (`x / W`) or `"reference"` (the paper's
            `(x * (S / W)) / S` with `S` the image processor's size, which moves about 1% of two-decimal coordinates
            by 0.01, and keeps a box that reaches past the right or bottom border unclipped). The paper's recipes
            train with `"reference"`.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_token: str = "<image>",
        image_begin_token: str | None = "###",
        image_end_token: str | None = "###",
        row_separator_token: str | None = "&&",
        patch_size: int = 14,
        instruction_first: bool = False,
        normalize_text: bool | str = True,
        location_bins: int | None = None,
        box_normalization: str = "direct",
        **kwargs,
    ):
        if not isinstance(instruction_first, bool):
            raise ValueError(f"instruction_first must be a bool, got {instruction_first!r}.")
        check_normalize_text(normalize_text)
        self.image_token = image_token
        self.image_begin_token = image_begin_token
        self.image_end_token = image_end_token
        self.row_separator_token = row_separator_token
        self.patch_size = patch_size
        self.instruction_first = instruction_first
        self.normalize_text = normalize_text
        self.location_bins = location_bins
        if box_normalization not in BOX_NORMALIZATIONS:
            raise ValueError(
                f"box_normalization must be one of {', '.join(BOX_NORMALIZATIONS)}, got {box_normalization!r}."
            )
        self.box_normalization = box_normalization
        if chat_template is None:
            chat_template = DEFAULT_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        # Generation's side, so that batches (the pipeline's among them) answer as one-by-one calls do; the training
        # collator pads its own batches on the right, and `padding_side=` in a call still chooses.
        tokenizer.padding_side = "left"
        self.box_format  # checks the box settings

        self.image_token_id = _token_id(tokenizer, image_token)
        self.image_begin_token_id = _marker_id(tokenizer, "image_begin_token", image_begin_token)
        self.image_end_token_id = _marker_id(tokenizer, "image_end_token", image_end_token)
        self.row_separator_token_id = _marker_id(tokenizer, "row_separator_token", row_separator_token)
        if location_bins is not None:
            vocab = tokenizer.get_vocab()
            missing = [token for token in location_tokens(location_bins) if token not in vocab]
            tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in missing])

        size = image_processor.size
        height, width = size["height"], size["width"]
        if height != width or height < patch_size:
            raise ValueError(
                f"The image processor resizes to {height}x{width}; the image block needs a square size of at least "
                f"patch_size={patch_size}."
            )
        self.patches_per_side = height // patch_size
        self._image_block = image_block_ids(
            self.patches_per_side,
            self.image_token_id,
            self.image_begin_token_id,
            self.row_separator_token_id,
            self.image_end_token_id,
        )

    @property
    def image_block(self) -> list[int]:
        """Token ids of one image block."""
        return list(self._image_block)

    def image_layout(self) -> dict:
        """The ids a model config needs to match this processor (`config.update(processor.image_layout())`)."""
        return {
            "image_token_id": self.image_token_id,
            "image_begin_token_id": self.image_begin_token_id,
            "image_end_token_id": self.image_end_token_id,
            "row_separator_token_id": self.row_separator_token_id,
            "image_size": self.image_processor.size["height"],
            "patch_size": self.patch_size,
        }

    def __call__(self, images=None, text=None, **kwargs) -> BatchFeature:
        r"""
        Args:
            images (`PIL.Image`, `np.ndarray`, `torch.Tensor`, or a list / list of lists of them, *optional*):
                The images, in the order their placeholders appear in the batch (a flat list), or one list per sample.
            text (`str` or `list[str]`, *optional*):
                One string per sample, with one `image_token` where each image goes. Samples without images are
                fine. Without text, every image becomes a sample holding just its block.
            kwargs:
                Tokenizer options (`padding`, `padding_side`, `truncation`, `max_length`, `pad_to_multiple_of`,
                `add_special_tokens`, `return_tensors`, ...) and image-processor options (`size`, ...).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` and, when images are given, `pixel_values`
            `(num_images, 3, image_size, image_size)`.
        """
        merged = self._merge_kwargs(tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs, images_kwargs = dict(merged["text_kwargs"]), dict(merged["images_kwargs"])
        images_return_tensors = images_kwargs.pop("return_tensors", None)
        return_tensors = text_kwargs.pop("return_tensors", None) or images_return_tensors

        flat_images, images_per_sample = _flatten_images(images)
        if text is None:
            if not flat_images:
                raise ValueError("Pass text, images or both.")
            text = [self.image_token] * len(flat_images)
            images_per_sample = None
        elif isinstance(text, str):
            text = [text]
        elif not (isinstance(text, (list, tuple)) and all(isinstance(sample, str) for sample in text)):
            raise ValueError(f"text must be a string or a list of strings, got {type(text).__name__}.")
        if not text:
            raise ValueError("text is an empty list: give one string per sample.")
        self._check_placeholder_counts(text, len(flat_images), images_per_sample)

        data = {}
        if flat_images:
            data.update(self.image_processor(flat_images, return_tensors=return_tensors, **images_kwargs))

        padding = text_kwargs.pop("padding", False)
        truncation = text_kwargs.pop("truncation", None) not in (None, False, "do_not_truncate")
        max_length = text_kwargs.pop("max_length", None)
        if truncation and max_length is None and self.tokenizer.model_max_length < 10**9:
            max_length = self.tokenizer.model_max_length
        pad_to_multiple_of = text_kwargs.pop("pad_to_multiple_of", None)
        padding_side = text_kwargs.pop("padding_side", None)
        return_attention_mask = text_kwargs.pop("return_attention_mask", None)
        encoded = self.tokenizer(
            list(text),
            add_special_tokens=text_kwargs.pop("add_special_tokens", True),
            padding=False,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

        input_ids = []
        for index, (sample_text, ids) in enumerate(zip(text, encoded)):
            expanded, blocks = self._expand_image_blocks(ids)
            if len(blocks) != sample_text.count(self.image_token):
                raise ValueError(
                    f"Sample {index}: the tokenizer produced {len(blocks)} {self.image_token} token(s) for "
                    f"{sample_text.count(self.image_token)} in the text."
                )
            if truncation and max_length is not None:
                expanded = self._truncate(expanded, blocks, max_length, index)
            input_ids.append(expanded)

        text_inputs = self.tokenizer.pad(
            {"input_ids": input_ids},
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=True if return_attention_mask is None else return_attention_mask,
            return_tensors=return_tensors,
        )
        data.update(text_inputs)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _check_placeholder_counts(self, text, num_images, images_per_sample):
        counts = [sample.count(self.image_token) for sample in text]
        if images_per_sample is not None:
            if len(images_per_sample) != len(text):
                raise ValueError(
                    f"Got image lists for {len(images_per_sample)} samples but {len(text)} texts; pass one list of "
                    "images per sample."
                )
            for index, (count, num) in enumerate(zip(counts, images_per_sample)):
                if count != num:
                    raise ValueError(
                        f"Sample {index} has {count} {self.image_token} placeholder(s) but {num} image(s)."
                    )
        elif sum(counts) != num_images:
            raise ValueError(
                f"The text holds {sum(counts)} {self.image_token} placeholder(s) (per sample: {counts}) but "
                f"{num_images} image(s) were given; write one {self.image_token} where each image goes."
            )

    def _expand_image_blocks(self, ids: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """Replaces each placeholder id by a whole image block; returns the ids and the blocks' (start, end)."""
        expanded, blocks = [], []
        for token_id in ids:
            if token_id == self.image_token_id:
                blocks.append((len(expanded), len(expanded) + len(self._image_block)))
                expanded.extend(self._image_block)
            else:
                expanded.append(token_id)
        return expanded, blocks

    def _truncate(self, ids, blocks, max_length, index):
        if len(ids) <= max_length:
            return ids
        side = self.tokenizer.truncation_side
        keep = (len(ids) - max_length, len(ids)) if side == "left" else (0, max_length)
        for number, (start, end) in enumerate(blocks):
            if start < keep[0] or end > keep[1]:
                raise ValueError(
                    f"Sample {index} has {len(ids)} tokens; truncating it to max_length={max_length} "
                    f"({side} side) would cut image block {number} (tokens {start}-{end}). Raise max_length or "
                    "shorten the text."
                )
        return ids[keep[0] : keep[1]]

    @property
    def prompt_format(self) -> dict:
        """The settings every prompt of this processor's models is written with (saved with the processor)."""
        return {
            "instruction_first": self.instruction_first,
            "normalize_text": self.normalize_text,
            "box_format": self.box_format,
            "image_token": self.image_token,
            "eos_token": self.tokenizer.eos_token or "",
        }

    def build_prompt(self, example, for_generation: bool = False, **variant) -> TaskPrompt:
        r"""
        Writes a structured example in its task's template with this processor's prompt format (layout, text
        normalization, box format, image and eos tokens): the one place prompts are written, for training, evaluation,
        prediction and the chat template.

        Args:
            example (`dict`): a task and its fields (see `tasks`).
            for_generation (`bool`, *optional*, defaults to `False`): stop where the model starts writing.
            variant: the prompt variants of `tasks.build_prompt` (`with_image`, `index`, `vqa_format`, `ocr_tokens`,
                `merge_turns`), and `normalize_text` or `instruction_first` to depart from the processor's own for
                this prompt (AI2D's questions, for one, keep their case).

        Returns:
            [`tasks.TaskPrompt`].
        """
        owned = sorted(set(variant) & (set(self.prompt_format) - set(LAYOUT_OVERRIDES)))
        if owned:
            raise ValueError(f"{', '.join(owned)} belong(s) to the processor's prompt format and cannot be overridden.")
        return build_prompt(example, for_generation=for_generation, **{**self.prompt_format, **variant})

    def encode_example(self, example, image=None, max_length: int | None = None, index=None, **variant) -> dict:
        """`build_prompt` then `encode_prompt`: one training example to `input_ids`, `labels` and `pixel_values`.
        `image` is the example's opened image (or `None` for a text-only example); errors name the example by its
        `id`, or by its position `index` when it has none."""
        identifier = example.get("id") if isinstance(example, Mapping) else None
        name = identifier if isinstance(identifier, (int, str)) and not isinstance(identifier, bool) else index
        prompt = self.build_prompt(example, index=name, with_image=image is not None, **variant)
        return self.encode_prompt(prompt, image=image, max_length=max_length, index=name)

    def encode_prompt(self, prompt, image=None, max_length: int | None = None, index=None) -> dict:
        r"""
        Tokenizes a task prompt for training: each segment on its own (as the reference tokenized each turn), the
        image segment replaced by the image block, and labels that copy the ids of supervised segments and are -100
        everywhere else (image block, prompts, questions, options).

        Args:
            prompt ([`vlmamba.models.tasks.TaskPrompt`]): from `vlmamba.models.tasks.build_prompt`.
            image (`PIL.Image.Image`, *optional*): the example's image; required when the prompt has an image segment.
            max_length (`int`, *optional*): cut the sequence on the right to this many ids; an error if the cut would
                reach into the image block.
            index (*optional*): the example's index or id, named in errors.

        Returns:
            `dict` with `input_ids` and `labels` (lists of ints) and `pixel_values` (`(1, 3, size, size)` tensor, or
            `None` without image).
        """
        where = "The example" if index is None else f"Example {index}"
        input_ids, labels, block_end, images = [], [], 0, 0
        for text, supervised in prompt.segments:
            if text == self.image_token:
                input_ids.extend(self._image_block)
                labels.extend([-100] * len(self._image_block))
                block_end, images = len(input_ids), images + 1
                continue
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if self.image_token_id in ids:
                raise ValueError(f"{where}: its text holds the image token {self.image_token!r} outside the image.")
            input_ids.extend(ids)
            labels.extend(ids if supervised else [-100] * len(ids))
        if images > 1:
            raise ValueError(f"{where} has {images} image segments; one image per example is supported.")
        if images and image is None:
            raise ValueError(f"{where} has an image segment but no image was given.")
        if image is not None and not images:
            raise ValueError(f"{where} got an image but its prompt has no image segment.")
        if max_length is not None and len(input_ids) > max_length:
            if block_end > max_length:
                raise ValueError(
                    f"{where} has {len(input_ids)} tokens; max_length={max_length} would cut its image block (which "
                    f"ends at token {block_end}). Raise max_length."
                )
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        pixel_values = None
        if image is not None:
            pixel_values = self.image_processor([image], return_tensors="pt")["pixel_values"]
        return {"input_ids": input_ids, "labels": labels, "pixel_values": pixel_values}

    @property
    def box_format(self) -> BoxFormat:
        """How this processor's models write boxes: the reference text format or location tokens, normalized directly
        or the reference's way (`box_normalization`)."""
        if self.box_normalization not in BOX_NORMALIZATIONS:
            raise ValueError(
                f"box_normalization must be one of {', '.join(BOX_NORMALIZATIONS)}, got {self.box_normalization!r}."
            )
        reference_size = self.image_processor.size["height"] if self.box_normalization == "reference" else None
        if self.location_bins is not None:
            return BoxFormat("location", num_bins=self.location_bins, reference_size=reference_size)
        return BoxFormat(reference_size=reference_size)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        """`ProcessorMixin.apply_chat_template`, where a content item `{"type": "task", "task": ..., <query fields>}`
        is first written as the prompt of that task by `build_prompt(..., for_generation=True)`, the message's image
        placed where the layout puts it. A conversation without task items is written as the `chat` task, as the
        models were trained: `"<image>What is it?\nA cat.\nWhat colour is it?\n"` (image first, or after the first
        turn with `instruction_first`), roles `user` and `assistant` only, at most one image. A `chat_template` of
        your own gets the messages as they are. Query fields: `question` (vqa, multiple_choice, with `choices`:
        strings or normalized boxes, and optional `ocr` pairs), `expression` (grounding), `box` (dense_captioning,
        normalized XYXY), `caption` (image_text_match). `instruction_first` and `normalize_text` may be given to
        change the layout or normalization for this call."""
        overrides = {name: kwargs.pop(name) for name in LAYOUT_OVERRIDES if name in kwargs}
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        continue_final = kwargs.get("continue_final_message", False)
        written = []
        for messages in conversations:
            if chat_template is None and not any(self._task_items(message) for message in messages):
                # A plain conversation is the `chat` task: the processor's prompt format writes it.
                written.append(self._write_conversation(messages, overrides, continue_final))
                kwargs["continue_final_message"] = False
            else:
                written.append([self._write_task_items(message, overrides) for message in messages])
        return super().apply_chat_template(written if batched else written[0], chat_template=chat_template, **kwargs)

    @staticmethod
    def _task_items(message) -> list:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, (list, tuple)):
            return []
        return [item for item in content if isinstance(item, dict) and item.get("type") == "task"]

    def _write_conversation(self, messages, overrides: dict, continue_final) -> list[dict]:
        """A conversation of user and assistant messages written as one message by the `chat` task's template (turns
        as the model was trained on: no role markers, each turn ending with a newline, the eos after a final
        assistant turn), its image (at most one) where the layout puts it. A conversation ending with a user message
        is a prompt to answer; with `continue_final_message` the final assistant message is written as it is, to be
        continued."""
        turns, images = [], []
        for position, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                role = message.get("role") if isinstance(message, dict) else message
                raise ValueError(
                    f"Chat message {position} has role {role!r}; the models know only 'user' and 'assistant' turns "
                    "(they were trained without system prompts)."
                )
            content = message.get("content")
            items = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"Chat message {position}: content must be a string or a list of items.")
            texts = []
            for item in items:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind == "image":
                    images.append(item)
                elif kind == "text" and isinstance(item.get("text"), str):
                    texts.append(item["text"])
                else:
                    raise ValueError(f"Chat message {position}: unsupported content item {item!r}.")
            turns.append({"from": "human" if message["role"] == "user" else "gpt", "value": "".join(texts)})
        if len(images) > 1:
            raise ValueError(f"The conversation holds {len(images)} images; one image per conversation is supported.")
        continued = ""
        if continue_final and turns and turns[-1]["from"] == "gpt":
            continued = turns.pop()["value"]
            if self.image_token in continued:
                raise ValueError(
                    f"Chat message {len(turns)}: the assistant text to continue holds the image placeholder "
                    f"{self.image_token!r}; images go in image items."
                )
        example = {"task": "chat", "conversations": turns}
        for_generation = bool(continued) or not turns or turns[-1]["from"] == "human"
        prompt = self.build_prompt(example, for_generation=for_generation, with_image=bool(images), **overrides)
        content = self._chat_items(prompt, images)
        if continued:
            content.append({"type": "text", "text": continued})
        return [{"role": "user", "content": content}]

    def _chat_items(self, prompt: TaskPrompt, images: list) -> list[dict]:
        """`prompt`'s segments as chat content items: text items, and the image item (the first of `images`) where
        the prompt holds the image."""
        return [images[0] if images and text == self.image_token else {"type": "text", "text": text}
                for text, _ in prompt.segments]

    def _write_task_items(self, message, overrides: dict):
        """`message` with its task item written as text items around the message's image (the first image item;
        none for a text-only task)."""
        tasks = self._task_items(message)
        if not tasks:
            return message
        content = message["content"]
        if len(tasks) > 1:
            raise ValueError(f"A chat message holds {len(tasks)} task items; write one task per message.")
        item = tasks[0]
        if item.get("task") not in TASKS or item.get("task") == "chat":
            raise ValueError(f"Unknown task {item.get('task')!r} in a task item of the chat messages.")
        unknown = sorted(set(item) - {"type", "task", *TASK_ITEM_FIELDS})
        if unknown:
            raise ValueError(f"The {item['task']!r} task item has unknown field(s) {unknown}; query fields are "
                             f"{', '.join(TASK_ITEM_FIELDS)}.")
        images = [entry for entry in content if isinstance(entry, dict) and entry.get("type") == "image"]
        example = {key: value for key, value in item.items() if key != "type"}
        example["boxes_normalized"] = True  # chat items give boxes in [0, 1]
        prompt = self.build_prompt(example, for_generation=True, with_image=bool(images), **overrides)
        written = self._chat_items(prompt, images)
        # The task item is written in its place; the image goes where the layout puts it, inside the task's text.
        result = []
        for entry in content:
            if entry is item:
                result.extend(written)
            elif not (isinstance(entry, dict) and entry.get("type") == "image"):
                result.append(entry)
        return {**message, "content": result}

    def post_process_grounding(self, generated, image_sizes=None, skip_special_tokens: bool = True, **decode_kwargs):
        r"""
        Reads the boxes out of generated text: grounding answers (`[0.12,0.05,0.87,1.00].`), grounded captions
        (`||a red circle [..]|| next to ||two squares [..][..]||`) or any text with boxes in this processor's box
        format. Model output is never trusted: any string parses (negative values are clipped to 0 and corners
        ordered; an incomplete box, e.g. from a truncated generation, or one holding a value above 1, e.g. pixels, is
        dropped and counted in `dropped_boxes`, and the others kept).

        Args:
            generated (`torch.Tensor`, `list[list[int]]`, `list[str]` or `str`):
                The generated tokens, one row per sample (only the new tokens: slice off the prompt, e.g.
                `output[:, inputs["input_ids"].shape[1]:]`), or already decoded text.
            image_sizes (`list[tuple[int, int]]`, *optional*):
                `(height, width)` of each sample's original image, to get pixel boxes (`image.size[::-1]` for a PIL
                image). Without it, only normalized boxes are returned.
            skip_special_tokens (`bool`, *optional*, defaults to `True`):
                Passed to the tokenizer's `batch_decode`, with `decode_kwargs`.

        Returns:
            `list[dict]`, one per sample, with `text` (the decoded text), `phrases` (the phrase each box belongs to,
            `""` when none), `boxes` (pixel XYXY of the original image, `None` without `image_sizes`),
            `boxes_normalized` (XYXY in [0, 1]) and `dropped_boxes` (box-like text that was not a valid box).
        """
        if isinstance(generated, str):
            texts = [generated]
        elif isinstance(generated, (list, tuple)) and all(isinstance(text, str) for text in generated):
            texts = list(generated)
        else:
            texts = self.tokenizer.batch_decode(generated, skip_special_tokens=skip_special_tokens, **decode_kwargs)
        if image_sizes is None:
            sizes = [None] * len(texts)
        else:
            sizes = list(image_sizes)
            if len(sizes) != len(texts):
                raise ValueError(f"Got {len(sizes)} image sizes for {len(texts)} generated samples; pass one each.")
        results = []
        for index, (text, size) in enumerate(zip(texts, sizes)):
            try:
                found = parse_grounding(text, image_size=size, box_format=self.box_format)
            except ValueError as error:
                raise ValueError(f"Sample {index}: {error}") from None
            results.append(
                {
                    "text": text,
                    "phrases": [item.phrase for item in found],
                    "boxes": None if size is None else [list(item.box) for item in found],
                    "boxes_normalized": [list(item.box_normalized) for item in found],
                    "dropped_boxes": count_dropped_boxes(text, box_format=self.box_format),
                }
            )
        return results

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _token_id(tokenizer, token: str) -> int:
    """Id of the image placeholder, added as a special token unless it is one: text writes it where the image goes,
    and decoding with `skip_special_tokens=True` drops it."""
    if token not in tokenizer.get_vocab() or token not in tokenizer.all_special_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(token, normalized=False, special=True)]},
            replace_extra_special_tokens=False,
        )
    return tokenizer.convert_tokens_to_ids(token)


def _marker_id(tokenizer, name: str, token: str | None) -> int | None:
    """Id of an image-block marker, which must be one piece of the vocabulary (as `###` and `&&` are in GPT-NeoX's).
    The image block is written as ids, never from text; a marker added to the tokenizer would instead turn users'
    own text (a Markdown `###`) into image markers and be stripped from decoded output."""
    if token is None:
        return None
    if token not in tokenizer.get_vocab():
        pieces = tokenizer.tokenize(token)
        raise ValueError(
            f"{name}={token!r} is not one token of this tokenizer (it splits into {pieces}). Image-block markers are "
            f"ids of the vocabulary: choose a string that is one token, or {name}=None for no marker."
        )
    return tokenizer.convert_tokens_to_ids(token)


def _flatten_images(images) -> tuple[list, list[int] | None]:
    """Returns the images as a flat list and, when given one list per sample, the number of images per sample."""
    if images is None:
        return [], None
    if getattr(images, "ndim", None) == 4:
        # A batch array or tensor (num_images, ...) holds that many images, as the image processor reads it.
        return list(images), None
    if is_valid_image(images) or is_image_source(images):
        return [_opened(images, 0)], None
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"images must be an image or a list of images, got {type(images).__name__}.")
    if all(isinstance(item, (list, tuple)) for item in images) and images:
        flat = [image for sample in images for image in sample]
        per_sample = [len(sample) for sample in images]
    else:
        flat, per_sample = list(images), None
    return [_opened(image, index) for index, image in enumerate(flat)], per_sample


def _opened(image, index: int):
    """An image of the batch: as given, or read by `open_image` from its path or URL."""
    if is_image_source(image):
        try:
            return open_image(image)
        except ValueError as error:
            raise ValueError(f"Image {index}: {error}") from None
    if not is_valid_image(image):
        raise ValueError(
            f"Image {index} is a {type(image).__name__}, not a PIL image, numpy array, tensor, path or URL."
        )
    return image


def free_prompt(text: str, image_token: str = "<image>") -> TaskPrompt:
    """A free prompt (text with image placeholders, continued by the model) as a `TaskPrompt`: the text between the
    placeholders and each placeholder are its segments, none supervised. `encode_prompt` then tokenizes it exactly as
    `processor(text=...)` does, since the placeholder is a special token the tokenizer never merges across."""
    if not isinstance(text, str):
        raise ValueError(f"A prompt must be a string, got {type(text).__name__}.")
    segments = []
    for position, part in enumerate(text.split(image_token)):
        if position:
            segments.append((image_token, False))
        if part:
            segments.append((part, False))
    return TaskPrompt(task="chat", segments=segments)


def _read_image(image, where: str):
    if is_image_source(image):
        try:
            return open_image(image)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if image is not None and not is_valid_image(image):
        raise ValueError(f"{where}: field 'image' must be a path, a PIL image, an array or None, got "
                         f"{type(image).__name__}.")
    return image


def _size_of(image) -> tuple[int, int]:
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    return tuple(int(side) for side in get_image_size(to_numpy_array(image)))


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(item) for item in value)
    return ids


@torch.no_grad()
def generate_answers(
    model,
    processor,
    examples: Sequence[Mapping],
    *,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    generation_kwargs: Mapping | None = None,
    progress: bool = False,
    desc: str | None = None,
    **variant,
) -> list[dict]:
    r"""
    The one inference path: examples in, parsed answers out. Prompts are written with the processor's prompt format
    and tokenized segment by segment as in training (`build_prompt`, `encode_prompt`), batched with left padding,
    continued by greedy `generate()`, cut at the first eos, and read by `post_process_grounding`. Every
    batch gives the same tokens as one-by-one calls.

    Args:
        model: a Mamba-VL / Pythia-VL model (in eval mode), or anything whose `generate` takes `input_ids`,
            `attention_mask`, `pixel_values` and returns the prompt followed by the new tokens.
        processor ([`VLMambaProcessor`]): the model's processor.
        examples (`list[dict]`): one dict per example, with
            - `image`: a file path (read by `open_image`), a PIL image, an array, or `None` for a text-only example;
            - either a `task` with its fields (written by `processor.build_prompt(example, for_generation=True,
              **variant)`), or, without `task`, a free `prompt`: text with one image placeholder, or a `TaskPrompt`;
            - optionally `image_size`, the `(height, width)` the pixel boxes refer to (the image's own by default),
              `max_new_tokens`, and `id` (named in errors; the position by default).
        max_new_tokens (`int`, *optional*): the decoding length of examples without their own; by default the task's
            (`tasks.MAX_NEW_TOKENS`), and `FREE_PROMPT_MAX_NEW_TOKENS` for a free prompt.
        batch_size (`int`, *optional*, defaults to 8): examples per `generate()` call. Examples are grouped by decoding
            length; each answer is cut to its own.
        generation_kwargs (`dict`, *optional*): more `generate()` arguments (e.g. `num_beams`); greedy by default.
        progress (`bool`, *optional*): a tqdm bar over the batches, named `desc`.
        variant: prompt variants for the task examples (`processor.build_prompt`'s).

    Returns:
        `list[dict]` in the order of `examples`, each with `prompt` (the text the model continued), `tokens` (the new
        ids before the eos), and `post_process_grounding`'s `text`, `phrases`, `boxes` (pixel XYXY; `None` for a
        text-only example), `boxes_normalized` and `dropped_boxes`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if max_new_tokens is not None and (
        isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be a positive integer or None, got {max_new_tokens!r}.")
    requests = []
    for position, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise ValueError(f"Example {position} must be a dict, got {type(example).__name__}.")
        name = example.get("id", position)
        where = f"Example {name!r}" if "id" in example else f"Example {position}"
        image = _read_image(example.get("image"), where)
        free = "task" not in example
        if free:
            prompt = example.get("prompt")
            if isinstance(prompt, str):
                prompt = free_prompt(prompt, processor.image_token)
            elif not isinstance(prompt, TaskPrompt):
                raise ValueError(
                    f"{where}: give a 'task' with its fields, or a 'prompt' (a string or a TaskPrompt), got "
                    f"{'no prompt' if prompt is None else type(prompt).__name__}."
                )
        else:
            prompt = processor.build_prompt(
                {**example, "image": image}, for_generation=True, index=position, with_image=image is not None,
                **variant,
            )
        encoded = processor.encode_prompt(prompt, image=image, index=name)
        limit = example.get("max_new_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{where}: field 'max_new_tokens' must be a positive integer, got {limit!r}.")
        limit = limit or max_new_tokens
        if limit is None:
            limit = FREE_PROMPT_MAX_NEW_TOKENS if free else MAX_NEW_TOKENS[prompt.task]
        size = example.get("image_size") or (_size_of(image) if image is not None else None)
        requests.append({"prompt": prompt.text, "encoded": encoded, "limit": limit, "size": size})

    tokenizer = processor.tokenizer
    device = getattr(model, "device", torch.device("cpu"))
    dtype = getattr(model, "dtype", None)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(model, tokenizer)
    options = {"do_sample": False, "num_beams": 1, "pad_token_id": pad_token_id, **(generation_kwargs or {})}
    order = sorted(range(len(requests)), key=lambda i: requests[i]["limit"])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, unit="batch")
    results = [None] * len(requests)
    for batch in batches:
        items = [requests[i] for i in batch]
        inputs = tokenizer.pad(
            {"input_ids": [item["encoded"]["input_ids"] for item in items]},
            padding=True,
            padding_side="left",
            return_attention_mask=True,
            return_tensors="pt",
        ).to(device)
        pixels = [item["encoded"]["pixel_values"] for item in items if item["encoded"]["pixel_values"] is not None]
        if pixels:
            pixel_values = torch.cat(pixels).to(device)
            if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
                pixel_values = pixel_values.to(dtype)
            inputs["pixel_values"] = pixel_values
        output = model.generate(**inputs, max_new_tokens=max(item["limit"] for item in items), **options)
        new_tokens = []
        for item, tokens in zip(items, output[:, inputs["input_ids"].shape[1] :].tolist()):
            tokens = tokens[: item["limit"]]
            end = next((position for position, token in enumerate(tokens) if token in eos), len(tokens))
            new_tokens.append(tokens[:end])
        # A text-only example has no image to scale its boxes to: its `boxes` is None.
        parsed = processor.post_process_grounding(new_tokens, image_sizes=[item["size"] for item in items])
        for i, item, tokens, answer in zip(batch, items, new_tokens, parsed):
            results[i] = {"prompt": item["prompt"], "tokens": tokens, **answer}
    return results


__all__ = ["VLMambaProcessor", "generate_answers", "free_prompt", "FREE_PROMPT_MAX_NEW_TOKENS"]
