# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Exact match of short answers, as GQA is scored."""

import datasets
import evaluate


_DESCRIPTION = """\
Exact match: the percentage of predictions equal to their reference after a light normalisation. By default
(`normalize="gqa"`, the GQA setting) both are stripped of surrounding whitespace, lower-cased and lose ONE trailing
"." (then surrounding whitespace again); nothing else changes, so "a dog" does not match "dog". `normalize="vqa"`
applies the VQA answer normalisation (`vlmamba.evaluation.metrics.normalize_vqa_answer`) instead.
"""

_CITATION = """\
@inproceedings{hudson2019gqa,
  title={{GQA}: A New Dataset for Real-World Visual Reasoning and Compositional Question Answering},
  author={Hudson, Drew A. and Manning, Christopher D.},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2019}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[str]`): one reference answer per question.
    normalize (`str`, default `"gqa"`): `"gqa"` (strip, lower-case, remove one trailing ".") or `"vqa"` (the VQA
        answer normalisation).

Returns:
    `{"exact_match": float}`: the percentage of exact matches.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/exact_match")
    >>> metric.compute(predictions=["Yes.", "the dog"], references=["yes", "dog"])
    {'exact_match': 50.0}
"""

NORMALIZATIONS = ("gqa", "vqa")


def normalize_gqa_answer(text: str) -> str:
    """GQA's answer comparison form: stripped, lower-cased, without one trailing "." (and the whitespace before it)."""
    text = text.strip().lower()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://cs.stanford.edu/people/dorarad/gqa/evaluate.html"],
        )

    def _compute(self, predictions, references, normalize="gqa"):
        if normalize == "gqa":
            normalizer = normalize_gqa_answer
        elif normalize == "vqa":
            # The one VQA normalisation, from the installed vlmamba (this file is loaded on its own by evaluate).
            from vlmamba.evaluation.metrics import normalize_vqa_answer as normalizer
        else:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}.")
        _check_inputs(predictions, references)
        matches = sum(
            normalizer(prediction) == normalizer(reference) for prediction, reference in zip(predictions, references)
        )
        return {"exact_match": 100.0 * matches / len(predictions)}


__all__ = ["NORMALIZATIONS", "normalize_gqa_answer", "ExactMatch"]
