# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Accuracy and F1 of true/false answers to image-text match questions (VSR)."""

import datasets
import evaluate


_DESCRIPTION = """\
Image-text match: the model answers whether a caption is true of the image. A prediction is lower-cased and
stripped and loses one trailing "." (then surrounding whitespace); "true" and "yes" read as True, "false" and "no"
as False. Anything else is unparsed: it counts as wrong (as the class opposite to the reference, in the accuracy
and in the F1) and is counted in "unparsed". Returns the accuracy and the F1 of the True class, in percent.
The reference evaluation read "False" as False and anything else as True.
"""

_CITATION = """\
@article{liu2023vsr,
  title={Visual Spatial Reasoning},
  author={Liu, Fangyu and Emerson, Guy and Collier, Nigel},
  journal={Transactions of the Association for Computational Linguistics},
  volume={11},
  pages={635--651},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per caption.
    references (`list[bool | int]`): whether each caption is true of its image (`True`/`False` or 1/0).

Returns:
    `{"accuracy": float, "f1": float, "unparsed": int}`: accuracy and F1 of the True class in percent (F1 is 0 when
    there are no true positives), and the number of predictions that were neither true/yes nor false/no.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/image_text_match")
    >>> metric.compute(predictions=["True.", "false", "maybe"], references=[True, False, True])
    {'accuracy': 66.66666666666667, 'f1': 66.66666666666667, 'unparsed': 1}
"""

_ANSWERS = {"true": True, "yes": True, "false": False, "no": False}


def parse_true_false(text: str) -> bool | None:
    """Reads a generated answer as `True` ("true"/"yes") or `False` ("false"/"no"), `None` for anything else; case,
    surrounding whitespace and one trailing "." are ignored. Never raises on a string."""
    text = text.strip().lower()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return _ANSWERS.get(text)


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class ImageTextMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # bools are stored as 0/1.
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        for index, reference in enumerate(references):
            if reference not in (0, 1):
                raise ValueError(f"references[{index}] is {reference!r}; references are True/False (or 1/0).")
        truths = [bool(reference) for reference in references]
        answers = [parse_true_false(prediction) for prediction in predictions]
        # An unparsed answer is taken as the class opposite to the reference: wrong in every score.
        guesses = [not truth if answer is None else answer for answer, truth in zip(answers, truths)]
        true_positives = sum(guess and truth for guess, truth in zip(guesses, truths))
        errors = sum(guess != truth for guess, truth in zip(guesses, truths))
        return {
            "accuracy": 100.0 * (len(truths) - errors) / len(truths),
            # F1 = 2TP / (2TP + FP + FN), and FP + FN is the number of errors.
            "f1": 100.0 * 2 * true_positives / (2 * true_positives + errors) if true_positives else 0.0,
            "unparsed": sum(answer is None for answer in answers),
        }


__all__ = ["parse_true_false", "ImageTextMatch"]
