"""Boxes read out of generated text, box metrics and box drawing (`vlmamba.grounding`)."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmamba.evaluation.boxes import box_iou, draw_boxes, grounding_accuracy, paired_box_iou
from vlmamba.models.boxes import (
    BoxFormat,
    GroundedBox,
    count_dropped_boxes,
    format_box,
    normalize_box,
    parse_grounding,
    strip_boxes,
)


LOCATION = BoxFormat("location", num_bins=10)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def boxes_of(text, box_format=None):
    return [item.box_normalized for item in parse_grounding(text, box_format=box_format)]


def assert_boxes(found, expected):
    assert len(found) == len(expected), found
    for box, want in zip(found, expected):
        assert box == pytest.approx(want, abs=1e-12)


# Text format: (generated text, expected normalized boxes, expected phrases).
TEXT_CASES = {
    "reference answer": ("[0.12,0.05,0.87,1.00]", [(0.12, 0.05, 0.87, 1.0)], [""]),
    "trailing period": ("[0.12,0.05,0.87,1.00].", [(0.12, 0.05, 0.87, 1.0)], [""]),
    "spaces inside": ("[ 0.1 , 0.2,0.3, 0.4 ]", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "newline inside": ("[0.1,\n0.2,0.3,0.4]", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "int, .5 and 1. numbers": ("[0,.5,1.,1]", [(0.0, 0.5, 1.0, 1.0)], [""]),
    "trailing comma": ("[0.1,0.2,0.3,0.4,]", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "missing bracket mid-text": ("[0.1,0.2,0.3,0.4 and the dog", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "missing bracket then box": (
        "a cat [0.1,0.2,0.3,0.4[0.5,0.5,0.6,0.6]",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.6, 0.6)],
        ["a cat", "a cat"],
    ),
    "missing bracket then period": ("the cat [0.1,0.2,0.3,0.4. Done", [(0.1, 0.2, 0.3, 0.4)], ["the cat"]),
    "negative clipped": ("[-0.2,0.5,0.7,1]", [(0.0, 0.5, 0.7, 1.0)], [""]),
    "above 1 dropped": ("[-0.2,0.5,1.7,2]", [], []),
    "pixels dropped": ("the dog [64,48,320,240].", [], []),
    "huge number dropped": ("[0.1,0.2," + "9" * 400 + ",0.3]", [], []),
    "swapped corners": ("[0.8,0.9,0.2,0.1]", [(0.2, 0.1, 0.8, 0.9)], [""]),
    "swapped x only": ("[0.8,0.1,0.2,0.9]", [(0.2, 0.1, 0.8, 0.9)], [""]),
    "several boxes": (
        "the cat [0.1,0.2,0.3,0.4] and the dog [0.5,0.6,0.7,0.8].",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["the cat", "and the dog"],
    ),
    "concatenated boxes share the phrase": (
        "two dogs [0.1,0.2,0.3,0.4][0.5,0.6,0.7,0.8]",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["two dogs", "two dogs"],
    ),
    "boxes separated by punctuation share the phrase": (
        "two dogs [0.1,0.2,0.3,0.4], [0.5,0.6,0.7,0.8].",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["two dogs", "two dogs"],
    ),
    "option labels": (
        "A: [0.1,0.2,0.3,0.4].\nB: [0.5,0.6,0.7,0.8].",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["A", "B"],
    ),
    "grounded caption": (
        "||a red circle [0.10,0.20,0.30,0.40]|| next to ||two squares [0.50,0.50,0.60,0.60][0.70,0.70,0.80,0.80]||.",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.6, 0.6), (0.7, 0.7, 0.8, 0.8)],
        ["a red circle", "two squares", "two squares"],
    ),
    "chunk text around its boxes": ("||two [0.1,0.2,0.3,0.4] big   dogs||", [(0.1, 0.2, 0.3, 0.4)], ["two big dogs"]),
    "box right after a chunk": (
        "||a cat [0.1,0.2,0.3,0.4]|| [0.5,0.6,0.7,0.8]",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["a cat", ""],
    ),
    "box outside after a chunk": (
        "||a cat [0.1,0.2,0.3,0.4]|| next to a dog [0.5,0.6,0.7,0.8]",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["a cat", "next to a dog"],
    ),
    "unclosed chunk runs to the end": (
        "||a cat [0.1,0.2,0.3,0.4]|| and ||a dog [0.5,0.6,0.7,0.8] sitting",
        [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)],
        ["a cat", "a dog sitting"],
    ),
    "lone marker": ("||", [], []),
    "truncated after a box": (
        "||a cat [0.10,0.20,0.30,0.40]|| and ||a dog [0.50,0.5",
        [(0.1, 0.2, 0.3, 0.4)],
        ["a cat"],
    ),
    "truncated after a comma": ("the cat [0.1,0.2,0.3,0.4] and [0.5,", [(0.1, 0.2, 0.3, 0.4)], ["the cat"]),
    "truncated bracket": ("the cat [0.1,0.2,0.3,0.4] and [", [(0.1, 0.2, 0.3, 0.4)], ["the cat"]),
    "unclosed at the end, full decimals": ("[0.10,0.20,0.30,0.40", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "unclosed at the end, short last number": ("[0.10,0.20,0.30,0.4", [], []),
    "unclosed at the end, then comma": ("[0.10,0.20,0.30,0.40,", [], []),
    "three numbers": ("[0.1,0.2,0.3]", [], []),
    "three numbers end a phrase": (
        "the cat [0.1,0.2,0.3] and the dog [0.1,0.2,0.3,0.4]",
        [(0.1, 0.2, 0.3, 0.4)],
        ["and the dog"],
    ),
    "five numbers dropped": ("[0.1,0.2,0.3,0.4,0.5]", [], []),
    "five numbers unclosed dropped": ("[0.1,0.2,0.3,0.4,0.5 and more", [], []),
    "fifth number after a space dropped": ("[0.1,0.2,0.3,0.4 0.5]", [], []),
    "five numbers, then a good box": (
        "[0.1,0.2,0.3,0.4,0.5] the dog [0.1,0.2,0.3,0.4]",
        [(0.1, 0.2, 0.3, 0.4)],
        ["the dog"],
    ),
    "no boxes": ("A dog [sic] on [a] mat ]] [[ , 0.5 1,2,3,4.", [], []),
    "nested brackets": ("[[0.1,0.2,0.3,0.4]]", [(0.1, 0.2, 0.3, 0.4)], [""]),
    "location tokens ignored by the text format": ("<loc_1><loc_2><loc_3><loc_4>", [], []),
}


@pytest.mark.parametrize("text, boxes, phrases", TEXT_CASES.values(), ids=TEXT_CASES.keys())
def test_parse_text_format(text, boxes, phrases):
    found = parse_grounding(text)
    assert_boxes([item.box_normalized for item in found], boxes)
    assert [item.phrase for item in found] == phrases
    for item in found:
        assert item.box is None
        start, end = item.span
        assert text[start] == "["
        assert re.search(r"[\d\]]$", text[start:end])
    assert [item.span for item in found] == sorted({item.span for item in found})


def test_spans_point_at_the_box_text():
    text = "the cat [ 0.1,0.2 ,0.3,0.4 ] and ||a dog [0.5,0.6,0.7,0.8][0.1,0.1,0.2,0.2]|| [0.1,0.2,0.3,0.4 x"
    spans = [text[slice(*item.span)] for item in parse_grounding(text)]
    assert spans == ["[ 0.1,0.2 ,0.3,0.4 ]", "[0.5,0.6,0.7,0.8]", "[0.1,0.1,0.2,0.2]", "[0.1,0.2,0.3,0.4"]


def test_truncated_generation_keeps_earlier_boxes():
    full = "||a red circle [0.10,0.20,0.30,0.40]|| next to ||two squares [0.50,0.50,0.60,0.60][0.70,0.70,0.80,0.80]||."
    cut = full.index("[0.70") + len("[0.70,0.7")
    found = parse_grounding(full[:cut])
    assert_boxes([item.box_normalized for item in found], [(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.6, 0.6)])
    assert [item.phrase for item in found] == ["a red circle", "two squares"]
    # Every cut keeps exactly the boxes whose text ended before the cut (the full-precision unclosed box included).
    complete = parse_grounding(full)
    for cut in range(len(full) + 1):
        expected = [item.box_normalized for item in complete if item.span[1] - (full[item.span[1] - 1] == "]") <= cut]
        assert boxes_of(full[:cut]) == expected, full[:cut]


def test_pixel_boxes_use_height_and_width():
    (item,) = parse_grounding("a dog [0.10,0.20,0.30,0.40].", image_size=(100, 200))
    assert item.box == pytest.approx((0.1 * 200, 0.2 * 100, 0.3 * 200, 0.4 * 100))
    assert item.box_normalized == pytest.approx((0.1, 0.2, 0.3, 0.4))
    (clipped,) = parse_grounding("[0.5,-1,1,1]", image_size=torch.tensor([30, 40]))
    assert clipped.box == pytest.approx((20.0, 0.0, 40.0, 30.0))


def test_boxes_written_in_pixels_are_dropped_and_counted():
    text = "the dog [64,48,320,240] and the cat [0.10,0.20,0.30,0.40]"
    (item,) = parse_grounding(text)
    assert item.box_normalized == pytest.approx((0.1, 0.2, 0.3, 0.4)) and item.phrase == "and the cat"
    assert count_dropped_boxes(text) == 1
    assert count_dropped_boxes("[0.1,0.2,0.3] [0.1,0.2,0.3,0.4] <loc_1>") == 1


# Location format with 10 bins (bin centres 0.05, 0.15, ...): (text, expected boxes, expected phrases).
LOCATION_CASES = {
    "one box": ("<loc_1><loc_2><loc_3><loc_4>", [(0.15, 0.25, 0.35, 0.45)], [""]),
    "whitespace between tokens": ("a cat <loc_1> <loc_2>\n<loc_3>  <loc_4>.", [(0.15, 0.25, 0.35, 0.45)], ["a cat"]),
    "index past the last bin": ("<loc_3><loc_12><loc_9><loc_10>", [(0.35, 0.95, 0.95, 0.95)], [""]),
    "very long index": ("<loc_0><loc_0><loc_" + "7" * 5000 + "><loc_00005>", [(0.05, 0.05, 0.95, 0.55)], [""]),
    "swapped corners": ("<loc_8><loc_9><loc_1><loc_2>", [(0.15, 0.25, 0.85, 0.95)], [""]),
    "two boxes in a row": (
        "dogs <loc_0><loc_0><loc_1><loc_1><loc_5><loc_5><loc_9><loc_9>",
        [(0.05, 0.05, 0.15, 0.15), (0.55, 0.55, 0.95, 0.95)],
        ["dogs", "dogs"],
    ),
    "three tokens": ("a cat <loc_1><loc_2><loc_3>", [], []),
    "six tokens keep the first four": ("<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>", [(0.15, 0.25, 0.35, 0.45)], [""]),
    "group broken by text": ("<loc_1><loc_2> x <loc_3><loc_4>", [], []),
    "malformed token": ("<loc_1><loc_2><loc_3><loc_4", [], []),
    "malformed token breaks the group": ("<loc_1><loc_><loc_2><loc_3><loc_4>", [], []),
    "grounded caption": (
        "||a cat <loc_1><loc_2><loc_3><loc_4>|| on ||a mat <loc_0><loc_5><loc_9><loc_9>||",
        [(0.15, 0.25, 0.35, 0.45), (0.05, 0.55, 0.95, 0.95)],
        ["a cat", "a mat"],
    ),
    "text boxes ignored by the location format": ("[0.1,0.2,0.3,0.4]", [], []),
}


@pytest.mark.parametrize("text, boxes, phrases", LOCATION_CASES.values(), ids=LOCATION_CASES.keys())
def test_parse_location_format(text, boxes, phrases):
    found = parse_grounding(text, box_format=LOCATION)
    assert_boxes([item.box_normalized for item in found], boxes)
    assert [item.phrase for item in found] == phrases
    for item in found:
        start, end = item.span
        assert text[start:].startswith("<loc_") and text[:end].endswith(">")


def test_location_spans_cover_four_tokens():
    text = "x <loc_1> <loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>"
    spans = [text[slice(*item.span)] for item in parse_grounding(text, box_format=LOCATION)]
    assert spans == ["<loc_1> <loc_2><loc_3><loc_4>", "<loc_5><loc_6><loc_7><loc_8>"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": (0, 10)}, "image_size"),
        ({"image_size": (-5, 10)}, "image_size"),
        ({"image_size": (10,)}, "image_size"),
        ({"image_size": "big"}, "image_size"),
        ({"image_size": (float("nan"), 3)}, "image_size"),
        ({"box_format": "location"}, "box_format"),
        ({"box_format": {"kind": "text"}}, "box_format"),
    ],
)
def test_parse_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_grounding("[0.1,0.2,0.3,0.4]", **kwargs)
    # Raised even when the text holds no box.
    with pytest.raises(ValueError, match=match):
        parse_grounding("", **kwargs)


def test_parse_rejects_non_string_text():
    with pytest.raises(ValueError, match="text must be a string"):
        parse_grounding(None)
    with pytest.raises(ValueError, match="box_format"):
        strip_boxes("a", box_format="text")


def test_grounded_box_to_dict_and_frozen():
    (item,) = parse_grounding("||a cat [0.25,0.5,0.75,1]||", image_size=(10, 20))
    assert isinstance(item, GroundedBox)
    expected = {
        "phrase": "a cat",
        "box_normalized": [0.25, 0.5, 0.75, 1.0],
        "box": [5.0, 5.0, 15.0, 10.0],
        "span": [8, 25],
    }
    assert item.to_dict() == expected
    assert json.loads(json.dumps(item.to_dict())) == expected
    assert parse_grounding("[0.25,0.5,0.75,1]")[0].to_dict()["box"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.phrase = "a dog"


@pytest.mark.parametrize(
    "text, box_format, expected",
    [
        (
            "||a red circle [0.10,0.20,0.30,0.40]|| next to ||two squares [0.5,0.5,0.6,0.6][0.7,0.7,0.8,0.8]||.",
            None,
            "a red circle next to two squares.",
        ),
        ("a cat [0.1,0.2,0.3,0.4], a dog [0.1,0.2", None, "a cat, a dog"),
        ("A dog, a cat.\nTwo  lines.", None, "A dog, a cat.\nTwo lines."),
        ("Costs .5 dollars [0.1,0.2,0.3,0.4] .", None, "Costs .5 dollars."),
        ("||a cat <loc_1><loc_2><loc_3><loc_4>|| on a mat <loc_1>", LOCATION, "a cat on a mat"),
        ("||unclosed chunk [0.1,0.2,0.3,0.4] here", None, "unclosed chunk here"),
        # The separators of a list of boxes leave with the boxes; commas between phrases stay.
        ("two squares [0.1,0.2,0.3,0.4], [0.5,0.5,0.6,0.6].", None, "two squares."),
        ("boxes: [0.1,0.2,0.3,0.4] ;[0.5,0.5,0.6,0.6]", None, "boxes:"),
        ("||a [0.1,0.2,0.3,0.4]||, ||b [0.5,0.5,0.6,0.6]||", None, "a, b"),
        ("a cat <loc_1><loc_2><loc_3><loc_4>, <loc_5><loc_6><loc_7><loc_8>.", LOCATION, "a cat."),
    ],
)
def test_strip_boxes(text, box_format, expected):
    assert strip_boxes(text, box_format) == expected


# ---------------------------------------------------------------------------------------------- property-based


def check_parsed(text, found, image_size=None):
    previous_end = 0
    for item in found:
        x1, y1, x2, y2 = item.box_normalized
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
        start, end = item.span
        assert previous_end <= start < end <= len(text)
        previous_end = end
        assert isinstance(item.phrase, str) and item.phrase == item.phrase.strip()
        if image_size is None:
            assert item.box is None
        else:
            height, width = image_size
            assert 0 <= item.box[0] <= item.box[2] <= width and 0 <= item.box[1] <= item.box[3] <= height


FRAGMENTS = st.lists(
    st.sampled_from(["[", "]", ",", "0", "1", "7", ".", "5", "||", "<loc_", ">", " ", "-", "\n", "a", "dog", "9" * 30]),
    max_size=60,
).map("".join)


@FAST
@given(text=st.one_of(st.text(), FRAGMENTS), location=st.booleans(), with_size=st.booleans())
def test_parse_never_raises_on_model_output(text, location, with_size):
    box_format = BoxFormat("location", num_bins=7) if location else None
    image_size = (37, 51) if with_size else None
    found = parse_grounding(text, image_size=image_size, box_format=box_format)
    check_parsed(text, found, image_size)
    caption = strip_boxes(text, box_format)
    assert isinstance(caption, str) and "||" not in caption


def normalized_boxes():
    def order(values):
        x1, y1, x2, y2 = values
        return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)

    unit = st.floats(0, 1, allow_nan=False)
    return st.tuples(unit, unit, unit, unit).map(order)


# Where a box is written, and the phrase it then has.
TEMPLATES = {"{}": "", "{}.": "", "||a thing {}||": "a thing", "the thing {}<|endoftext|>": "the thing"}


@FAST
@given(box=normalized_boxes(), template=st.sampled_from(sorted(TEMPLATES)))
def test_text_round_trip(box, template):
    written = format_box(box)
    text = template.format(written)
    (item,) = parse_grounding(text)
    assert item.box_normalized == tuple(round(value, 2) for value in box)
    assert format_box(item.box_normalized) == written
    assert text[slice(*item.span)] == written
    assert item.phrase == TEMPLATES[template]


@FAST
@given(box=normalized_boxes(), num_bins=st.integers(2, 2000))
def test_location_round_trip(box, num_bins):
    box_format = BoxFormat("location", num_bins=num_bins)
    written = format_box(box, box_format)
    indices = [int(index) for index in re.findall(r"<loc_(\d+)>", written)]
    (item,) = parse_grounding(f"a thing {written}.", box_format=box_format)
    assert item.box_normalized == tuple((index + 0.5) / num_bins for index in indices)
    for parsed, value in zip(item.box_normalized, box):
        assert abs(parsed - value) <= 0.5 / num_bins + 1e-12
    assert format_box(item.box_normalized, box_format) == written
    assert item.phrase == "a thing"


@st.composite
def pixel_boxes_and_sizes(draw):
    height, width = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
    xs = sorted(draw(st.floats(0, width, allow_nan=False)) for _ in range(2))
    ys = sorted(draw(st.floats(0, height, allow_nan=False)) for _ in range(2))
    return (xs[0], ys[0], xs[1], ys[1]), (height, width)


@FAST
@given(case=pixel_boxes_and_sizes())
def test_pixel_round_trip(case):
    box, (height, width) = case
    text = format_box(normalize_box(box, (height, width))) + "."
    (item,) = parse_grounding(text, image_size=(height, width))
    for parsed, value, side in zip(item.box, box, (width, height, width, height)):
        assert abs(parsed - value) <= 0.005 * side * (1 + 1e-9)


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@FAST
@given(
    chunks=st.lists(
        st.tuples(st.lists(WORD, min_size=1, max_size=3), st.lists(normalized_boxes(), min_size=1, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    glue=st.lists(WORD, min_size=1, max_size=2).map(" ".join),
)
def test_grounded_caption_round_trip(chunks, glue):
    caption = (
        f" {glue} ".join(
            "||" + " ".join(words) + " " + "".join(format_box(box) for box in boxes) + "||" for words, boxes in chunks
        )
        + "."
    )
    found = parse_grounding(caption)
    expected = [(" ".join(words), tuple(round(v, 2) for v in box)) for words, boxes in chunks for box in boxes]
    assert [(item.phrase, item.box_normalized) for item in found] == expected
    assert strip_boxes(caption) == f" {glue} ".join(" ".join(words) for words, _ in chunks) + "."


# ---------------------------------------------------------------------------------------------- metrics


def test_paired_box_iou_hand_values():
    pairs = [
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),  # identical
        ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),  # disjoint
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),  # touching edges
        ([0, 0, 2, 2], [1, 0, 3, 2], 2 / 6),  # half of each overlaps
        ([0, 0, 2, 1], [0, 0, 1, 1], 0.5),
        ([0, 0, 4, 4], [1, 1, 3, 3], 4 / 16),  # contained
        ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),  # zero area, zero union
        ([0, 0, 2, 2], [1, 1, 1, 1], 0.0),  # zero area inside a box
        ([10, 20, 30, 60], [20, 40, 40, 80], 200 / (800 + 800 - 200)),
    ]
    ious = paired_box_iou([pair[0] for pair in pairs], [pair[1] for pair in pairs])
    assert ious.dtype == torch.float64 and ious.shape == (len(pairs),)
    assert ious.tolist() == pytest.approx([pair[2] for pair in pairs], abs=1e-12)
    swapped = paired_box_iou([pair[1] for pair in pairs], [pair[0] for pair in pairs])
    assert torch.equal(ious, swapped)


def test_paired_box_iou_accepts_tensors_and_tuples():
    boxes1 = torch.tensor([[0, 0, 2, 2], [0, 0, 4, 4]], dtype=torch.float32)
    boxes2 = [(1, 0, 3, 2), (1, 1, 3, 3)]
    assert paired_box_iou(boxes1, boxes2).tolist() == pytest.approx([1 / 3, 0.25])
    assert paired_box_iou(list(boxes1), torch.tensor(boxes2)).tolist() == pytest.approx([1 / 3, 0.25])
    empty = paired_box_iou([], torch.zeros(0, 4))
    assert empty.shape == (0,) and empty.dtype == torch.float64


def test_box_iou_is_every_pair_as_torchvision_gives_it():
    import torchvision

    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(5, 2, generator=generator) * 50
    boxes1 = torch.cat([corners, corners + torch.rand(5, 2, generator=generator) * 30 + 1], dim=1).double()
    corners = torch.rand(3, 2, generator=generator) * 50
    boxes2 = torch.cat([corners, corners + torch.rand(3, 2, generator=generator) * 30 + 1], dim=1).double()
    matrix = box_iou(boxes1, boxes2)
    assert matrix.shape == (5, 3)
    torch.testing.assert_close(matrix, torchvision.ops.box_iou(boxes1, boxes2))
    torch.testing.assert_close(box_iou(boxes1[:3], boxes2).diagonal(), paired_box_iou(boxes1[:3], boxes2))
    # An inverted box has zero area here (torchvision would count a negative one).
    assert box_iou([[10, 10, 0, 0]], [[0, 0, 10, 10]]).tolist() == [[0.0]]


@pytest.mark.parametrize(
    "boxes1, boxes2, match",
    [
        ([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 1, 1]], "one to one"),
        ([[0, 0, 1]], [[0, 0, 1, 1]], "boxes1"),
        (torch.zeros(2, 5), torch.zeros(2, 5), "boxes1"),
        ([[0, 0, 1, 1]], [None], "boxes2"),
        ([[0, 0, 1, float("nan")]], [[0, 0, 1, 1]], "non-finite"),
    ],
)
def test_paired_box_iou_rejects_bad_boxes(boxes1, boxes2, match):
    with pytest.raises(ValueError, match=match):
        paired_box_iou(boxes1, boxes2)
    if match != "one to one":
        with pytest.raises(ValueError, match=match):
            box_iou(boxes1, boxes2)


def raster_iou(box1, box2, side=16):
    def mask(box):
        x1, y1, x2, y2 = box
        grid = np.zeros((side, side), dtype=bool)
        grid[y1:y2, x1:x2] = True
        return grid

    first, second = mask(box1), mask(box2)
    union = (first | second).sum()
    return (first & second).sum() / union if union else 0.0


@st.composite
def integer_boxes(draw, side=16):
    xs = sorted(draw(st.integers(0, side)) for _ in range(2))
    ys = sorted(draw(st.integers(0, side)) for _ in range(2))
    return xs[0], ys[0], xs[1], ys[1]


@FAST
@given(pairs=st.lists(st.tuples(integer_boxes(), integer_boxes()), min_size=1, max_size=5))
def test_paired_box_iou_matches_pixel_counts(pairs):
    ious = paired_box_iou([pair[0] for pair in pairs], [pair[1] for pair in pairs])
    assert ious.tolist() == pytest.approx([raster_iou(*pair) for pair in pairs], abs=1e-12)


def test_grounding_accuracy():
    target = [0, 0, 1, 1]
    # IoU exactly 0.5 is not counted: the reference requires IoU > 0.5.
    assert grounding_accuracy([[0, 0, 2, 1]], [target]) == 0.0
    assert grounding_accuracy([[0, 0, 2, 1]], [target], threshold=0.49) == 1.0
    assert grounding_accuracy([[0, 0, 1, 1], None], [target, target]) == 0.5
    assert grounding_accuracy([None, None], [target, target]) == 0.0
    predictions = [[0, 0, 1, 1], [0, 0, 1.9, 1], [5, 5, 6, 6], None]
    assert grounding_accuracy(predictions, [target] * 4) == 2 / 4
    assert grounding_accuracy(torch.tensor(predictions[:3]), torch.tensor([target] * 3)) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "predictions, targets, kwargs, match",
    [
        ([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 1, 1]], {}, "1 predictions for 2 targets"),
        ([], [], {}, "at least one"),
        ([[0, 0, 1, 1]], [None], {}, "targets"),
        ([[0, 0, 1]], [[0, 0, 1, 1]], {}, "predictions"),
        ([[0, 0, 1, 1]], [[0, 0, 1, 1]], {"threshold": 1.5}, "threshold"),
    ],
)
def test_grounding_accuracy_rejects_bad_arguments(predictions, targets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        grounding_accuracy(predictions, targets, **kwargs)


# ---------------------------------------------------------------------------------------------- drawing

GREY = (128, 128, 128)


def grey_image(width=100, height=80, mode="RGB"):
    return Image.new("RGB", (width, height), GREY).convert(mode)


def changed(before, after):
    """Boolean (height, width) mask of the pixels whose colour differs."""
    return (np.asarray(before.convert("RGB")) != np.asarray(after)).any(axis=-1)


def test_draw_boxes_draws_on_a_copy():
    image = grey_image()
    before = np.asarray(image).copy()
    drawn = draw_boxes(image, [[10, 20, 60, 70]], colors="red", width=2)
    assert drawn is not image and drawn.size == image.size and drawn.mode == "RGB"
    assert np.array_equal(np.asarray(image), before)
    pixels = np.asarray(drawn)
    # Left, right, top and bottom edges are red; inside and outside are untouched.
    for x, y in [(10, 45), (11, 45), (59, 45), (35, 20), (35, 69)]:
        assert tuple(pixels[y, x]) == (255, 0, 0), (x, y)
    for x, y in [(12, 45), (35, 45), (80, 5), (9, 45), (60, 45)]:
        assert tuple(pixels[y, x]) == GREY, (x, y)


def test_draw_boxes_labels_on_a_filled_background():
    image = grey_image()
    plain = draw_boxes(image, [[10, 30, 60, 70]], colors=(0, 0, 255))
    labelled = draw_boxes(image, [[10, 30, 60, 70]], labels=["dog"], colors=(0, 0, 255))
    above = (slice(0, 30), slice(10, 60))
    assert not changed(image, plain)[above].any()
    region = np.asarray(labelled)[above]
    # The label's background is the box colour, and its text another colour on it.
    assert (region == (0, 0, 255)).all(axis=-1).sum() > 20
    assert ((region != (0, 0, 255)).any(axis=-1) & (region != GREY).any(axis=-1)).any()


def test_draw_boxes_line_width_grows_with_the_image():
    def left_edge_thickness(side):
        image = grey_image(side, side)
        box = [side // 4, side // 4, 3 * side // 4, 3 * side // 4]
        row = changed(image, draw_boxes(image, [box]))[side // 2]
        return int(row[: side // 2].sum())

    assert left_edge_thickness(600) > left_edge_thickness(100) >= 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_draw_boxes_converts_to_rgb(mode):
    image = grey_image(mode=mode)
    before = np.asarray(image).copy()
    drawn = draw_boxes(image, [[10, 20, 60, 70]], colors="red")
    assert drawn.mode == "RGB" and image.mode == mode and drawn.size == image.size
    assert np.array_equal(np.asarray(image), before)
    assert tuple(np.asarray(drawn)[45, 10]) == (255, 0, 0)


def test_draw_boxes_clips_boxes_outside_the_image():
    image = grey_image()
    drawn = draw_boxes(image, [[-10, -10, 50, 40], [200, 200, 300, 300]], labels=["a", "b"], colors="red", width=1)
    pixels = np.asarray(drawn)
    assert tuple(pixels[30, 0]) == (255, 0, 0)  # left edge clipped to x = 0
    assert tuple(pixels[39, 25]) == (255, 0, 0)  # bottom edge inside the image
    assert tuple(pixels[30, 49]) == (255, 0, 0)  # right edge inside the image
    assert not changed(image, drawn)[45:, :].any()  # nothing drawn for the box outside
    assert not changed(image, draw_boxes(image, [[200, 200, 300, 300]]))[:, :].any()


def test_draw_boxes_saves_a_png(tmp_path):
    image = grey_image(64, 48)
    path = tmp_path / "nested" / "folder" / "boxes.png"
    drawn = draw_boxes(image, [[5, 5, 30, 30]], labels=["cat"], path=path)
    assert path.is_file()
    with Image.open(path) as reopened:
        assert reopened.format == "PNG" and reopened.size == (64, 48)
        assert np.array_equal(np.asarray(reopened.convert("RGB")), np.asarray(drawn))


def test_draw_boxes_takes_grounded_boxes():
    image = grey_image(200, 100)
    found = parse_grounding("||a cat [0.10,0.40,0.50,0.90]||", image_size=(image.height, image.width))
    drawn = draw_boxes(image, found, colors="red", width=1)
    pixels = np.asarray(drawn)
    assert tuple(pixels[60, 20]) == (255, 0, 0) and tuple(pixels[60, 99]) == (255, 0, 0)
    # The phrase is the default label: drawn above the box, which plain boxes do not get.
    above = (slice(0, 40), slice(20, 100))
    assert changed(image, drawn)[above].any()
    assert not changed(image, draw_boxes(image, [item.box for item in found], colors="red"))[above].any()
    assert not changed(image, draw_boxes(image, found, labels=[None], colors="red"))[above].any()


@pytest.mark.parametrize(
    "boxes, kwargs, match",
    [
        (parse_grounding("[0.1,0.2,0.3,0.4]"), {}, "image size was missing"),
        ([[0, 0, 10, 10]], {"labels": ["a", "b"]}, "2 labels for 1 boxes"),
        ([[0, 0, 10, 10]], {"colors": "not-a-colour"}, "colour"),
        ([[0, 0, 10, 10]], {"colors": [(0, 0, 300)]}, "colors"),
        ([[0, 0, 10, 10]], {"width": 0}, "width"),
        ([[10, 0, 0, 10]], {}, "negative width"),
        ([[0, 0, 10]], {}, "4 numbers"),
        (None, {}, "boxes is None"),
    ],
)
def test_draw_boxes_rejects_bad_arguments(boxes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        draw_boxes(grey_image(), boxes, **kwargs)


def test_draw_boxes_rejects_non_images():
    with pytest.raises(ValueError, match="PIL.Image.Image"):
        draw_boxes(np.zeros((4, 4, 3), dtype=np.uint8), [])


def test_draw_boxes_cycles_colors():
    image = grey_image(120, 40)
    boxes = [[5 + 40 * index, 5, 30 + 40 * index, 30] for index in range(3)]
    pixels = np.asarray(draw_boxes(image, boxes, colors=["red", "#00ff00"], width=1))
    assert [tuple(pixels[15, box[0]]) for box in boxes] == [(255, 0, 0), (0, 255, 0), (255, 0, 0)]
