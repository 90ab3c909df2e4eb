# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The captioning-evaluation loaders: NoCaps (COCO-format captions) and TextCaps."""

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from vlmamba.data import SOURCES, load_nocaps, load_textcaps
from vlmamba.models.tasks import build_prompt


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def rows(dataset) -> list[dict]:
    return [dataset[index] for index in range(len(dataset))]


def nocaps_file(tmp_path, images=None, annotations=None) -> Path:
    images = images or [
        {"id": 0, "file_name": "0013ea2087020901.jpg", "height": 6, "width": 8, "domain": "in-domain"},
        {"id": 1, "file_name": "00223d7b0e5d4e1b.jpg", "height": 10, "width": 4, "domain": "out-domain"},
    ]
    annotations = annotations or [
        {"image_id": 1, "id": 10, "caption": "A jellyfish in the sea."},
        {"image_id": 0, "id": 11, "caption": "A man on a horse."},
        {"image_id": 1, "id": 12, "caption": "An orange jellyfish"},
        {"image_id": 0, "id": 13, "caption": "Someone riding."},
    ]
    data = {"licenses": [], "info": {}, "images": images}
    if annotations != "none":
        data["annotations"] = annotations
    return write_json(tmp_path / "nocaps_val_4500_captions.json", data)


def test_nocaps_rows_per_image_with_captions_in_file_order(tmp_path):
    dataset = load_nocaps(nocaps_file(tmp_path), tmp_path / "images")
    assert rows(dataset) == [
        {
            "id": "0",
            "source": "nocaps",
            "task": "captioning",
            "image": str(tmp_path / "images" / "0013ea2087020901.jpg"),
            "image_size": [6, 8],
            "caption": "A man on a horse.",
            "references": ["A man on a horse.", "Someone riding."],
            "domain": "in-domain",
        },
        {
            "id": "1",
            "source": "nocaps",
            "task": "captioning",
            "image": str(tmp_path / "images" / "00223d7b0e5d4e1b.jpg"),
            "image_size": [10, 4],
            "caption": "A jellyfish in the sea.",
            "references": ["A jellyfish in the sea.", "An orange jellyfish"],
            "domain": "out-domain",
        },
    ]
    assert SOURCES["nocaps"] is load_nocaps
    prompt = build_prompt(dataset[0], for_generation=True)
    assert prompt.text == "<image>Provide a one-sentence caption for the provided image.\n"


def test_nocaps_image_info_without_annotations_is_for_generation(tmp_path):
    dataset = load_nocaps(nocaps_file(tmp_path, annotations="none"), tmp_path)
    assert len(dataset) == 2 and "references" not in dataset.column_names


GOOD_CAPTIONS = [
    {"image_id": 0, "id": 1, "caption": "A man on a horse."},
    {"image_id": 1, "id": 2, "caption": "A dog."},
]


@pytest.mark.parametrize(
    "images, annotations, parts",
    [
        (None, [*GOOD_CAPTIONS, {"image_id": 5, "id": 3, "caption": "x"}], ["annotations", "row 2", "(id '3')", "5"]),
        (None, [{"image_id": 0, "id": 3}, *GOOD_CAPTIONS], ["annotations", "row 0", "field 'caption' is missing"]),
        (
            [{"id": 0, "file_name": "a.jpg"}, {"id": 1}],
            GOOD_CAPTIONS,
            ["row 1", "(id '1')", "field 'file_name' is missing"],
        ),
        (
            [{"id": 0, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
            GOOD_CAPTIONS[:1],
            ["row 1", "(id '1')", "field 'id' has no (readable) caption"],
        ),
    ],
)
def test_nocaps_malformed_records_name_file_row_and_field(tmp_path, images, annotations, parts):
    path = nocaps_file(tmp_path, images=images, annotations=annotations)
    with pytest.raises(ValueError) as error:
        load_nocaps(path, tmp_path)
    for part in [str(path), *parts]:
        assert part in str(error.value), (part, str(error.value))
    report = []
    dataset = load_nocaps(path, tmp_path, skip_bad=True, report=report)
    assert len(report) == 1 and report[0]["reason"] == str(error.value)
    assert len(dataset) == (2 if "annotations" in parts else 1)


def test_nocaps_check_images_compares_sizes(tmp_path, caplog):
    path = nocaps_file(tmp_path)
    Image.new("RGB", (8, 6)).save(tmp_path / "0013ea2087020901.jpg")
    Image.new("RGB", (5, 5)).save(tmp_path / "00223d7b0e5d4e1b.jpg")
    with pytest.raises(ValueError, match=r"row 1 \(id '1'\): field 'file_name' image .* is 5x5"):
        load_nocaps(path, tmp_path, check_images=True)
    with caplog.at_level(logging.WARNING, logger="vlmamba.data"):
        assert [row["id"] for row in rows(load_nocaps(path, tmp_path, check_images=True, skip_bad=True))] == ["0"]


def textcaps_entries(with_captions=True):
    entries = []
    for image_id, captions in (("011e7e629fb9ae7b", ["A sign says stop.", "A red stop sign"]), ("0a1b", ["A can."])):
        for number, caption in enumerate(captions):
            entry = {
                "image_id": image_id,
                "image_name": image_id,
                "image_width": 8,
                "image_height": 6,
                "flickr_original_url": "https://example.invalid/x.jpg",
                "set_name": "val",
            }
            if with_captions:
                entry.update(caption_id=len(entries) + 100, caption_str=caption, reference_strs=captions)
            entries.append(entry)
    return entries


def test_textcaps_val_rows_per_image_with_reference_strs(tmp_path):
    path = write_json(tmp_path / "TextCaps_0.1_val.json", {"dataset_type": "val", "data": textcaps_entries()})
    dataset = load_textcaps(path, tmp_path / "train_images")
    assert rows(dataset) == [
        {
            "id": "011e7e629fb9ae7b",
            "source": "textcaps",
            "task": "captioning",
            "image": str(tmp_path / "train_images" / "011e7e629fb9ae7b.jpg"),
            "image_size": [6, 8],
            "caption": "A sign says stop.",
            "references": ["A sign says stop.", "A red stop sign"],
        },
        {
            "id": "0a1b",
            "source": "textcaps",
            "task": "captioning",
            "image": str(tmp_path / "train_images" / "0a1b.jpg"),
            "image_size": [6, 8],
            "caption": "A can.",
            "references": ["A can."],
        },
    ]
    assert SOURCES["textcaps"] is load_textcaps


def test_textcaps_train_rows_per_caption_and_references_from_captions(tmp_path):
    entries = textcaps_entries()
    path = write_json(tmp_path / "TextCaps_0.1_train.json", {"dataset_type": "train", "data": entries})
    assert [(row["id"], row["caption"]) for row in rows(load_textcaps(path, tmp_path))] == [
        ("100", "A sign says stop."),
        ("101", "A red stop sign"),
        ("102", "A can."),
    ]
    for entry in entries:
        del entry["reference_strs"]
    path = write_json(tmp_path / "val.json", {"dataset_type": "val", "data": entries})
    assert [row["references"] for row in rows(load_textcaps(path, tmp_path))] == [
        ["A sign says stop.", "A red stop sign"],
        ["A can."],
    ]


def test_textcaps_test_split_has_no_references(tmp_path):
    path = write_json(tmp_path / "test.json", {"dataset_type": "test", "data": textcaps_entries(with_captions=False)})
    dataset = load_textcaps(path, tmp_path)
    assert [(row["id"], row["references"], row["caption"]) for row in rows(dataset)] == [
        ("011e7e629fb9ae7b", None, None),
        ("0a1b", None, None),
    ]


def test_textcaps_malformed_entry_names_file_row_and_field(tmp_path):
    entries = textcaps_entries()
    entries[2]["reference_strs"] = ["fine", 7]
    path = write_json(tmp_path / "val.json", {"dataset_type": "val", "data": entries})
    with pytest.raises(ValueError) as error:
        load_textcaps(path, tmp_path)
    message = str(error.value)
    assert str(path) in message and "row 2" in message and "(id '0a1b')" in message and "reference_strs[1]" in message
    report = []
    assert len(load_textcaps(path, tmp_path, skip_bad=True, report=report)) == 1 and len(report) == 1
    with pytest.raises(ValueError, match="per_caption must be a bool"):
        load_textcaps(path, tmp_path, per_caption="yes")
    with pytest.raises(ValueError, match="expected a 'data' list"):
        load_textcaps(write_json(tmp_path / "bad.json", {"annotations": []}), tmp_path)
