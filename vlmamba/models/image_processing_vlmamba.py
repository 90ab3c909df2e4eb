# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Image processors of Mamba-VL and Pythia-VL: squash to 336x336 and normalize with the OpenAI CLIP statistics; and
`open_image`, the one way image files are read (by the processors, the data collator, evaluation and prediction)."""

import os
from typing import ClassVar

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ChannelDimension, PILImageResampling


# Modes whose `convert("RGB")` (or `convert("RGBA")` when they carry alpha) is exact, so transformers' own
# conversion can take them as they are.
_PASSTHROUGH_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV"}
# PIL decodes 16-bit PNGs and TIFFs into these; its own conversion to 8 bits clips instead of scaling.
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
# Premultiplied alpha (lower-case "a") is not recognized as alpha by transformers, and "LAB" has a band named "A"
# that would be mistaken for alpha; converting first gives an image transformers handles correctly.
_CONVERT_FIRST = {"RGBa": "RGBA", "La": "LA", "LAB": "RGB"}
# Gray, gray + alpha, RGB, RGBA: the layouts `PIL.Image.fromarray` maps to L, LA, RGB and RGBA.
_CHANNEL_COUNTS = (1, 2, 3, 4)


def _float_to_uint8(pixels: np.ndarray, index: int) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise ValueError(f"image {index} contains NaN or infinite values")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"image {index} has float values in [{low:.4g}, {high:.4g}]; expected raw pixels in [0, 1] or [0, 255], "
            "not normalized ones"
        )
    # A float image is taken to be in [0, 1] unless some value exceeds 1.
    scale = 255.0 if high <= 1 else 1.0
    return np.round(pixels.astype(np.float64) * scale).astype(np.uint8)


def _to_uint8(pixels: np.ndarray, index: int) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        return np.round(pixels / 257.0).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        return _float_to_uint8(pixels, index)
    raise ValueError(f"image {index} has unsupported dtype {pixels.dtype}; expected uint8, uint16, bool or float")


def _channels_last(pixels: np.ndarray, index: int, input_data_format) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels[..., None]
    if pixels.ndim != 3:
        raise ValueError(f"image {index} has {pixels.ndim} dimensions (shape {tuple(pixels.shape)}); expected 2 or 3")
    if input_data_format is not None:
        channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
    elif pixels.shape[0] in _CHANNEL_COUNTS:
        # Same tie-break as transformers: when both ends could hold the channels, the first one does.
        channels_first = True
    elif pixels.shape[-1] in _CHANNEL_COUNTS:
        channels_first = False
    else:
        # Invalid either way; name the smaller end as the channel axis in the error below.
        channels_first = pixels.shape[0] < pixels.shape[-1]
    shape = tuple(pixels.shape)
    pixels = np.moveaxis(pixels, 0, -1) if channels_first else pixels
    if pixels.shape[-1] not in _CHANNEL_COUNTS:
        raise ValueError(
            f"image {index} has {pixels.shape[-1]} channels (shape {shape}); expected 1 (gray), "
            "2 (gray + alpha), 3 (RGB) or 4 (RGBA)"
        )
    return pixels


def _to_rgb_compatible(image, index: int, input_data_format=None) -> PIL.Image.Image:
    """Return `image` as an 8-bit PIL image that transformers' `convert_to_rgb` turns into RGB without loss."""
    if isinstance(image, PIL.Image.Image):
        if 0 in image.size:
            raise ValueError(f"image {index} has size {image.size} (width, height); it is empty")
        if image.mode in _PASSTHROUGH_MODES:
            return image
        if image.mode in _CONVERT_FIRST:
            return image.convert(_CONVERT_FIRST[image.mode])
        if image.mode in _SIXTEEN_BIT_MODES:
            pixels = np.asarray(image)
            if pixels.min() < 0 or pixels.max() > 65535:
                raise ValueError(
                    f"image {index} has mode {image.mode!r} with values in [{pixels.min()}, {pixels.max()}]; "
                    "expected 16-bit values in [0, 65535]"
                )
            return PIL.Image.fromarray(_to_uint8(pixels.astype(np.uint16), index))
        if image.mode == "F":
            return PIL.Image.fromarray(_float_to_uint8(np.asarray(image), index))
        raise ValueError(f"image {index} has unsupported PIL mode {image.mode!r}")

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        # numpy has no bfloat16.
        image = image.float() if image.dtype == torch.bfloat16 else image
        image = image.numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image {index} has unsupported type {type(image).__name__}")
    if 0 in image.shape:
        raise ValueError(f"image {index} has shape {tuple(image.shape)}; it is empty")
    pixels = _to_uint8(_channels_last(image, index, input_data_format), index)
    return PIL.Image.fromarray(np.ascontiguousarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels))


def is_image_source(value) -> bool:
    """Whether `value` names an image to read (a path, a `file://` or http(s) URL) rather than holding one."""
    return isinstance(value, os.PathLike) or (isinstance(value, str) and not value.startswith("data:"))


def open_image(path, row=None, timeout: float | None = 30) -> PIL.Image.Image:
    """Reads an image file (or a `file://` or http(s) URL) as the image processors take it: decoded here (so a
    truncated or oversized file fails here, naming it), in the file's own mode. 16-bit, gray, palette and transparent
    images are converted to RGB by the image processor (16-bit values scaled, transparency on white), never here, so a
    file gives the same pixel values as `processor(images=PIL.Image.open(path))`. EXIF orientation is not applied:
    boxes refer to the stored pixels.

    Args:
        path: the image file, or its URL.
        row: the row's index or id, named in errors.
        timeout: seconds to wait for a URL.

    Returns:
        The decoded `PIL.Image.Image`.

    Raises:
        ValueError: the path is not a path, the file is missing, or it is not a readable image (including a
            decompression bomb: more pixels than `PIL.Image.MAX_IMAGE_PIXELS` allows), or the URL cannot be read.
    """
    where = "" if row is None else f" (row {row!r})"
    if not is_image_source(path):
        raise ValueError(f"Image path must be a string or a path, got {path!r}{where}.")
    name = os.fspath(path)
    if name.startswith(("http://", "https://")):
        import io
        import urllib.request

        try:
            with urllib.request.urlopen(name, timeout=timeout) as response:
                source = io.BytesIO(response.read())
        except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
            raise ValueError(f"Cannot download image {name!r}{where}: {error}") from error
    else:
        if name.startswith("file://"):
            name = name[len("file://") :]
        if not os.path.exists(name):
            raise ValueError(f"Image file not found: {name!r}{where}.")
        if os.path.isdir(name):
            raise ValueError(f"Image path is a folder, not a file: {name!r}{where}.")
        source = name
    try:
        with PIL.Image.open(source) as image:
            image.load()
    except Exception as error:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError, ...)
        raise ValueError(f"Cannot read image {name!r}{where}: {type(error).__name__}: {error}") from error
    return image


def _flat_list_of_images(images) -> list:
    # transformers' `make_flat_list_of_images` rejects 2-D (grayscale) arrays and lists mixing 2-D and 3-D ones.
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flat_list_of_images(item)]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


class _VLMambaImageProcessingMixin:
    """Defaults and input conversion shared by both backends."""

    resample = PILImageResampling.BILINEAR
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    # Squashing to the square, without center crop, keeps normalized box coordinates valid.
    size: ClassVar[dict[str, int]] = {"height": 336, "width": 336}
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def to_dict(self):
        # One saved `auto_map` entry per backend, so that `AutoImageProcessor.from_pretrained(..., backend="pil",
        # trust_remote_code=True)` gets the PIL class (`register_for_auto_class` records only the saved class).
        output = super().to_dict()
        auto_map = output.get("auto_map")
        if isinstance(auto_map, dict) and isinstance(auto_map.get("AutoImageProcessor"), str):
            module = auto_map["AutoImageProcessor"].rsplit(".", 1)[0]
            auto_map = dict(auto_map)
            auto_map["AutoImageProcessor"] = {
                "torchvision": f"{module}.VLMambaImageProcessor",
                "pil": f"{module}.VLMambaImageProcessorPil",
            }
            output["auto_map"] = auto_map
        return output

    def fetch_images(self, image_url_or_urls):
        # Paths and URLs go through `open_image` (named errors, no crash on a bad file); base64 data to transformers.
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if is_image_source(image_url_or_urls):
            return open_image(image_url_or_urls)
        return super().fetch_images(image_url_or_urls)

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        return _flat_list_of_images(self.fetch_images(images))

    def _prepare_image_like_inputs(self, images, *args, expected_ndims: int = 3, **kwargs):
        # Overridden to hand each image its position in the batch, for error messages.
        images = self._prepare_images_structure(images, expected_ndims=expected_ndims)
        return [self.process_image(image, *args, image_index=index, **kwargs) for index, image in enumerate(images)]

    def process_image(self, image, *args, image_index: int = 0, input_data_format=None, **kwargs):
        # The result is always a PIL image, so the backend takes its PIL path and ignores `input_data_format`.
        image = _to_rgb_compatible(image, image_index, input_data_format)
        return super().process_image(image, *args, **kwargs)


class VLMambaImageProcessor(_VLMambaImageProcessingMixin, TorchvisionBackend):
    """Torchvision image processor of Mamba-VL and Pythia-VL."""


class VLMambaImageProcessorPil(_VLMambaImageProcessingMixin, PilBackend):
    """PIL image processor of Mamba-VL and Pythia-VL."""


__all__ = ["VLMambaImageProcessor", "VLMambaImageProcessorPil", "open_image", "is_image_source"]
