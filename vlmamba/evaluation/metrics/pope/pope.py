# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""POPE object-hallucination scores of yes/no answers."""

import re

import datasets
import evaluate


_DESCRIPTION = """\
POPE (Polling-based Object Probing Evaluation): yes/no questions about whether an object is in the image, scored
with "yes" as the positive class: accuracy, precision, recall, F1 and the ratio of "yes" answers, all in percent.
A prediction is lower-cased and stripped, loses its trailing periods and whitespace, and reads as "no" when it is
"no" or starts with the word "no" ("no, there is none"); anything else, including an empty answer, reads as "yes".
The reference evaluation compared the raw lower-cased text with "no", so the model's trained answer "No." counted
as "yes"; here it counts as "no".
"""

_CITATION = """\
@inproceedings{li2023pope,
  title={Evaluating Object Hallucination in Large Vision-Language Models},
  author={Li, Yifan and Du, Yifan and Zhou, Kun and Wang, Jinpeng and Zhao, Wayne Xin and Wen, Ji-Rong},
  booktitle={Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[str]`): `"yes"` or `"no"` per question (case and surrounding whitespace ignored).

Returns:
    `{"accuracy", "precision", "recall", "f1", "yes_ratio"}`, floats in percent. Precision is 0 when no prediction
    is "yes", recall 0 when no reference is, F1 0 when precision and recall are.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/pope")
    >>> metric.compute(predictions=["Yes.", "No.", "yes"], references=["yes", "no", "no"])["accuracy"]
    66.66666666666667
"""

# "no" as a whole word at the start: "no", "no, ...", "no there is not"; not "none", "nope" or "not".
_NO = re.compile(r"no\b")


def parse_yes_no(text: str) -> str:
    """Reads a generated POPE answer as `"yes"` or `"no"` (see the module description); never raises on a string."""
    text = text.strip().lower().rstrip(". \t\n\r\f\v")
    return "no" if _NO.match(text) else "yes"


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


def _ratio(numerator: int, denominator: int) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0


class Pope(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/AoiDragon/POPE"],
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        truths = []
        for index, reference in enumerate(references):
            label = reference.strip().lower()
            if label not in ("yes", "no"):
                raise ValueError(f'references[{index}] is {reference!r}; POPE references are "yes" or "no".')
            truths.append(label == "yes")
        guesses = [parse_yes_no(prediction) == "yes" for prediction in predictions]
        true_positives = sum(guess and truth for guess, truth in zip(guesses, truths))
        precision = _ratio(true_positives, sum(guesses))
        recall = _ratio(true_positives, sum(truths))
        return {
            "accuracy": _ratio(sum(guess == truth for guess, truth in zip(guesses, truths)), len(truths)),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": _ratio(sum(guesses), len(guesses)),
        }


__all__ = ["parse_yes_no", "Pope"]
