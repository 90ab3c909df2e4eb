# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Processor of Mamba-VL and Pythia-VL: images to pixel values, text with image placeholders to token ids."""

from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import is_valid_image
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import AddedToken

from .configuration_vlmamba import image_block_ids


# A prompt with no role markers, as the reference formats turns: image items become the placeholder, text items are
# written as they are, and an assistant turn ends with the tokenizer's eos.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)


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
            The language model's tokenizer.
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
            The task-aware layout ([instruction][image][rest]) the model was trained with; read by prompt builders.
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
        **kwargs,
    ):
        self.image_token = image_token
        self.image_begin_token = image_begin_token
        self.image_end_token = image_end_token
        self.row_separator_token = row_separator_token
        self.patch_size = patch_size
        self.instruction_first = instruction_first
        if chat_template is None:
            chat_template = DEFAULT_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

        self.image_token_id = _token_id(tokenizer, image_token, require_special=True)
        self.image_begin_token_id = _token_id(tokenizer, image_begin_token)
        self.image_end_token_id = _token_id(tokenizer, image_end_token)
        self.row_separator_token_id = _token_id(tokenizer, row_separator_token)

        size = image_processor.size
        height, width = size["height"], size["width"]
        if height != width or height % patch_size != 0:
            raise ValueError(
                f"The image processor resizes to {height}x{width}; the image block needs a square size that is a "
                f"multiple of patch_size={patch_size}."
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
            "instruction_first": self.instruction_first,
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
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _token_id(tokenizer, token: str | None, require_special: bool = False) -> int | None:
    """Id of `token`: an existing single piece keeps its id, anything else is added as a special token."""
    if token is None:
        return None
    if token not in tokenizer.get_vocab() or (require_special and token not in tokenizer.all_special_tokens):
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(token, normalized=False, special=True)]},
            replace_extra_special_tokens=False,
        )
    return tokenizer.convert_tokens_to_ids(token)


def _flatten_images(images) -> tuple[list, list[int] | None]:
    """Returns the images as a flat list and, when given one list per sample, the number of images per sample."""
    if images is None:
        return [], None
    if is_valid_image(images):
        return [images], None
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"images must be an image or a list of images, got {type(images).__name__}.")
    if all(isinstance(item, (list, tuple)) for item in images) and images:
        flat = [image for sample in images for image in sample]
        per_sample = [len(sample) for sample in images]
    else:
        flat, per_sample = list(images), None
    for index, image in enumerate(flat):
        if not is_valid_image(image):
            raise ValueError(f"Image {index} is a {type(image).__name__}, not a PIL image, numpy array or tensor.")
    return flat, per_sample


__all__ = ["VLMambaProcessor"]
