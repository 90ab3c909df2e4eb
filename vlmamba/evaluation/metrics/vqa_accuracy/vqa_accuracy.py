# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""VQA accuracy as the official VQA evaluation computes it, and the standard VQA answer normalisation.

This file is an `evaluate` module: `evaluate.load` copies it alone into its module cache, so it imports nothing from
vlmamba. `vlmamba.evaluation.metrics.normalize_vqa_answer` is the `normalize_vqa_answer` defined here.
"""

import re

import datasets
import evaluate


_DESCRIPTION = """\
VQA accuracy: a predicted answer scores min(1, #humans that gave it / 3), averaged over the leave-one-out subsets of
the human answers (each answer left out in turn, the others vote), as the official VQA evaluation computes it. With
the usual 10 answers this equals min(1, 0.3 x #matching answers); with another number of answers it does not.
The prediction and every answer are normalised first (`normalize_vqa_answer`: the official VQA / EvalAI answer
processing). The score is a percentage (0-100).
"""

_CITATION = """\
@inproceedings{antol2015vqa,
  title={{VQA}: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and
          Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={Proceedings of the IEEE International Conference on Computer Vision (ICCV)},
  year={2015}
}
@inproceedings{goyal2017making,
  title={Making the {V} in {VQA} Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[list[str]]`): the human answers of each question (VQAv2 and TextVQA have 10); at least 2,
        since with a single answer the leave-one-out average is always 0 (use `exact_match` for such data).

Returns:
    `{"vqa_accuracy": float}`: the mean accuracy over the questions, in percent.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/vqa_accuracy")
    >>> metric.compute(predictions=["Two."], references=[["2"] * 2 + ["3"] * 8])
    {'vqa_accuracy': 60.0}
"""

# The official evaluation's tables (facts of the format), as published: its capitalised keys never match the
# lower-cased text they are applied to, and "somebody'd" maps to "somebodyd".
_CONTRACTIONS = dict(
    pair.split(":", 1)
    for pair in (
        "aint:ain't arent:aren't cant:can't couldve:could've couldnt:couldn't couldn'tve:couldn't've "
        "couldnt've:couldn't've didnt:didn't doesnt:doesn't dont:don't hadnt:hadn't hadnt've:hadn't've "
        "hadn'tve:hadn't've hasnt:hasn't havent:haven't hed:he'd hed've:he'd've he'dve:he'd've hes:he's "
        "howd:how'd howll:how'll hows:how's Id've:I'd've I'dve:I'd've Im:I'm Ive:I've isnt:isn't itd:it'd "
        "itd've:it'd've it'dve:it'd've itll:it'll let's:let's maam:ma'am mightnt:mightn't mightnt've:mightn't've "
        "mightn'tve:mightn't've mightve:might've mustnt:mustn't mustve:must've neednt:needn't notve:not've "
        "oclock:o'clock oughtnt:oughtn't ow's'at:'ow's'at 'ows'at:'ow's'at 'ow'sat:'ow's'at shant:shan't "
        "shed've:she'd've she'dve:she'd've she's:she's shouldve:should've shouldnt:shouldn't "
        "shouldnt've:shouldn't've shouldn'tve:shouldn't've somebody'd:somebodyd somebodyd've:somebody'd've "
        "somebody'dve:somebody'd've somebodyll:somebody'll somebodys:somebody's someoned:someone'd "
        "someoned've:someone'd've someone'dve:someone'd've someonell:someone'll someones:someone's "
        "somethingd:something'd somethingd've:something'd've something'dve:something'd've "
        "somethingll:something'll thats:that's thered:there'd thered've:there'd've there'dve:there'd've "
        "therere:there're theres:there's theyd:they'd theyd've:they'd've they'dve:they'd've theyll:they'll "
        "theyre:they're theyve:they've twas:'twas wasnt:wasn't wed've:we'd've we'dve:we'd've weve:we've "
        "werent:weren't whatll:what'll whatre:what're whats:what's whatve:what've whens:when's whered:where'd "
        "wheres:where's whereve:where've whod:who'd whod've:who'd've who'dve:who'd've wholl:who'll whos:who's "
        "whove:who've whyll:why'll whyre:why're whys:why's wont:won't wouldve:would've wouldnt:wouldn't "
        "wouldnt've:wouldn't've wouldn'tve:wouldn't've yall:y'all yall'll:y'all'll y'allll:y'all'll "
        "yall'd've:y'all'd've y'alld've:y'all'd've y'all'dve:y'all'd've youd:you'd youd've:you'd've "
        "you'dve:you'd've youll:you'll youre:you're youve:you've"
    ).split()
)
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# Removed (or turned into a space, see `_process_punctuation`). Not in the list: "." (below), "'", ":", "#", "$", ...
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern starts with `(?!<=\d)`, a lookahead (not a lookbehind) that never fails before a ".", so a
# period goes unless a digit follows it: "5." -> "5", while "1.5" and ".5" keep theirs.
_PERIOD = re.compile(r"\.(?!\d)")
# VQA accuracy: an answer given by this many humans scores 1.
_HUMANS_FOR_FULL_SCORE = 3


def _process_punctuation(text: str) -> str:
    out = text
    # A digit-comma-digit anywhere ("3,000") means every listed mark is deleted rather than spaced out.
    delete = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:  # one character each
        if delete or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out)


def normalize_vqa_answer(text: str) -> str:
    """The standard VQA answer normalisation (the official VQA evaluation's, which EvalAI's answer processor follows).

    In order:
        1. newlines and tabs become spaces; surrounding whitespace is stripped;
        2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted where it touches a space in
           the text (`"yes !"`) or when the text has a digit-comma-digit (`"3,000"` -> `"3000"`), and becomes a
           space otherwise (`"yes!"` -> `"yes"`, `"red/white"` -> `"red white"`); a period is deleted unless a digit
           follows it (`"yes."` -> `"yes"`, `"1.5"` unchanged);
        3. lower-case, split on whitespace; number words `none`, `zero` ... `ten` become digits (`"none"` -> `"0"`);
           the articles `a`, `an`, `the` are dropped as words (`"theater"` is untouched);
        4. the official contraction table restores missing apostrophes (`"dont"` -> `"don't"`, `"isnt"` ->
           `"isn't"`); words are joined with single spaces.

    Args:
        text: an answer, generated or human.

    Returns:
        The normalised answer (possibly `""`).
    """
    if not isinstance(text, str):
        raise ValueError(f"normalize_vqa_answer takes a string, got {type(text).__name__}: {text!r}.")
    text = _process_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = (_NUMBER_WORDS.get(word, word) for word in text.lower().split())
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def _sample_accuracy(prediction: str, answers: list[str]) -> float:
    prediction = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(answer) == prediction for answer in answers]
    total = sum(matches)
    # Leave each answer out in turn: the other answers that match vote.
    return sum(min(1.0, (total - left_out) / _HUMANS_FOR_FULL_SCORE) for left_out in matches) / len(answers)


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class VQAAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://visualqa.org/evaluation.html"],
        )

    def _compute(self, predictions, references):
        _check_inputs(predictions, references)
        for index, answers in enumerate(references):
            if len(answers) < 2:
                raise ValueError(
                    f"references[{index}] has {len(answers)} answer(s); VQA accuracy needs at least 2 (the usual "
                    "10), since it scores a prediction by the other answers. Use exact_match for single answers."
                )
        scores = [_sample_accuracy(prediction, answers) for prediction, answers in zip(predictions, references)]
        return {"vqa_accuracy": 100.0 * sum(scores) / len(scores)}


__all__ = ["normalize_vqa_answer", "VQAAccuracy"]
