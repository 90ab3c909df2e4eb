# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""MME perception and cognition scores of yes/no answers: accuracy and accuracy+ per subtask."""

import re

import datasets
import evaluate

from vlmamba.data.vl_benchmarks import MME_COGNITION, MME_PERCEPTION


_DESCRIPTION = """\
MME: each image of a subtask comes with two yes/no questions. Per subtask, `accuracy` is the percentage of questions
answered right and `accuracy_plus` the percentage of images whose questions are all answered right; the subtask's
score is their sum (at most 200). `perception` is the sum of the scores of the 10 perception subtasks (existence,
count, position, color, posters, celebrity, scene, landmark, artwork, OCR; at most 2000) and `cognition` that of the
4 cognition subtasks (commonsense_reasoning, numerical_calculation, text_translation, code_reasoning; at most 800),
each over the subtasks present (`None` when none is). A prediction reads as "yes" or "no" when it starts with that
word, case and surrounding whitespace ignored ("Yes", "no.", "Yes, there is one"); anything else ("Yesterday",
"It is", an empty answer) counts as wrong and is counted in `unparsed`.
"""

_CITATION = """\
@article{fu2023mme,
  title={{MME}: A Comprehensive Evaluation Benchmark for Multimodal Large Language Models},
  author={Fu, Chaoyou and Chen, Peixian and Shen, Yunhang and Qin, Yulei and Zhang, Mengdan and Lin, Xu and others},
  journal={arXiv preprint arXiv:2306.13394},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[dict]`): per question, `answer` (`"yes"` or `"no"`, case ignored), `category` (its subtask,
        one of MME's 14) and `group` (its image: the questions of one group are scored together by accuracy+).

Returns:
    `{"perception": float | None, "cognition": float | None, "subtasks": {name: {"accuracy", "accuracy_plus",
    "score"}}, "unparsed": int}`, the subtasks in MME's order.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/mme")
    >>> references = [{"answer": a, "category": "count", "group": g} for a, g in [("yes", "1"), ("no", "1")]]
    >>> metric.compute(predictions=["Yes.", "Yes"], references=references)["perception"]
    50.0
"""

SUBTASKS = MME_PERCEPTION + MME_COGNITION
_YES_NO = re.compile(r"(yes|no)\b")


def read_yes_no(text: str) -> str | None:
    """`"yes"` or `"no"` when the stripped, lower-cased text starts with that word, else `None`; never raises on a
    string."""
    match = _YES_NO.match(text.strip().lower())
    return match.group(1) if match else None


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


def _sum(scores: dict, names) -> float | None:
    present = [scores[name]["score"] for name in names if name in scores]
    return sum(present) if present else None


class MME(evaluate.Metric):
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
                        "category": datasets.Value("string"),
                        "group": datasets.Value("string"),
                    },
                }
            ),
            reference_urls=["https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation"],
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        questions: dict[str, list[bool]] = {}
        images: dict[str, dict[str, bool]] = {}
        for index, reference in enumerate(references):
            answer, category = (reference["answer"] or "").strip().lower(), reference["category"]
            if answer not in ("yes", "no"):
                raise ValueError(f"references[{index}] has answer {reference['answer']!r}; MME answers are yes or no.")
            if category not in SUBTASKS:
                raise ValueError(
                    f"references[{index}] has category {category!r}; MME's subtasks are {', '.join(SUBTASKS)}."
                )
            right = read_yes_no(predictions[index]) == answer
            questions.setdefault(category, []).append(right)
            group = images.setdefault(category, {})
            group[reference["group"]] = group.get(reference["group"], True) and right
        subtasks = {}
        for name in SUBTASKS:
            if name in questions:
                accuracy = 100.0 * sum(questions[name]) / len(questions[name])
                accuracy_plus = 100.0 * sum(images[name].values()) / len(images[name])
                score = accuracy + accuracy_plus
                subtasks[name] = {"accuracy": accuracy, "accuracy_plus": accuracy_plus, "score": score}
        return {
            "perception": _sum(subtasks, MME_PERCEPTION),
            "cognition": _sum(subtasks, MME_COGNITION),
            "subtasks": subtasks,
            "unparsed": sum(read_yes_no(prediction) is None for prediction in predictions),
        }


__all__ = ["SUBTASKS", "read_yes_no", "MME"]
