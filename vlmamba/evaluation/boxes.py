# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Boxes against boxes and boxes on images: IoU, grounding accuracy (IoU > 0.5) and drawing.

Boxes are XYXY in pixels of the original image, as `vlmamba.models.boxes.parse_grounding` returns them.
"""

import math
from pathlib import Path

import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

from ..models.boxes import GroundedBox, as_box


def _box_tensor(boxes, name: str) -> torch.Tensor:
    try:
        if isinstance(boxes, torch.Tensor):
            tensor = boxes.detach().to("cpu", torch.float64)
        else:
            tensor = torch.tensor([[float(value) for value in box] for box in boxes], dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a sequence of (x1, y1, x2, y2) boxes or an (N, 4) tensor.") from None
    if tensor.numel() == 0:
        tensor = tensor.reshape(0, 4)
    if tensor.ndim != 2 or tensor.shape[1] != 4:
        raise ValueError(f"{name} must be N boxes of 4 numbers (x1, y1, x2, y2), got shape {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} has non-finite coordinates.")
    return tensor


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _iou(intersection: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    positive = union > 0
    return torch.where(positive, intersection / torch.where(positive, union, 1.0), 0.0)


def box_iou(boxes1, boxes2) -> torch.Tensor:
    """IoU of every box of `boxes1` with every box of `boxes2`, as `torchvision.ops.box_iou` gives it (`paired_box_iou`
    pairs them one to one instead).

    Args:
        boxes1, boxes2: `N` and `M` boxes, as sequences of `(x1, y1, x2, y2)` or tensors of shape `(N, 4)` and
            `(M, 4)`, in the same units (pixels or normalized).

    Returns:
        `torch.Tensor` of shape `(N, M)`, float64, on the CPU. Unlike torchvision, a box with x2 < x1 or y2 < y1 has
        zero area (not a negative one), and a pair whose union has zero area has IoU 0.
    """
    boxes1, boxes2 = _box_tensor(boxes1, "boxes1"), _box_tensor(boxes2, "boxes2")
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - intersection
    return _iou(intersection, union)


def paired_box_iou(boxes1, boxes2) -> torch.Tensor:
    """IoU of matched pairs of XYXY boxes: `boxes1[i]` with `boxes2[i]` (the diagonal of `box_iou`).

    Args:
        boxes1, boxes2: `N` boxes each, as sequences of `(x1, y1, x2, y2)` or tensors of shape `(N, 4)`, in the same
            units (pixels or normalized).

    Returns:
        `torch.Tensor` of shape `(N,)`, float64, on the CPU. A pair whose union has zero area (two zero-area boxes)
        has IoU 0; a box with x2 < x1 or y2 < y1 has zero area.
    """
    boxes1, boxes2 = _box_tensor(boxes1, "boxes1"), _box_tensor(boxes2, "boxes2")
    if len(boxes1) != len(boxes2):
        raise ValueError(
            f"paired_box_iou pairs boxes one to one; got {len(boxes1)} and {len(boxes2)} boxes (box_iou gives every "
            "pair)."
        )
    top_left = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    return _iou(intersection, _area(boxes1) + _area(boxes2) - intersection)


def grounding_accuracy(predictions, targets, threshold: float = 0.5) -> float:
    """Fraction of predictions whose IoU with their target is strictly greater than `threshold` (the reference's
    RefCOCO accuracy is `threshold=0.5`).

    Args:
        predictions: one XYXY box or `None` (nothing parsed, counted wrong) per sample.
        targets: one XYXY box per sample, in the same units as the predictions.
        threshold: IoU a prediction must exceed, in [0, 1].

    Returns:
        The accuracy as a float in [0, 1].
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}.")
    predictions, targets = list(predictions), _box_tensor(targets, "targets")
    if len(predictions) != len(targets):
        raise ValueError(f"Got {len(predictions)} predictions for {len(targets)} targets; pass one each.")
    if not predictions:
        raise ValueError("grounding_accuracy needs at least one prediction and target.")
    parsed = [index for index, prediction in enumerate(predictions) if prediction is not None]
    if not parsed:
        return 0.0
    ious = paired_box_iou(_box_tensor([predictions[index] for index in parsed], "predictions"), targets[parsed])
    return int((ious > threshold).sum()) / len(predictions)


# Box colours, cycled; distinct from each other on photographs.
DEFAULT_BOX_COLORS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
)


def _rgb(color, name: str) -> tuple[int, int, int]:
    if isinstance(color, str):
        try:
            return ImageColor.getrgb(color)[:3]
        except ValueError:
            raise ValueError(f"{name} {color!r} is not a colour PIL knows (a name like 'red' or '#rrggbb').") from None
    try:
        values = tuple(int(value) for value in color)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (3, 4) or not all(0 <= value <= 255 for value in values):
        raise ValueError(f"{name} must be a colour name or an (r, g, b) tuple of 0-255 integers, got {color!r}.")
    return values[:3]


def _box_colors(colors, count: int) -> list[tuple[int, int, int]]:
    if colors is None:
        palette = list(DEFAULT_BOX_COLORS)
    elif isinstance(colors, str) or (
        isinstance(colors, (tuple, list)) and colors and all(isinstance(value, int) for value in colors)
    ):
        palette = [_rgb(colors, "colors")]
    else:
        palette = [_rgb(color, f"colors[{index}]") for index, color in enumerate(colors)]
        if not palette:
            raise ValueError("colors is empty; pass None for the default colours.")
    return [palette[index % len(palette)] for index in range(count)]


def _label_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def draw_boxes(image, boxes, labels=None, path=None, colors=None, width=None) -> Image.Image:
    """Draws pixel XYXY boxes and their labels on a copy of `image`.

    Args:
        image: a `PIL.Image.Image`; it is not modified. Non-RGB images are converted to RGB.
        boxes: pixel XYXY boxes of `image`, or `GroundedBox`es from `parse_grounding(..., image_size=...)` (their
            `box` is drawn and their `phrase` is the default label). Boxes are clipped to the image for drawing; a box
            entirely outside it is not drawn.
        labels: one label per box (`None` or `""` for none), written on a filled background at the box's top-left
            corner. Defaults to the phrases of `GroundedBox`es and to no labels for plain boxes.
        path: where to save the drawing as PNG (parent folders are created).
        colors: a colour (`"red"`, `"#ff0000"`, `(255, 0, 0)`) for every box, or one per box (cycled when shorter);
            `DEFAULT_BOX_COLORS` by default.
        width: line width in pixels; by default it grows with the image (1 px per 150 px of the shorter side).

    Returns:
        The new `PIL.Image.Image` (RGB, the size of `image`).
    """
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}.")
    if boxes is None:
        raise ValueError("boxes is None; pass pixel boxes (parse with image_size=(height, width) to get them).")
    pixel_boxes, phrases = [], []
    for index, box in enumerate(boxes):
        if isinstance(box, GroundedBox):
            if box.box is None:
                raise ValueError(
                    f"boxes[{index}] has no pixel box: the image size was missing when it was parsed; pass "
                    "image_size=(height, width) to parse_grounding."
                )
            box, phrase = box.box, box.phrase
        else:
            phrase = None
        pixel_boxes.append(as_box(box, f"boxes[{index}]"))
        phrases.append(phrase)
    labels = phrases if labels is None else list(labels)
    if len(labels) != len(pixel_boxes):
        raise ValueError(f"Got {len(labels)} labels for {len(pixel_boxes)} boxes; pass one each (None for no label).")
    if width is None:
        width = max(1, round(min(image.size) / 150))
    elif isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer (pixels), got {width!r}.")
    box_colors = _box_colors(colors, len(pixel_boxes))

    drawing = image.copy() if image.mode == "RGB" else image.convert("RGB")
    image_width, image_height = drawing.size
    draw = ImageDraw.Draw(drawing)
    rectangles = []
    for x1, y1, x2, y2 in pixel_boxes:
        if x1 >= image_width or y1 >= image_height or x2 <= 0 or y2 <= 0:
            rectangles.append(None)
            continue
        # Pixel rectangles are inclusive: the box [x1, x2) covers pixels floor(x1) .. ceil(x2) - 1.
        left, top = min(max(math.floor(x1), 0), image_width - 1), min(max(math.floor(y1), 0), image_height - 1)
        right = min(max(math.ceil(x2) - 1, left), image_width - 1)
        bottom = min(max(math.ceil(y2) - 1, top), image_height - 1)
        rectangles.append((left, top, right, bottom))
    for rectangle, color in zip(rectangles, box_colors):
        if rectangle is not None:
            draw.rectangle(rectangle, outline=color, width=width)
    # Labels go on top of every box line so that none is crossed out.
    font = _label_font(max(10, round(min(image.size) / 30)))
    padding = max(1, width)
    for rectangle, color, label in zip(rectangles, box_colors, labels):
        if rectangle is None or label is None or str(label) == "":
            continue
        text = str(label)
        text_left, text_top, text_right, text_bottom = draw.textbbox((0, 0), text, font=font)
        label_width = text_right - text_left + 2 * padding
        label_height = text_bottom - text_top + 2 * padding
        left, top = rectangle[0], rectangle[1] - label_height
        if top < 0:  # no room above the box: write inside its top edge
            top = rectangle[1]
        left = max(0, min(left, image_width - label_width))
        top = max(0, min(top, image_height - label_height))
        draw.rectangle((left, top, left + label_width - 1, top + label_height - 1), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        draw.text((left + padding - text_left, top + padding - text_top), text, fill=text_color, font=font)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        drawing.save(path, format="PNG")
    return drawing


__all__ = ["box_iou", "paired_box_iou", "grounding_accuracy", "DEFAULT_BOX_COLORS", "draw_boxes"]
