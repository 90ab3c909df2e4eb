"""Synthetic shapes scenes, their examples and the dataset (`vlmamba.data.shapes`)."""

import io
import random
import re
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from vlmamba.data.shapes import (
    BACKGROUND,
    COLOURS,
    COLUMNS,
    DEFAULT_TASKS,
    QUESTION_TYPES,
    SHAPES,
    SHAPES_TASKS,
    chance_levels,
    make_scene,
    make_shapes_dataset,
    margin_for,
    scene_examples,
    scene_rng,
    size_range,
    split_by_scene,
)
from vlmamba.models.boxes import parse_grounding
from vlmamba.models.tasks import build_prompt


EOS = "<|endoftext|>"
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4}
# The question templates, written out independently of the module: (type, pattern).
QUESTIONS = (
    ("colour", re.compile(r"what colour is the (\w+)\?")),
    ("shape", re.compile(r"what shape is the (\w+) object\?")),
    ("count", re.compile(r"how many shapes are there\?")),
    ("position", re.compile(r"is the (\w+) (\w+) on the left or the right\?")),
)


def make_scenes(count, image_size=64, max_shapes=3, seed=0):
    rng = random.Random(seed)
    return [make_scene(rng, image_size, max_shapes) for _ in range(count)]


def plain(value):
    """Tuples as lists, recursively, as a dataset returns them."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def expected_caption(objects):
    names = [f"a {item.colour} {item.shape}" for item in objects]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def named(objects, colour=None, shape=None):
    return [item for item in objects if colour in (None, item.colour) and shape in (None, item.shape)]


def float_box(item):
    return [float(value) for value in item.box]


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(150)


@pytest.fixture(scope="module")
def dataset():
    return make_shapes_dataset(24, seed=3, tasks=SHAPES_TASKS, examples_per_task=2)


def rows_of(dataset):
    return list(dataset.remove_columns("image"))


# Scenes


def test_scene_layout(scenes):
    counts = Counter(len(scene.objects) for scene in scenes)
    assert set(counts) == {1, 2, 3} and min(counts.values()) >= 30, counts
    margin = margin_for(64)
    for scene in scenes:
        assert scene.image.mode == "RGB" and scene.image.size == (64, 64) and scene.image_size == (64, 64)
        objects = scene.objects
        assert len({(item.colour, item.shape) for item in objects}) == len(objects)
        centres = [(item.box[0] + item.box[2], item.box[1] + item.box[3]) for item in objects]
        assert centres == sorted(centres)
        for item in objects:
            assert item.colour in COLOURS and item.shape in SHAPES
            x1, y1, x2, y2 = item.box
            assert margin <= x1 < x2 <= 64 - margin and margin <= y1 < y2 <= 64 - margin
        for first, a in enumerate(objects):
            for b in objects[first + 1 :]:
                apart = (a.box[2] + margin <= b.box[0] or b.box[2] + margin <= a.box[0]
                         or a.box[3] + margin <= b.box[1] or b.box[3] + margin <= a.box[1])
                assert apart, (a, b)


def test_boxes_are_tight_and_surrounded_by_background(scenes):
    margin = margin_for(64)
    for scene in scenes:
        pixels = np.asarray(scene.image)
        palette = {tuple(colour) for colour in COLOURS.values()} | {BACKGROUND}
        assert {tuple(pixel) for pixel in pixels.reshape(-1, 3)} <= palette
        covered = np.zeros(pixels.shape[:2], dtype=bool)
        for item in scene.objects:
            x1, y1, x2, y2 = item.box
            inside = (pixels[y1:y2, x1:x2] == COLOURS[item.colour]).all(-1)
            # Every edge row and column of the box holds a pixel of the shape.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            # Inside the box: the shape's colour or the background.
            background = (pixels[y1:y2, x1:x2] == BACKGROUND).all(-1)
            assert (inside | background).all()
            ring = (pixels[y1 - margin : y2 + margin, x1 - margin : x2 + margin] == BACKGROUND).all(-1)
            ring[margin:-margin, margin:-margin] = True
            assert ring.all(), item
            covered[y1:y2, x1:x2] = True
        # No shape pixel lies outside every box.
        assert (pixels[~covered] == BACKGROUND).all()


def test_shapes_look_like_their_names(scenes):
    low, high = size_range(64)
    for scene in scenes:
        pixels = np.asarray(scene.image)
        for item in scene.objects:
            x1, y1, x2, y2 = item.box
            assert x2 - x1 == y2 - y1 and low <= x2 - x1 <= high
            filled = (pixels[y1:y2, x1:x2] == COLOURS[item.colour]).all(-1)
            fill = filled.mean()
            if item.shape == "square":
                assert fill == 1.0
            elif item.shape == "circle":
                assert 0.7 < fill < 0.85 and not filled[0, 0] and not filled[-1, -1]
            else:
                assert 0.45 < fill < 0.65 and filled[-1].all() and filled[0].sum() <= 2


@pytest.mark.parametrize("image_size, max_shapes", [(32, 3), (96, 2), (64, 4), (64, 1)])
def test_image_size_and_max_shapes(image_size, max_shapes):
    low, high = size_range(image_size)
    counts = Counter()
    for scene in make_scenes(40, image_size, max_shapes):
        assert scene.image.size == (image_size, image_size)
        counts[len(scene.objects)] += 1
        for item in scene.objects:
            assert low <= item.box[2] - item.box[0] <= high
    assert set(counts) == set(range(1, max_shapes + 1))


# Examples


def test_examples_match_the_scene(scenes):
    rng = random.Random(1)
    for scene in scenes:
        objects = scene.objects
        rows = scene_examples(scene, SHAPES_TASKS, rng, examples_per_task=4)
        by_task = Counter(row["task"] for row in rows)
        assert by_task["captioning"] == by_task["grounded_captioning"] == 1
        assert by_task["grounding"] == by_task["dense_captioning"] == len(objects)
        assert by_task["image_text_match"] == 4
        for row in rows:
            assert row["image"] is scene.image and tuple(row["image_size"]) == (64, 64)
            task = row["task"]
            if task == "captioning":
                assert row["caption"] == expected_caption(objects)
            elif task == "grounding":
                colour, shape = re.fullmatch(r"the (\w+) (\w+)", row["expression"]).groups()
                (item,) = named(objects, colour, shape)
                assert row["box"] == float_box(item)
            elif task == "dense_captioning":
                (item,) = [item for item in objects if float_box(item) == row["box"]]
                assert row["phrase"] == f"{item.colour} {item.shape}"
            elif task == "image_text_match":
                if row["answer"]:
                    assert row["caption"] == expected_caption(objects)
                else:
                    said = re.findall(r"a (\w+) (\w+)", row["caption"])
                    truth = [(item.colour, item.shape) for item in objects]
                    assert len(said) == len(truth) and Counter(said) != Counter(truth)
                    changes = [(a, b) for a, b in zip(said, truth) if a != b]
                    assert len(changes) == 1 and (changes[0][0][0] == changes[0][1][0]) != (
                        changes[0][0][1] == changes[0][1][1]
                    )
            elif task == "vqa":
                check_answer(scene, row)


def check_answer(scene, row):
    objects = scene.objects
    matches = [(kind, pattern.fullmatch(row["question"])) for kind, pattern in QUESTIONS]
    ((kind, match),) = [(kind, match) for kind, match in matches if match]
    assert row["question_type"] == kind
    answer = row["answer"]
    if kind == "colour":
        (item,) = named(objects, shape=match.group(1))
        assert answer == item.colour
    elif kind == "shape":
        (item,) = named(objects, colour=match.group(1))
        assert answer == item.shape
    elif kind == "count":
        assert NUMBERS[answer] == len(objects)
    else:
        (item,) = named(objects, *match.groups())
        width = scene.image.width
        assert (answer == "left" and item.box[2] <= width / 2) or (answer == "right" and item.box[0] >= width / 2)


def test_vqa_questions_are_distinct_and_cover_every_type(scenes):
    rng = random.Random(2)
    types, answers = Counter(), Counter()
    for scene in scenes:
        rows = scene_examples(scene, ["vqa"], rng, examples_per_task=3)
        assert len({row["question"] for row in rows}) == len(rows) >= 2
        for row in rows:
            check_answer(scene, row)
            types[row["question_type"]] += 1
            answers[row["answer"]] += 1
    assert set(types) == set(QUESTION_TYPES)
    assert {"left", "right", "one", "two", "three", *COLOURS, *SHAPES} <= set(answers)
    assert set(chance_levels()) == {*QUESTION_TYPES, "image_text_match"}
    assert chance_levels()["colour"] == 1 / 4 and chance_levels(2)["count"] == 1 / 2


def test_grounded_caption_spans_name_their_shapes(scenes):
    for scene in scenes:
        (row,) = scene_examples(scene, ["grounded_captioning"])
        caption = row["caption"]
        assert caption == expected_caption(scene.objects)
        assert len(row["entities"]) == len(scene.objects)
        for entity, item in zip(row["entities"], scene.objects):
            start, end = entity["span"]
            assert caption[start:end] == f"{item.colour} {item.shape}"
            assert entity["boxes"] == [float_box(item)]
        # The target written by the template reads back as the objects' phrases and boxes.
        target = build_prompt(row).target
        found = parse_grounding(target.removesuffix(EOS), image_size=scene.image_size)
        assert [box.phrase for box in found] == [f"{item.colour} {item.shape}" for item in scene.objects]
        for box, item in zip(found, scene.objects):
            assert box.box == pytest.approx(item.box, abs=0.33)


def test_every_row_builds_a_prompt(dataset):
    for index, row in enumerate(rows_of(dataset)):
        for instruction_first in (False, True):
            prompt = build_prompt(row, instruction_first=instruction_first, index=index)
            assert prompt.target.endswith(EOS)
            generation = build_prompt(row, for_generation=True, instruction_first=instruction_first, index=index)
            assert generation.text == prompt.prompt
        target = build_prompt(row).target
        if row["task"] == "vqa":
            assert target == row["answer"].capitalize() + "." + EOS
        elif row["task"] == "image_text_match":
            assert target == f"{row['answer']}.{EOS}"
        elif row["task"] == "captioning":
            assert target == row["caption"].capitalize() + "." + EOS


def test_scene_examples_need_valid_arguments(scenes):
    with pytest.raises(ValueError, match="rng is required"):
        scene_examples(scenes[0], ["vqa"])
    with pytest.raises(ValueError, match="Unknown shapes task 'chat'"):
        scene_examples(scenes[0], ["chat"], random.Random(0))
    with pytest.raises(ValueError, match="examples_per_task"):
        scene_examples(scenes[0], DEFAULT_TASKS, random.Random(0), examples_per_task=0)
    with pytest.raises(ValueError, match="image_size"):
        make_scene(random.Random(0), image_size=16)
    with pytest.raises(ValueError, match="max_shapes"):
        make_scene(random.Random(0), max_shapes=5)
    with pytest.raises(ValueError, match="rng must be a random.Random"):
        make_scene(0)


# Dataset


def test_same_seed_same_dataset_and_other_seed_differs(dataset):
    again = make_shapes_dataset(24, seed=3, tasks=SHAPES_TASKS, examples_per_task=2)
    other = make_shapes_dataset(24, seed=4, tasks=SHAPES_TASKS, examples_per_task=2)
    raw = [data.cast_column("image", datasets.Image(decode=False)) for data in (dataset, again, other)]
    images = [[image["bytes"] for image in data["image"]] for data in raw]
    assert images[0] == images[1] and images[0] != images[2]
    assert rows_of(dataset) == rows_of(again) and rows_of(dataset) != rows_of(other)
    for row in range(0, len(dataset), 7):
        assert np.array_equal(np.asarray(dataset[row]["image"]), np.asarray(again[row]["image"]))


def test_dataset_rows_are_the_scene_examples(dataset):
    rows = rows_of(dataset)
    images = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    position = 0
    for index in range(24):
        rng = scene_rng(3, index)
        scene = make_scene(rng)
        expected = scene_examples(scene, SHAPES_TASKS, rng, examples_per_task=2)
        image = Image.open(io.BytesIO(images[position]["bytes"]))
        assert np.array_equal(np.asarray(image), np.asarray(scene.image))
        for example in expected:
            example = {name: plain(example.get(name)) for name in COLUMNS if name != "image"}
            assert rows[position] == {**example, "scene": index}
            position += 1
    assert position == len(rows)
    # Scene i does not depend on how many scenes are made.
    assert rows_of(make_shapes_dataset(5, seed=3, tasks=SHAPES_TASKS, examples_per_task=2)) == [
        row for row in rows if row["scene"] < 5
    ]


def test_dataset_features():
    data = make_shapes_dataset(6, seed=1)
    assert data.column_names == list(COLUMNS)
    assert isinstance(data.features["image"], datasets.Image)
    assert data.features["answer"] == datasets.Value("string")
    assert Counter(data["task"]) == {task: 6 for task in DEFAULT_TASKS}
    row = data[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (64, 64) and row["image"].mode == "RGB"
    assert row["task"] == "captioning" and row["image_size"] == [64, 64]
    assert all(row[name] is None for name in ("question", "answer", "question_type", "expression", "phrase", "box",
                                              "entities"))
    # A decoded row (with its PIL image) builds as well.
    assert build_prompt(row).target.endswith(EOS)
    matching = make_shapes_dataset(4, tasks=["image_text_match"])
    assert matching.features["answer"] == datasets.Value("bool")
    assert set(matching["answer"]) <= {True, False}


@pytest.mark.skipif(not hasattr(datasets, "Json"), reason="datasets < 4.7 has no Json feature")
def test_mixed_answers_are_json():
    data = make_shapes_dataset(20, tasks=["vqa", "image_text_match"])
    assert isinstance(data.features["answer"], datasets.Json)
    rows = rows_of(data)
    assert {type(row["answer"]) for row in rows if row["task"] == "vqa"} == {str}
    assert {row["answer"] for row in rows if row["task"] == "image_text_match"} == {True, False}
    for row in rows:
        build_prompt(row)


def test_filter_and_split_by_scene(dataset):
    scene_three = dataset.filter(lambda scene: scene == 3, input_columns="scene")
    assert len(scene_three) == Counter(dataset["scene"])[3] > 0
    assert set(scene_three["scene"]) == {3}
    splits = split_by_scene(dataset, test_fraction=0.25, seed=0)
    train, test = set(splits["train"]["scene"]), set(splits["test"]["scene"])
    assert len(test) == 6 and not train & test and train | test == set(range(24))
    assert len(splits["train"]) + len(splits["test"]) == len(dataset)
    assert list(split_by_scene(dataset, 0.25, seed=0)["test"]["scene"]) == list(splits["test"]["scene"])
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_scene(dataset, 1.0)
    with pytest.raises(ValueError, match="both splits"):
        split_by_scene(dataset, 0.01)
    with pytest.raises(ValueError, match="no 'scene' column"):
        split_by_scene(dataset.remove_columns("scene"))


def test_make_shapes_dataset_checks_arguments():
    with pytest.raises(ValueError, match="num_scenes"):
        make_shapes_dataset(0)
    with pytest.raises(ValueError, match="tasks names a task twice"):
        make_shapes_dataset(2, tasks=["vqa", "vqa"])
    with pytest.raises(ValueError, match="tasks is empty"):
        make_shapes_dataset(2, tasks=[])
