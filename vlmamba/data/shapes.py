# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Synthetic shapes: small scenes of coloured shapes with templated examples of every task, for offline training.

A tiny model trained from scratch on a few CPU cores must be able to learn these, so the world is small and the
language fixed. A scene is a square image (64 px by default) of a plain light background with 1 to `max_shapes`
shapes, each a circle, square or triangle in red, green, blue or yellow, drawn without anti-aliasing (every pixel is
the background or one of the four colours). Shapes are 22-40% of the image side (14-26 px at 64 px), lie at least
`margin` pixels (2 at 64 px) from each other and from the image border, and no two shapes of a scene share both
colour and shape, so every referring expression names one shape.

Objects are ordered left to right (by box centre, then top to bottom); captions follow that order. Boxes are pixel XYXY
tight around the drawn pixels, with exclusive far edges: the shape covers columns `x1 .. x2 - 1` and rows
`y1 .. y2 - 1` (the convention of `vlmamba.grounding.draw_boxes`).

Examples are `vlmamba.models.tasks` rows (see that module for the fields); text is lower case and unpunctuated, as
`build_prompt` normalizes it ("red" -> "Red."):

- `captioning`: `caption`, the objects joined: "a red circle", "a red circle and a blue square", "a red circle, a blue
  square and a green triangle".
- `vqa`: `question`, `answer` (one word) and `question_type`, which is not a task field but lets accuracy be
  reported per type:

  - `colour`: "what colour is the circle?" -> red, green, blue or yellow; chance 1/4.
  - `shape`: "what shape is the green object?" -> circle, square or triangle; chance 1/3.
  - `count`: "how many shapes are there?" -> one, two, three (or four); chance 1/max_shapes, 1/3 by default.
  - `position`: "is the red circle on the left or the right?" -> left or right; chance 1/2.

  A colour question is asked only about a shape that is alone of its kind in the scene, a shape question only about a
  colour that is, and a position question only about a shape lying wholly in the left or the right half of the image.
  Each question picks its type uniformly among the types the scene allows (`chance_levels` gives the numbers).
  Colours, shapes and sides are uniform over their values, so a model that ignores the image cannot beat chance on
  them. Counts are nearly so: the number of shapes is uniform, but scenes of three shapes allow more question types, so
  their count question is picked less often (about 35/37/28% one/two/three at the defaults).
- `grounding`: `expression` "the red circle" and its `box`. A detector ignoring the words, picking one of the scene's
  shapes at random, scores 1/n on an n-shape scene (about 0.61 for `max_shapes=3`).
- `grounded_captioning`: the caption with one entity per object, its `span` covering "red circle" (colour and shape,
  without the article) and `boxes` holding its box.
- `dense_captioning`: `box` and `phrase` "red circle".
- `image_text_match`: `caption` and `answer`, `True` for the scene's caption and `False` for a caption with one
  object's colour or shape changed to a pair that is not in the scene (chance 1/2; a shorter caption naming only some
  of the objects is never used, since it would not be clearly false).

`make_shapes_dataset` gives a `datasets.Dataset` with one row per example and the columns `scene` (the scene index,
to split by scene), `task`, `image` (a `datasets.Image()` of PNG bytes), `image_size` (height, width) and the task
fields; a row holds `None` in the fields its task does not use. `answer` is a string column, a bool column when
`image_text_match` is the only task using it, and a `datasets.Json()` column (datasets >= 4.7) when `vqa` and
`image_text_match` are both asked for, since Arrow columns cannot mix strings and bools.

Scene `i` of seed `s` comes from `scene_rng(s, i)` alone, so it does not depend on `num_scenes`: held-out data is
either a dataset made with another seed, or `split_by_scene` of one dataset.
"""

import io
import json
import numbers
import random
from collections import Counter
from dataclasses import dataclass

import datasets
from PIL import Image, ImageDraw


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 0),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUND = (240, 240, 240)
NUMBER_WORDS = ("one", "two", "three", "four")
QUESTION_TYPES = ("colour", "shape", "count", "position")
SHAPES_TASKS = ("captioning", "vqa", "grounding", "grounded_captioning", "dense_captioning", "image_text_match")
DEFAULT_TASKS = ("captioning", "vqa", "grounding", "grounded_captioning")
DEFAULT_IMAGE_SIZE = 64
DEFAULT_MAX_SHAPES = 3
# Shapes below about 7 px are hard to tell apart; 32 px keeps the smallest shape at that size.
MIN_IMAGE_SIZE = 32
# Shape sides as fractions of the image side: 14 to 26 px at 64 px.
SIZE_RANGE = (0.22, 0.40)
# Random positions tried per shape before the scene's layout starts over, and layouts tried before giving up.
_PLACEMENT_TRIES = 50
_LAYOUT_TRIES = 1000
COLUMNS = (
    "scene",
    "task",
    "image",
    "image_size",
    "caption",
    "question",
    "answer",
    "question_type",
    "expression",
    "phrase",
    "box",
    "entities",
)


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene.

    Args:
        colour: a key of `COLOURS`.
        shape: one of `SHAPES`.
        box: pixel XYXY tight around the drawn pixels, far edges exclusive.
    """

    colour: str
    shape: str
    box: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """Colour and shape, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """A drawn scene.

    Args:
        image: the RGB `PIL.Image.Image`.
        objects: its shapes, left to right (by box centre x, then y).
    """

    image: Image.Image
    objects: list[SceneObject]

    @property
    def image_size(self) -> tuple[int, int]:
        """`(height, width)` of the image."""
        return self.image.height, self.image.width


def margin_for(image_size: int) -> int:
    """The smallest gap, in pixels, between two shapes and between a shape and the image border."""
    return max(2, round(image_size / 32))


def size_range(image_size: int) -> tuple[int, int]:
    """The smallest and largest shape side, in pixels, of an image of side `image_size`."""
    return round(SIZE_RANGE[0] * image_size), round(SIZE_RANGE[1] * image_size)


def chance_levels(max_shapes: int = DEFAULT_MAX_SHAPES) -> dict[str, float]:
    """Exact-match accuracy of guessing, per VQA question type and for `image_text_match`."""
    _check_int("max_shapes", max_shapes, 1, len(NUMBER_WORDS))
    return {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "count": 1 / max_shapes, "position": 1 / 2,
            "image_text_match": 1 / 2}


def scene_rng(seed: int, index: int) -> random.Random:
    """The random generator of scene `index` of a dataset made with `seed` (its scene and its examples)."""
    # A string seed is hashed with SHA-512, the same on every platform and Python run.
    return random.Random(f"vlmamba-shapes:{seed}:{index}")


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
        high is not None and value > high
    ):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}.")
    return int(value)


def _check_tasks(tasks) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError(f"tasks is empty; choose from {SHAPES_TASKS}.")
    for task in tasks:
        if task not in SHAPES_TASKS:
            raise ValueError(f"Unknown shapes task {task!r}; choose from {SHAPES_TASKS}.")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks names a task twice: {tasks!r}.")
    return tasks


def _layout(rng: random.Random, image_size: int, count: int) -> list[tuple[int, int, int]]:
    """`count` squares `(x, y, side)` inside the border margin and at least a margin apart."""
    low, high = size_range(image_size)
    margin = margin_for(image_size)
    for _ in range(_LAYOUT_TRIES):
        squares = []
        for _ in range(count):
            side = rng.randint(low, high)
            for _ in range(_PLACEMENT_TRIES):
                x = rng.randint(margin, image_size - margin - side)
                y = rng.randint(margin, image_size - margin - side)
                if all(
                    x + side + margin <= ox or ox + oside + margin <= x or y + side + margin <= oy
                    or oy + oside + margin <= y
                    for ox, oy, oside in squares
                ):
                    squares.append((x, y, side))
                    break
            else:
                break
        if len(squares) == count:
            return squares
    raise RuntimeError(f"Could not place {count} shapes in a {image_size} px image; use fewer shapes.")


def _draw_mask(shape: str, side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    last = side - 1
    if shape == "circle":
        draw.ellipse((0, 0, last, last), fill=255)
    elif shape == "square":
        draw.rectangle((0, 0, last, last), fill=255)
    else:
        draw.polygon([(0, last), (last, last), (last / 2, 0)], fill=255)
    return mask


def make_scene(rng: random.Random, image_size: int = DEFAULT_IMAGE_SIZE, max_shapes: int = DEFAULT_MAX_SHAPES) -> Scene:
    """Draws a scene of 1 to `max_shapes` shapes (the number uniform) of distinct (colour, shape) pairs.

    Args:
        rng: a `random.Random`, the only source of randomness.
        image_size: side of the square image in pixels, at least `MIN_IMAGE_SIZE`.
        max_shapes: the most shapes a scene holds, in [1, 4].

    Returns:
        A `Scene` whose objects are ordered left to right.
    """
    if not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random, got {type(rng).__name__}.")
    _check_int("image_size", image_size, MIN_IMAGE_SIZE)
    _check_int("max_shapes", max_shapes, 1, len(NUMBER_WORDS))
    count = rng.randint(1, max_shapes)
    kinds = rng.sample([(colour, shape) for colour in COLOURS for shape in SHAPES], count)
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    objects = []
    for (colour, shape), (x, y, side) in zip(kinds, _layout(rng, image_size, count)):
        mask = _draw_mask(shape, side)
        left, top, right, bottom = mask.getbbox()
        image.paste(COLOURS[colour], (x, y, x + side, y + side), mask)
        objects.append(SceneObject(colour, shape, (x + left, y + top, x + right, y + bottom)))
    objects.sort(key=lambda item: (item.box[0] + item.box[2], item.box[1] + item.box[3]))
    return Scene(image=image, objects=objects)


def _caption(objects: list[SceneObject]) -> tuple[str, list[tuple[int, int]]]:
    """The caption of `objects` in their order, and the span of each object's name in it."""
    text, spans = "", []
    for position, item in enumerate(objects):
        if position:
            text += " and " if position == len(objects) - 1 else ", "
        text += "a "
        spans.append((len(text), len(text) + len(item.name)))
        text += item.name
    return text, spans


def _box(item: SceneObject) -> list[float]:
    return [float(value) for value in item.box]


def _questions(scene: Scene) -> dict[str, list[tuple[str, str]]]:
    """The `(question, answer)` pairs the scene allows, by question type."""
    objects = scene.objects
    shapes = Counter(item.shape for item in objects)
    colours = Counter(item.colour for item in objects)
    half = scene.image.width / 2
    sides = [(item, "left" if item.box[2] <= half else "right") for item in objects
             if item.box[2] <= half or item.box[0] >= half]
    return {
        "colour": [(f"what colour is the {item.shape}?", item.colour) for item in objects if shapes[item.shape] == 1],
        "shape": [(f"what shape is the {item.colour} object?", item.shape) for item in objects
                  if colours[item.colour] == 1],
        "count": [("how many shapes are there?", NUMBER_WORDS[len(objects) - 1])],
        "position": [(f"is the {item.name} on the left or the right?", side) for item, side in sides],
    }


def _vqa(scene: Scene, rng: random.Random, count: int) -> list[dict]:
    candidates = _questions(scene)
    rows = []
    for _ in range(count):
        types = [kind for kind in QUESTION_TYPES if candidates[kind]]
        if not types:
            break
        kind = rng.choice(types)
        question, answer = candidates[kind].pop(rng.randrange(len(candidates[kind])))
        rows.append({"question": question, "answer": answer, "question_type": kind})
    return rows


def _negative_captions(objects: list[SceneObject]) -> dict[str, list[str]]:
    """Captions with one object's colour (or shape) changed to a pair the scene lacks, by what was changed."""
    present = {(item.colour, item.shape) for item in objects}
    changed = {"colour": [], "shape": []}
    for position, item in enumerate(objects):
        options = [("colour", (colour, item.shape)) for colour in COLOURS]
        options += [("shape", (item.colour, shape)) for shape in SHAPES]
        for kind, pair in options:
            if pair not in present:
                swapped = [*objects[:position], SceneObject(*pair, item.box), *objects[position + 1 :]]
                changed[kind].append(_caption(swapped)[0])
    return changed


def _image_text_match(scene: Scene, rng: random.Random, count: int) -> list[dict]:
    caption = _caption(scene.objects)[0]
    negatives = _negative_captions(scene.objects)
    rows, truth = [], rng.random() < 0.5
    for _ in range(count):
        kinds = [kind for kind in ("colour", "shape") if negatives[kind]]
        if truth or not kinds:
            rows.append({"caption": caption, "answer": True})
        else:
            kind = rng.choice(kinds)
            rows.append({"caption": negatives[kind].pop(rng.randrange(len(negatives[kind]))), "answer": False})
        truth = not truth
    return rows


def scene_examples(scene: Scene, tasks=DEFAULT_TASKS, rng: random.Random | None = None,
                   examples_per_task: int = 1) -> list[dict]:
    """The examples of `tasks` about `scene`, as task rows (see the module docstring for the templates).

    Args:
        scene: a `Scene` from `make_scene`.
        tasks: a sequence of `SHAPES_TASKS` (or one task name).
        rng: a `random.Random` choosing questions, objects and false captions; required for `vqa`, `grounding`,
            `dense_captioning` and `image_text_match`.
        examples_per_task: examples of each task, at most; all distinct, so a task with fewer possible examples gives
            fewer: one caption and one grounded caption per scene, one grounding and one dense caption per shape, the
            questions the scene allows. `image_text_match` alternates true and false captions starting at random;
            its true examples repeat the one caption.

    Returns:
        A list of dicts, grouped by task in the order of `tasks`, each with `task`, `image` (the scene's PIL image
        itself, shared by the rows: do not modify it), `image_size` `(height, width)` and the task's fields only.
        Boxes are lists of 4 floats; spans are `(start, end)` tuples.
    """
    tasks = _check_tasks(tasks)
    count = _check_int("examples_per_task", examples_per_task, 1)
    if rng is None and set(tasks) - {"captioning", "grounded_captioning"}:
        raise ValueError(f"rng is required for the tasks {tasks!r}; pass a random.Random.")
    caption, spans = _caption(scene.objects)
    rows = []
    for task in tasks:
        if task == "captioning":
            fields = [{"caption": caption}]
        elif task == "grounded_captioning":
            entities = [{"span": span, "boxes": [_box(item)]} for span, item in zip(spans, scene.objects)]
            fields = [{"caption": caption, "entities": entities}]
        elif task == "vqa":
            fields = _vqa(scene, rng, count)
        elif task in ("grounding", "dense_captioning"):
            chosen = rng.sample(scene.objects, min(count, len(scene.objects)))
            if task == "grounding":
                fields = [{"expression": f"the {item.name}", "box": _box(item)} for item in chosen]
            else:
                fields = [{"box": _box(item), "phrase": item.name} for item in chosen]
        else:
            fields = _image_text_match(scene, rng, count)
        rows.extend({"task": task, "image": scene.image, "image_size": scene.image_size, **row} for row in fields)
    return rows


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _answer_feature(tasks: tuple[str, ...]):
    if "vqa" in tasks and "image_text_match" in tasks:
        if not hasattr(datasets, "Json"):
            raise ValueError(
                f"vqa (string answers) and image_text_match (bool answers) in one dataset need datasets >= 4.7 for "
                f"its Json feature; datasets {datasets.__version__} is installed. Upgrade it, or make the two tasks "
                "in separate datasets."
            )
        return datasets.Json()
    return datasets.Value("bool" if "image_text_match" in tasks else "string")


def shapes_features(tasks=DEFAULT_TASKS) -> datasets.Features:
    """The features of `make_shapes_dataset(..., tasks=tasks)` (only the type of `answer` depends on `tasks`)."""
    tasks = _check_tasks(tasks)
    box = datasets.Sequence(datasets.Value("float32"), length=4)
    return datasets.Features({
        "scene": datasets.Value("int64"),
        "task": datasets.Value("string"),
        "image": datasets.Image(),
        "image_size": datasets.Sequence(datasets.Value("int32"), length=2),
        "caption": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": _answer_feature(tasks),
        "question_type": datasets.Value("string"),
        "expression": datasets.Value("string"),
        "phrase": datasets.Value("string"),
        "box": box,
        # A plain list, not `Sequence`: datasets < 4 turns a `Sequence` of dicts into a dict of lists.
        "entities": [{"span": datasets.Sequence(datasets.Value("int32"), length=2), "boxes": [box]}],
    })


def make_shapes_dataset(
    num_scenes: int,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    tasks=DEFAULT_TASKS,
    max_shapes: int = DEFAULT_MAX_SHAPES,
    examples_per_task: int = 1,
) -> datasets.Dataset:
    """A dataset of `num_scenes` scenes and their examples (see the module docstring).

    Args:
        num_scenes: number of scenes (at least 1).
        seed: scene `i` is drawn from `scene_rng(seed, i)`: the same seed gives the same rows and image bytes.
        image_size: side of the square images in pixels.
        tasks: a sequence of `SHAPES_TASKS`, `DEFAULT_TASKS` by default.
        max_shapes: the most shapes a scene holds, in [1, 4].
        examples_per_task: examples of each task per scene, at most (see `scene_examples`).

    Returns:
        A `datasets.Dataset` with the columns `COLUMNS` and the features `shapes_features(tasks)`, rows grouped by
        scene, then by task in the order of `tasks`.
    """
    _check_int("num_scenes", num_scenes, 1)
    _check_int("seed", seed, 0)
    tasks = _check_tasks(tasks)
    features = shapes_features(tasks)
    json_answers = isinstance(features["answer"], getattr(datasets, "Json", ()))
    columns = {name: [] for name in COLUMNS}
    for index in range(num_scenes):
        rng = scene_rng(seed, index)
        scene = make_scene(rng, image_size, max_shapes)
        # Encoded once per scene, shared by its rows.
        image = {"bytes": _png(scene.image), "path": None}
        for row in scene_examples(scene, tasks, rng, examples_per_task):
            row.update(scene=index, image=image)
            if json_answers and row.get("answer") is not None:
                # Already JSON, so that no answer string is itself read as JSON ("true", "1").
                row["answer"] = json.dumps(row["answer"])
            for name, values in columns.items():
                values.append(row.get(name))
    return datasets.Dataset.from_dict(columns, features=features)


def split_by_scene(dataset: datasets.Dataset, test_fraction: float = 0.1, seed: int = 0) -> datasets.DatasetDict:
    """Splits a shapes dataset into `train` and `test` with no scene in both.

    Args:
        dataset: a dataset with a `scene` column.
        test_fraction: the fraction of scenes (not rows) in `test`, in (0, 1), rounded to a whole number of scenes.
        seed: chooses the test scenes.

    Returns:
        A `datasets.DatasetDict` with `train` and `test`, rows in their original order.
    """
    if "scene" not in dataset.column_names:
        raise ValueError(f"dataset has no 'scene' column to split by; its columns are {dataset.column_names}.")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}.")
    scenes = [int(scene) for scene in dataset.with_format(None)["scene"]]
    ids = sorted(set(scenes))
    count = round(test_fraction * len(ids))
    if not 0 < count < len(ids):
        raise ValueError(
            f"test_fraction {test_fraction} of {len(ids)} scenes gives {count} test scenes; both splits need one."
        )
    test = set(random.Random(seed).sample(ids, count))
    return datasets.DatasetDict({
        "train": dataset.select([row for row, scene in enumerate(scenes) if scene not in test]),
        "test": dataset.select([row for row, scene in enumerate(scenes) if scene in test]),
    })


__all__ = [
    "COLOURS",
    "SHAPES",
    "BACKGROUND",
    "NUMBER_WORDS",
    "QUESTION_TYPES",
    "SHAPES_TASKS",
    "DEFAULT_TASKS",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_SHAPES",
    "MIN_IMAGE_SIZE",
    "SIZE_RANGE",
    "COLUMNS",
    "SceneObject",
    "Scene",
    "margin_for",
    "size_range",
    "chance_levels",
    "scene_rng",
    "make_scene",
    "scene_examples",
    "shapes_features",
    "make_shapes_dataset",
    "split_by_scene",
]
