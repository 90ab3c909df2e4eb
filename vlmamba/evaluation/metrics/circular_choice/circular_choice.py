# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CircularEval accuracy of multiple-choice answers (MMBench): a question asked once per rotation of its options
counts as right only when every pass is."""

import datasets
import evaluate

from vlmamba.evaluation.metrics.multiple_choice.multiple_choice import parse_option_letter


_DESCRIPTION = """\
CircularEval: each question is asked several times (passes), its options in another order each time, and counts as
right only when the option letter of every pass is right. `circular_accuracy` is the percentage of questions right,
`categories` the same per category, and `accuracy` the percentage of passes right on their own. The letter is read
as the `multiple_choice` metric reads it ("B.", "(B)", "B: a cat", "B"); an answer without a letter is wrong. The
official MMBench evaluation also asks ChatGPT to match an answer without a letter to an option; this metric does not.
"""

_CITATION = """\
@inproceedings{liu2024mmbench,
  title={{MMBench}: Is Your Multi-modal Model an All-around Player?},
  author={Liu, Yuan and Duan, Haodong and Zhang, Yuanhan and Li, Bo and Zhang, Songyang and Zhao, Wangbo and others},
  booktitle={Proceedings of the European Conference on Computer Vision (ECCV)},
  year={2024}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per pass.
    references (`list[dict]`): per pass, `answer` (the letter of the correct option in that pass; case ignored),
        `group` (the question: its passes share it) and `category` (the question's, for `categories`).

Returns:
    `{"circular_accuracy": float, "accuracy": float, "categories": {category: float}, "questions": int}`: the
    percentages of questions and of passes right, per category the questions' (categories sorted), and the number of
    questions. A question's category is its first pass's.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/circular_choice")
    >>> references = [{"answer": a, "group": "7", "category": "ocr"} for a in "BAC"]
    >>> metric.compute(predictions=["B.", "A", "B"], references=references)["circular_accuracy"]
    0.0
"""


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class CircularChoice(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": {
                        "answer": datasets.Value("string"),
                        "group": datasets.Value("string"),
                        "category": datasets.Value("string"),
                    },
                }
            ),
            reference_urls=["https://github.com/open-compass/MMBench"],
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        right: dict[str, bool] = {}
        categories: dict[str, str] = {}
        passes = 0
        for index, (prediction, reference) in enumerate(zip(predictions, references)):
            letter = (reference["answer"] or "").strip()
            if len(letter) != 1 or not (letter.isascii() and letter.isalpha()):
                raise ValueError(
                    f'references[{index}] has answer {reference["answer"]!r}; answers are option letters ("A", ...).'
                )
            correct = parse_option_letter(prediction) == letter.upper()
            passes += correct
            group = reference["group"]
            right[group] = right.get(group, True) and correct
            categories.setdefault(group, reference["category"] or "")
        per_category: dict[str, list[bool]] = {}
        for group, correct in right.items():
            per_category.setdefault(categories[group], []).append(correct)
        return {
            "circular_accuracy": 100.0 * sum(right.values()) / len(right),
            "accuracy": 100.0 * passes / len(predictions),
            "categories": {name: 100.0 * sum(values) / len(values) for name, values in sorted(per_category.items())},
            "questions": len(right),
        }


__all__ = ["CircularChoice"]
