# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Referring-expression grounding accuracy: predicted boxes with IoU > 0.5 against the target box."""

import math

import datasets
import evaluate

from vlmamba.evaluation.boxes import grounding_accuracy


_DESCRIPTION = """\
Grounding accuracy (Acc@0.5): the percentage of predicted boxes whose IoU with the target box is strictly greater
than 0.5, as RefCOCO, RefCOCO+ and RefCOCOg are scored. Boxes are XYXY (x1, y1, x2, y2), predictions and targets in
the same units (pixels or normalised to [0, 1]). A prediction that is None (no box could be read from the generated
text) counts as wrong. IoU is `vlmamba.evaluation.boxes.paired_box_iou`: a box with x2 < x1 or y2 < y1 has zero area.
"""

_CITATION = """\
@inproceedings{kazemzadeh2014referitgame,
  title={{ReferItGame}: Referring to Objects in Photographs of Natural Scenes},
  author={Kazemzadeh, Sahar and Ordonez, Vicente and Matten, Mark and Berg, Tamara},
  booktitle={Proceedings of the 2014 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year={2014}
}
@inproceedings{yu2016modeling,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={Proceedings of the European Conference on Computer Vision (ECCV)},
  year={2016}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float] | None]`): one predicted XYXY box per expression, `None` when nothing was parsed.
    references (`list[list[float]]`): the target XYXY box of each expression, in the units of the predictions.

Returns:
    `{"grounding_accuracy": float}`: the percentage of predictions with IoU > 0.5.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/grounding_accuracy")
    >>> metric.compute(predictions=[[0, 0, 10, 10], None], references=[[0, 0, 10, 12], [0, 0, 5, 5]])
    {'grounding_accuracy': 50.0}
"""

# The reference scores a box as correct when its IoU is strictly greater than this.
IOU_THRESHOLD = 0.5


def _check_box(box, name: str, allow_none: bool) -> None:
    if box is None and allow_none:
        return
    try:
        if isinstance(box, (str, bytes)) or any(isinstance(value, (str, bytes, bool)) for value in box):
            raise TypeError
        values = [float(value) for value in box]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != 4 or not all(math.isfinite(value) for value in values):
        accepted = "4 finite numbers (x1, y1, x2, y2)" + (" or None (nothing parsed)" if allow_none else "")
        raise ValueError(f"{name} is {box!r}; a box is {accepted}.")


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class GroundingAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    # Boxes are checked before evaluate stores them, so that an error names the sample (counted over all batches).
    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Checks the boxes of a batch and adds the batch (see `evaluate.Metric.add_batch`)."""
        if predictions is not None and references is not None:
            _check_inputs(predictions, references)
            offset = len(self)
            for index, (prediction, reference) in enumerate(zip(predictions, references), start=offset):
                _check_box(prediction, f"predictions[{index}]", allow_none=True)
                _check_box(reference, f"references[{index}]", allow_none=False)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Checks the boxes of one example and adds it (see `evaluate.Metric.add`)."""
        index = len(self)
        _check_box(prediction, f"predictions[{index}]", allow_none=True)
        _check_box(reference, f"references[{index}]", allow_none=False)
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        return {"grounding_accuracy": 100.0 * grounding_accuracy(predictions, references, threshold=IOU_THRESHOLD)}


__all__ = ["IOU_THRESHOLD", "GroundingAccuracy"]
