# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Tests of the VLMamba image processors against independent computations."""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


MODULE_PATH = Path(__file__).resolve().parents[1] / "vlmamba" / "models" / "image_processing_vlmamba.py"


def _load_module():
    # Loaded from its file, as the Hub loads remote code, so these tests need nothing else from the package.
    spec = importlib.util.spec_from_file_location("image_processing_vlmamba_under_test", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ipv = _load_module()
BACKENDS = [ipv.VLMambaImageProcessor, ipv.VLMambaImageProcessorPil]

# The OpenAI CLIP statistics, written out rather than taken from transformers.
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
# One 8-bit level in normalized units, in the channel where it is largest.
ONE_LEVEL = 1 / 255 / STD.min()
SMALL = {"height": 28, "width": 28}
RAW = {"do_resize": False, "do_rescale": False, "do_normalize": False}


def normalized(rgb_0_255) -> np.ndarray:
    """Expected normalized value of each channel for an 8-bit gray level or RGB triple."""
    return (np.broadcast_to(np.asarray(rgb_0_255, dtype=np.float64), (3,)) / 255 - MEAN) / STD


def pixel_values(processor_class, images, **kwargs) -> np.ndarray:
    out = processor_class(**kwargs)(images, return_tensors="pt")["pixel_values"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    return out.numpy().astype(np.float64)


def raw_pixels(processor_class, images, **kwargs) -> list[np.ndarray]:
    """The converted RGB images, channels-first, before any resizing, rescaling or normalization."""
    out = processor_class()(images, **RAW, **kwargs)["pixel_values"]
    return [np.asarray(image, dtype=np.float64) for image in out]


def assert_uniform(pixels: np.ndarray, rgb_0_255, levels: float = 0.5) -> None:
    """Every pixel of a (3, H, W) normalized image is the given color, within `levels` 8-bit levels."""
    expected = normalized(rgb_0_255)[:, None, None]
    np.testing.assert_allclose(pixels, np.broadcast_to(expected, pixels.shape), rtol=0, atol=levels * ONE_LEVEL)


def lab_gray_to_srgb(lightness_0_255: float) -> float:
    """sRGB level of the neutral CIE L*a*b* color with PIL's 8-bit L* (D65, a* = b* = 0)."""
    lightness = lightness_0_255 * 100 / 255
    luminance = ((lightness + 16) / 116) ** 3
    return 255 * (1.055 * luminance ** (1 / 2.4) - 0.055)


def _palette_image(index: int, transparency: int | None = None) -> Image.Image:
    image = Image.new("P", (40, 30), index)
    image.putpalette([128, 128, 128, 255, 0, 0])
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _pa_image() -> Image.Image:
    image = Image.new("PA", (40, 30), (0, 255))
    image.putpalette([128, 128, 128])
    return image


# (id, image, expected 8-bit RGB after conversion, tolerance in 8-bit levels)
MODE_CASES = [
    ("1", Image.new("1", (40, 30), 1), 255, 0.5),
    ("L", Image.new("L", (40, 30), 128), 128, 0.5),
    ("LA-opaque", Image.new("LA", (40, 30), (128, 255)), 128, 0.5),
    # Premultiplied gray 64 at alpha 128 over white: 64 + 255 * (1 - 128 / 255) = 191.
    ("La", Image.new("La", (40, 30), (64, 128)), 191, 1.5),
    ("P", _palette_image(0), 128, 0.5),
    ("P-transparency-unused", _palette_image(0, transparency=1), 128, 0.5),
    ("P-transparent", _palette_image(0, transparency=0), 255, 0.5),
    ("PA", _pa_image(), 128, 0.5),
    ("RGB", Image.new("RGB", (40, 30), (128, 128, 128)), 128, 0.5),
    ("RGBA-opaque", Image.new("RGBA", (40, 30), (128, 128, 128, 255)), 128, 0.5),
    ("RGBA-transparent", Image.new("RGBA", (40, 30), (0, 0, 0, 0)), 255, 0.5),
    # Black at alpha 128 over white: 255 * (1 - 128 / 255) = 127.
    ("RGBA-half", Image.new("RGBA", (40, 30), (0, 0, 0, 128)), 127, 1.5),
    ("RGBa", Image.new("RGBa", (40, 30), (64, 64, 64, 128)), 191, 1.5),
    # The fourth band of RGBX is padding, not alpha.
    ("RGBX", Image.new("RGBX", (40, 30), (128, 128, 128, 0)), 128, 0.5),
    ("CMYK", Image.new("CMYK", (40, 30), (0, 0, 0, 127)), 128, 0.5),
    ("YCbCr", Image.new("YCbCr", (40, 30), (128, 128, 128)), 128, 0.5),
    ("HSV", Image.new("HSV", (40, 30), (0, 0, 128)), 128, 0.5),
    # LAB has a band named "A" which must not be taken for alpha.
    ("LAB", Image.new("LAB", (40, 30), (128, 128, 128)), lab_gray_to_srgb(128), 2),
    ("I;16", Image.new("I;16", (40, 30), 128 * 257), 128, 0.5),
    ("I;16L", Image.new("I;16L", (40, 30), 128 * 257), 128, 0.5),
    ("I;16B", Image.new("I;16B", (40, 30), 128 * 257), 128, 0.5),
    ("I;16N", Image.new("I;16N", (40, 30), 128 * 257), 128, 0.5),
    ("I", Image.new("I", (40, 30), 128 * 257), 128, 0.5),
    ("F-unit", Image.new("F", (40, 30), 128 / 255), 128, 0.5),
    ("F-255", Image.new("F", (40, 30), 128.0), 128, 0.5),
]


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_defaults(processor_class):
    processor = processor_class()
    assert processor.size == {"height": 336, "width": 336}
    assert processor.resample == Image.Resampling.BILINEAR
    assert processor.do_resize and processor.do_rescale and processor.do_normalize and processor.do_convert_rgb
    assert not processor.do_center_crop
    assert processor.rescale_factor == pytest.approx(1 / 255)
    np.testing.assert_allclose(processor.image_mean, MEAN, rtol=0, atol=1e-8)
    np.testing.assert_allclose(processor.image_std, STD, rtol=0, atol=1e-8)
    assert processor.model_input_names == ["pixel_values"]


@pytest.mark.parametrize("processor_class", BACKENDS)
@pytest.mark.parametrize(
    ("image", "expected", "levels"), [case[1:] for case in MODE_CASES], ids=[c[0] for c in MODE_CASES]
)
def test_pil_modes(processor_class, image, expected, levels):
    pixels = pixel_values(processor_class, image)
    assert pixels.shape == (1, 3, 336, 336)
    assert_uniform(pixels[0], expected, levels)


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_lab_band_a_is_not_alpha(processor_class):
    # A zero-filled LAB image converts to RGBA with alpha 0, so treating its "A" band as alpha would give white.
    # The colorimetry itself is PIL's; what is checked here is that it is used.
    image = Image.new("LAB", (40, 30))
    expected = np.asarray(image.convert("RGB"))[0, 0]
    assert np.asarray(image.convert("RGBA"))[0, 0, 3] == 0 and tuple(expected) != (255, 255, 255)
    assert_uniform(pixel_values(processor_class, image, size=SMALL)[0], expected)


@pytest.mark.parametrize("processor_class", BACKENDS)
@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_is_scaled_not_clipped(processor_class, mode):
    values = np.array([[0, 257, 1000, 32896, 40000, 65535]])
    image = Image.new(mode, (6, 1))
    image.putdata(values.ravel().tolist())
    (pixels,) = raw_pixels(processor_class, image)
    expected = np.round(values / 257)  # 0, 1, 4, 128, 156, 255
    np.testing.assert_array_equal(pixels, np.broadcast_to(expected, (3, 1, 6)))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_numpy_hwc_uint8_is_unchanged(processor_class):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, array.transpose(2, 0, 1))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_numpy_chw_float_unit_range(processor_class):
    array = np.random.default_rng(1).random((3, 5, 7), dtype=np.float32)
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, np.rint(array.astype(np.float64) * 255))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_numpy_float_0_255_range(processor_class):
    array = np.random.default_rng(2).uniform(0, 255, (5, 7, 3))
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, np.rint(array).transpose(2, 0, 1))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_numpy_uint16(processor_class):
    array = np.random.default_rng(3).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, np.rint(array / 257).transpose(2, 0, 1))


@pytest.mark.parametrize("processor_class", BACKENDS)
@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(4).integers(0, 256, (5, 7), dtype=np.uint8),
        np.random.default_rng(4).integers(0, 256, (5, 7, 1), dtype=np.uint8),
        np.random.default_rng(4).integers(0, 256, (1, 5, 7), dtype=np.uint8),
        torch.randint(0, 256, (5, 7), dtype=torch.uint8),
    ],
    ids=["2d", "hw1", "1hw", "torch-2d"],
)
def test_grayscale_arrays(processor_class, array):
    gray = np.asarray(array, dtype=np.float64).reshape(5, 7)
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, np.stack([gray] * 3))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_bool_array(processor_class):
    array = np.random.default_rng(5).random((5, 7)) > 0.5
    (pixels,) = raw_pixels(processor_class, array)
    np.testing.assert_array_equal(pixels, np.stack([array * 255.0] * 3))


@pytest.mark.parametrize("processor_class", BACKENDS)
@pytest.mark.parametrize("channels_first", [False, True])
def test_gray_alpha_array_composited_on_white(processor_class, channels_first):
    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (5, 7)).astype(np.float64)
    alpha = rng.integers(0, 256, (5, 7)).astype(np.float64)
    array = np.stack([gray, alpha], axis=0 if channels_first else -1).astype(np.uint8)
    (pixels,) = raw_pixels(processor_class, array)
    expected = gray * alpha / 255 + 255 * (1 - alpha / 255)
    np.testing.assert_allclose(pixels, np.stack([expected] * 3), rtol=0, atol=1)


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_rgba_array_composited_on_white(processor_class):
    rng = np.random.default_rng(7)
    array = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    (pixels,) = raw_pixels(processor_class, array)
    rgb, alpha = array[..., :3].astype(np.float64), array[..., 3:].astype(np.float64) / 255
    expected = rgb * alpha + 255 * (1 - alpha)
    np.testing.assert_allclose(pixels, expected.transpose(2, 0, 1), rtol=0, atol=1)


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_torch_tensors(processor_class):
    rng = torch.Generator().manual_seed(8)
    chw_uint8 = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=rng)
    hwc_float = torch.rand((5, 7, 3), generator=rng)
    chw_bfloat16 = torch.rand((3, 5, 7), generator=rng).to(torch.bfloat16)
    pixels = raw_pixels(processor_class, [chw_uint8, hwc_float, chw_bfloat16])
    np.testing.assert_array_equal(pixels[0], chw_uint8.numpy())
    np.testing.assert_array_equal(pixels[1], np.rint(hwc_float.double().numpy() * 255).transpose(2, 0, 1))
    np.testing.assert_array_equal(pixels[2], np.rint(chw_bfloat16.double().numpy() * 255))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_four_dimensional_batch(processor_class):
    batch = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    pixels = raw_pixels(processor_class, batch)
    assert len(pixels) == 2
    for image, expected in zip(pixels, batch):
        np.testing.assert_array_equal(image, expected.numpy())


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_input_data_format_resolves_ambiguous_layout(processor_class):
    array = np.random.default_rng(9).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    (as_channels_first,) = raw_pixels(processor_class, array)
    (as_channels_last,) = raw_pixels(processor_class, array, input_data_format="channels_last")
    np.testing.assert_array_equal(as_channels_first, array)
    np.testing.assert_array_equal(as_channels_last, array.transpose(2, 0, 1))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_mixed_batch_is_squashed_to_default_size(processor_class):
    images = [
        np.full((50, 80), 10, dtype=np.uint8),
        np.full((300, 20, 3), (200, 100, 50), dtype=np.uint8),
        Image.new("I;16", (33, 17), 64 * 257),
        torch.full((4, 9, 13), 1.0),
    ]
    pixels = pixel_values(processor_class, images)
    assert pixels.shape == (4, 3, 336, 336)
    for image, expected in zip(pixels, [10, (200, 100, 50), 64, 255]):
        assert_uniform(image, expected)


def _first_bright_index(profile: np.ndarray) -> int:
    """Index of the first value above the black/white midpoint."""
    midpoint = (normalized(0)[0] + normalized(255)[0]) / 2
    return int(np.argmax(profile > midpoint))


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_resize_squashes_without_crop(processor_class):
    width, height = 200, 100
    halves = np.full((height, width, 3), 255, dtype=np.uint8)
    halves[:, : width // 2] = 0
    red = pixel_values(processor_class, Image.fromarray(halves))[0, 0]
    # Bilinear upscaling by 336 / 200 puts the black/white midpoint between output columns 167 and 168.
    boundaries = {_first_bright_index(row) for row in red}
    assert boundaries <= {167, 168, 169}

    # Black left quarter and top quarter: a resize of the short side followed by a center crop would show no black,
    # and any crop or padding would move the boundaries away from 336 / 4.
    quarters = np.full((height, width, 3), 255, dtype=np.uint8)
    quarters[:, : width // 4] = 0
    quarters[: height // 4] = 0
    red = pixel_values(processor_class, Image.fromarray(quarters))[0, 0]
    assert abs(_first_bright_index(red[250]) - 84) <= 1
    assert abs(_first_bright_index(red[:, 250]) - 84) <= 1
    np.testing.assert_allclose(red[:80, :80], normalized(0)[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(red[90:, 90:], normalized(255)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(10).integers(0, 256, (123, 77, 3), dtype=np.uint8),
        np.random.default_rng(11).integers(0, 256, (500, 700, 3), dtype=np.uint8),
        np.random.default_rng(12).integers(0, 256, (90, 60, 4), dtype=np.uint8),
        Image.new("I;16", (50, 40), 12345),
    ],
    ids=["upscale", "downscale", "rgba", "16-bit"],
)
def test_backends_agree(image):
    torchvision_pixels = pixel_values(ipv.VLMambaImageProcessor, image)
    pil_pixels = pixel_values(ipv.VLMambaImageProcessorPil, image)
    difference = np.abs(torchvision_pixels - pil_pixels)
    # Measured: torchvision's and PIL's uint8 bilinear resizes round up to 1.4 % of the values differently, by exactly
    # one 8-bit level (0.01501 in the green channel) and never more; the mean difference is at most 2.1e-4.
    assert difference.max() <= ONE_LEVEL + 1e-5
    assert difference.mean() < 5e-4


@pytest.mark.parametrize("processor_class", BACKENDS)
def test_save_and_load(processor_class, tmp_path):
    processor_class().save_pretrained(tmp_path / "default")
    loaded = processor_class.from_pretrained(tmp_path / "default")
    assert loaded.size == {"height": 336, "width": 336}
    np.testing.assert_allclose(loaded.image_mean, MEAN, rtol=0, atol=1e-8)
    np.testing.assert_allclose(loaded.image_std, STD, rtol=0, atol=1e-8)
    assert loaded.resample == Image.Resampling.BILINEAR
    assert not loaded.do_center_crop
    saved = json.loads((tmp_path / "default" / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "VLMambaImageProcessor"

    custom = processor_class(size=SMALL, image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    custom.save_pretrained(tmp_path / "custom")
    loaded = processor_class.from_pretrained(tmp_path / "custom")
    assert type(loaded) is processor_class
    assert loaded.size == SMALL
    assert tuple(loaded.image_mean) == (0.5, 0.5, 0.5) and tuple(loaded.image_std) == (0.25, 0.25, 0.25)
    image = np.random.default_rng(13).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    expected = custom(image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(loaded(image, return_tensors="pt")["pixel_values"], expected, rtol=0, atol=0)
    assert expected.shape == (1, 3, 28, 28)


def test_module_is_standalone():
    # Shipped as Hub remote code: the file must import with only these libraries, not the rest of the package.
    tree = ast.parse(MODULE_PATH.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names <= {"numpy", "PIL", "torch", "transformers"}
    assert ipv.__all__ == ["VLMambaImageProcessor", "VLMambaImageProcessorPil", "open_image", "is_image_source"]


def _valid() -> np.ndarray:
    return np.zeros((10, 10, 3), dtype=np.uint8)


def _nan_image() -> np.ndarray:
    image = np.zeros((10, 10, 3), dtype=np.float32)
    image[3, 4, 1] = np.nan
    return image


def _pil_int32(value: int) -> Image.Image:
    return Image.fromarray(np.full((4, 4), value, dtype=np.int32))


ERROR_CASES = [
    ("5-channels", [_valid(), _valid(), np.zeros((10, 10, 5), dtype=np.uint8)], r"image 2 has 5 channels"),
    ("6-channels-first", np.zeros((6, 10, 12), dtype=np.uint8), r"image 0 has 6 channels \(shape \(6, 10, 12\)\)"),
    ("empty-array", np.zeros((0, 10), dtype=np.uint8), r"image 0 has shape \(0, 10\)"),
    ("empty-pil", [_valid(), Image.new("L", (0, 5))], r"image 1 has size \(0, 5\)"),
    ("int64", [_valid(), np.zeros((10, 10, 3), dtype=np.int64)], r"image 1 has unsupported dtype int64"),
    ("torch-int32", torch.zeros((3, 10, 10), dtype=torch.int32), r"image 0 has unsupported dtype int32"),
    ("nan", _nan_image(), r"image 0 contains NaN"),
    ("nan-pil-f", Image.fromarray(_nan_image()[..., 1]), r"image 0 contains NaN"),
    ("normalized", np.full((10, 10, 3), -0.5, dtype=np.float32), r"image 0 has float values in \[-0\.5, -0\.5\]"),
    ("above-255", np.full((10, 10, 3), 300.0), r"image 0 has float values in \[300, 300\]"),
    ("negative-i", _pil_int32(-5), r"image 0 has mode 'I' with values in \[-5, -5\]"),
    ("huge-i", _pil_int32(70000), r"image 0 has mode 'I' with values in \[70000, 70000\]"),
    ("5-dims", np.zeros((1, 1, 3, 10, 10), dtype=np.uint8), r"image 0 has 5 dimensions"),
]


@pytest.mark.parametrize("processor_class", BACKENDS)
@pytest.mark.parametrize(("images", "message"), [case[1:] for case in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_input_raises(processor_class, images, message):
    with pytest.raises(ValueError, match=message):
        processor_class(size=SMALL)(images)
