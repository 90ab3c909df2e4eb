# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Accuracy of multiple-choice answers given as option letters (Visual7W telling and pointing, AI2D)."""

import re

import datasets
import evaluate


_DESCRIPTION = """\
Multiple-choice accuracy: the percentage of predictions whose option letter is the reference letter (compared
case-insensitively). The letter is read from the stripped prediction as:
  - the text before the first "." when that is a single letter ("B." or "B. A red car"), the reference setting;
  - "(B)", "B)" or "B:", optionally followed by text;
  - a single upper-case letter followed by whitespace and text ("B red car"); lower-case here would read ordinary
    words ("a red car") as options;
  - a single letter alone ("B" or "b").
Anything else (e.g. "The answer is B", an empty answer) has no letter and counts as wrong.
"""

_CITATION = """\
@inproceedings{zhu2016visual7w,
  title={{Visual7W}: Grounded Question Answering in Images},
  author={Zhu, Yuke and Groth, Oliver and Bernstein, Michael and Fei-Fei, Li},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2016}
}
@inproceedings{kembhavi2016diagram,
  title={A Diagram is Worth a Dozen Images},
  author={Kembhavi, Aniruddha and Salvato, Mike and Kolve, Eric and Seo, Minjoon and Hajishirzi, Hannaneh and
          Farhadi, Ali},
  booktitle={Proceedings of the European Conference on Computer Vision (ECCV)},
  year={2016}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[str]`): the letter of the correct option per question ("A", "B", ...; case ignored).

Returns:
    `{"accuracy": float}`: the percentage of correct letters.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/multiple_choice")
    >>> metric.compute(predictions=["B.", "(c) a cat", "The answer is A"], references=["B", "C", "A"])["accuracy"]
    66.66666666666667
"""

_MARKED_LETTER = re.compile(r"\(([A-Za-z])\)|([A-Za-z])[):]")
_LETTER_AND_TEXT = re.compile(r"([A-Z])\s")


def parse_option_letter(text: str) -> str | None:
    """The upper-case option letter of a generated answer (see the module description), or `None`; never raises on
    a string."""
    text = text.strip()
    before_period = text.split(".", 1)[0].strip()
    if len(before_period) == 1 and before_period.isascii() and before_period.isalpha():
        return before_period.upper()
    match = _MARKED_LETTER.match(text) or _LETTER_AND_TEXT.match(text)
    if match:
        return next(group for group in match.groups() if group).upper()
    return None


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class MultipleChoice(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        letters = []
        for index, reference in enumerate(references):
            letter = reference.strip()
            if len(letter) != 1 or not (letter.isascii() and letter.isalpha()):
                raise ValueError(
                    f'references[{index}] is {reference!r}; references are option letters ("A", "B", ...).'
                )
            letters.append(letter.upper())
        correct = sum(parse_option_letter(prediction) == letter for prediction, letter in zip(predictions, letters))
        return {"accuracy": 100.0 * correct / len(predictions)}


__all__ = ["parse_option_letter", "MultipleChoice"]
