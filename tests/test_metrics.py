# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The evaluation metrics (`vlmamba.evaluation.metrics`): hand-computed scores, answer parsing, loading, errors."""

import math
import random
import re
import socket
from pathlib import Path

import evaluate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocoevalcap.cider.cider import Cider

import vlmamba.evaluation.metrics
from vlmamba import evaluation
from vlmamba.evaluation.metrics import METRICS, load, normalize_vqa_answer
from vlmamba.evaluation.metrics.cider import cider as cider_module
from vlmamba.evaluation.metrics.image_text_match.image_text_match import parse_true_false
from vlmamba.evaluation.metrics.multiple_choice.multiple_choice import parse_option_letter
from vlmamba.evaluation.metrics.pope.pope import parse_yes_no
from vlmamba.evaluation.metrics.vqa_accuracy import vqa_accuracy as vqa_module


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HAS_JAVA = cider_module.java_available()
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="the PTB tokenizer needs java")

# A valid input of each metric, for loading and error tests.
SAMPLES = {
    "cider": (["a dog runs", "a red car"], [["a dog is running"], ["a red car parked", "a car"]]),
    "vqa_accuracy": (["yes", "2"], [["yes"] * 10, ["2", "3"]]),
    "exact_match": (["yes", "dog"], ["yes", "cat"]),
    "grounding_accuracy": ([[0, 0, 10, 10], None], [[0, 0, 10, 10], [0, 0, 5, 5]]),
    "pope": (["yes", "no"], ["yes", "yes"]),
    "multiple_choice": (["A.", "B"], ["A", "C"]),
    "image_text_match": (["true", "no"], [True, True]),
    # One MME image, two questions: one right, so accuracy 50 and accuracy+ 0.
    "mme": (["Yes", "no"], [{"answer": "yes", "category": "count", "group": "1"}] * 2),
    # Two circular questions of one pass each: the first right, the second wrong.
    "circular_choice": (["A.", "B"], [{"answer": "A", "group": "0", "category": "x"},
                                      {"answer": "C", "group": "1", "category": "x"}]),
}
# Expected results of SAMPLES, worked out by hand (CIDEr is tested on its own below).
SAMPLE_RESULTS = {
    # 100 for 10 matching answers; "2" matches 1 of 2 answers: leave-one-out (min(1, 0/3) + min(1, 1/3)) / 2 = 1/6.
    "vqa_accuracy": {"vqa_accuracy": (100 + 100 / 6) / 2},
    "exact_match": {"exact_match": 50.0},
    "grounding_accuracy": {"grounding_accuracy": 50.0},
    # guesses yes, no against yes, yes: TP 1, FN 1 -> precision 100, recall 50, F1 2 * 100 * 50 / 150.
    "pope": {"accuracy": 50.0, "precision": 100.0, "recall": 50.0, "f1": 200 / 3, "yes_ratio": 50.0},
    "multiple_choice": {"accuracy": 50.0},
    # TP 1, FN 1: F1 = 2 * 1 / (2 * 1 + 1).
    "image_text_match": {"accuracy": 50.0, "f1": 200 / 3, "unparsed": 0},
    "mme": {"perception": 50.0, "cognition": None, "subtasks": {"count": {"accuracy": 50.0, "accuracy_plus": 0.0,
                                                                          "score": 50.0}}, "unparsed": 0},
    "circular_choice": {"circular_accuracy": 50.0, "accuracy": 50.0, "categories": {"x": 50.0}, "questions": 2},
}


def compute(name, predictions, references, **kwargs):
    return load(name).compute(predictions=predictions, references=references, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def test_metric_names_are_the_folders():
    folders = {
        path.parent.name
        for path in Path(vlmamba.evaluation.metrics.__file__).parent.glob("*/*.py")
        if path.stem != "__init__"
    }
    assert set(METRICS) == folders
    for name in METRICS:
        assert (vlmamba.evaluation.metrics.metric_path(name) / f"{name}.py").is_file()


@pytest.mark.parametrize("name", METRICS)
def test_load_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"loading metric {name} opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    metric = load(name)
    assert isinstance(metric, evaluate.EvaluationModule)
    assert metric.description and metric.inputs_description and metric.features
    predictions, references = SAMPLES[name]
    result = metric.compute(
        predictions=predictions, references=references, **({"tokenizer": "python"} if name == "cider" else {})
    )
    if name == "cider":
        assert set(result) == {"cider"}
    else:
        # pytest.approx takes flat dicts; the nested results are exact.
        nested = any(isinstance(value, dict) for value in SAMPLE_RESULTS[name].values())
        assert result == (SAMPLE_RESULTS[name] if nested else pytest.approx(SAMPLE_RESULTS[name]))


def test_load_is_evaluate_load_of_the_folder():
    metric = evaluate.load(str(vlmamba.evaluation.metrics.METRICS_DIR / "pope"))
    assert metric.compute(predictions=["no"], references=["no"])["accuracy"] == 100.0
    assert type(metric).__name__ == type(load("pope")).__name__


def test_load_unknown_name_lists_the_metrics():
    with pytest.raises(ValueError, match="Unknown metric 'bleu'") as error:
        load("bleu")
    for name in METRICS:
        assert name in str(error.value)


@pytest.mark.parametrize("name", METRICS)
def test_length_mismatch_and_empty_input_raise(name):
    predictions, references = SAMPLES[name]
    with pytest.raises(ValueError, match=r"(?i)predictions.*\b2\b.*references.*\b1\b|2 predictions and 1 references"):
        compute(name, predictions, references[:1])
    with pytest.raises(ValueError, match="no predictions and no references"):
        compute(name, [], [])


def test_citations_where_they_exist():
    for name in METRICS:
        assert "@" in load(name).citation, name


# ---------------------------------------------------------------------------------------------------------------
# VQA answer normalisation and accuracy


def test_normalize_vqa_answer_is_the_module_function():
    assert vlmamba.evaluation.metrics.normalize_vqa_answer is vqa_module.normalize_vqa_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        # Articles are dropped as words only.
        ("a dog", "dog"),
        ("The dog", "dog"),
        ("an apple on the table", "apple on table"),
        ("theater", "theater"),
        ("other", "other"),
        ("athena", "athena"),
        # Punctuation: touching a space -> deleted; otherwise -> a space; digit-comma-digit -> all deleted.
        ("yes.", "yes"),
        ("yes!", "yes"),
        ("Yes !", "yes"),
        ("yes, it is", "yes it is"),
        ("red/white", "red white"),
        ("t-shirt", "t shirt"),
        ("3,000", "3000"),
        ("3,000 people/day", "3000 peopleday"),
        ('"stop"', "stop"),
        # A period goes unless a digit follows it.
        ("1.5", "1.5"),
        ("5.", "5"),
        (".5", ".5"),
        ("u.s.", "us"),
        # ":" and "'" are not in the punctuation list.
        ("10:30", "10:30"),
        ("dog's", "dog's"),
        # Number words.
        ("two", "2"),
        ("Two dogs", "2 dogs"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("twenty", "twenty"),
        ("someone", "someone"),
        # Contractions get their apostrophe back.
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("Dont know", "don't know"),
        ("don't", "don't"),
        ("wont", "won't"),
        ("oclock", "o'clock"),
        # The official table's capitalised keys never match the lower-cased words.
        ("Im", "im"),
        # Case and whitespace.
        ("  YES\n", "yes"),
        ("red\tcar", "red car"),
        ("  two   big\n\ndogs ", "2 big dogs"),
        ("", ""),
        ("the", ""),
    ],
)
def test_normalize_vqa_answer(text, expected):
    assert normalize_vqa_answer(text) == expected


def test_normalize_vqa_answer_rejects_non_strings():
    with pytest.raises(ValueError, match="takes a string, got int"):
        normalize_vqa_answer(3)


@FAST
@given(st.text())
def test_normalize_vqa_answer_never_raises_on_a_string(text):
    normalized = normalize_vqa_answer(text)
    assert normalized == " ".join(normalized.split())


def loo_accuracy(matches, answers):
    return vqa_module._sample_accuracy("yes", ["yes"] * matches + ["no"] * (answers - matches))


@pytest.mark.parametrize(
    "matches, expected",
    [
        (0, 0.0),
        # (1 * min(1, 0/3) + 9 * min(1, 1/3)) / 10 = 0.3
        (1, 0.3),
        # (2 * min(1, 1/3) + 8 * min(1, 2/3)) / 10 = (2/3 + 16/3) / 10 = 0.6
        (2, 0.6),
        # (3 * min(1, 2/3) + 7 * min(1, 3/3)) / 10 = (2 + 7) / 10 = 0.9
        (3, 0.9),
        # (4 * min(1, 3/3) + 6 * 1) / 10 = 1
        (4, 1.0),
        (7, 1.0),
        (10, 1.0),
    ],
)
def test_vqa_leave_one_out_equals_capped_0_3_per_match_with_10_answers(matches, expected):
    assert loo_accuracy(matches, 10) == pytest.approx(expected)
    assert loo_accuracy(matches, 10) == pytest.approx(min(1.0, 0.3 * matches))


@pytest.mark.parametrize(
    "matches, answers, expected",
    [
        # 3 answers, 1 match: (1 * min(1, 0/3) + 2 * min(1, 1/3)) / 3 = 2/9, not 0.3.
        (1, 3, 2 / 9),
        # 5 answers, 3 matches: (3 * min(1, 2/3) + 2 * min(1, 3/3)) / 5 = 4/5, not 0.9.
        (3, 5, 0.8),
        # 2 answers, 2 matches: (2 * min(1, 1/3)) / 2 = 1/3, not 0.6.
        (2, 2, 1 / 3),
    ],
)
def test_vqa_leave_one_out_differs_from_capped_0_3_per_match_otherwise(matches, answers, expected):
    assert loo_accuracy(matches, answers) == pytest.approx(expected)
    assert loo_accuracy(matches, answers) != pytest.approx(min(1.0, 0.3 * matches))


def test_vqa_accuracy_is_not_min_1_matches_over_3():
    # One of 10 humans: 0.3 by the official leave-one-out, 1/3 by the naive min(1, #matches / 3).
    result = compute("vqa_accuracy", ["red"], [["red"] + ["blue"] * 9])
    assert result["vqa_accuracy"] == pytest.approx(30.0)


def test_vqa_accuracy_normalises_prediction_and_answers():
    references = [
        # "Two." and "two" and "2" all normalise to "2": 3 matches -> 0.9.
        ["two", "2", "2 ", "3", "3", "3", "3", "3", "3", "3"],
        # "a red car" -> "red car" = "Red car!" ; 4 matches -> 1.
        ["Red car!"] * 4 + ["blue car"] * 6,
        # "dont know" -> "don't know"; 0 matches of "no".
        ["dont know"] * 10,
    ]
    result = compute("vqa_accuracy", ["Two.", "a red car", "no"], references)
    # (0.9 + 1 + 0) / 3
    assert result["vqa_accuracy"] == pytest.approx(100 * 1.9 / 3)


@pytest.mark.parametrize("answers", [[], ["yes"]])
def test_vqa_accuracy_needs_two_answers(answers):
    with pytest.raises(ValueError, match=rf"references\[1\] has {len(answers)} answer"):
        compute("vqa_accuracy", ["yes", "yes"], [["yes", "yes"], answers])


# ---------------------------------------------------------------------------------------------------------------
# Exact match


def test_exact_match_gqa_setting():
    predictions = ["Yes.", "yes", " Dog ", "a dog", "yes..", "Yes. ", "left"]
    references = ["yes", "yes.", "dog", "dog", "yes", "yes", "right"]
    # Matches: "yes"="yes", "yes"="yes", "dog"="dog", "a dog"!="dog", "yes."!="yes" (one period only), "yes"="yes",
    # "left"!="right": 4 of 7.
    assert compute("exact_match", predictions, references)["exact_match"] == pytest.approx(400 / 7)
    # The VQA normalisation also drops the article and every period: 6 of 7.
    assert compute("exact_match", predictions, references, normalize="vqa")["exact_match"] == pytest.approx(600 / 7)


def test_exact_match_rejects_unknown_normalization():
    with pytest.raises(ValueError, match="normalize must be one of"):
        compute("exact_match", ["a"], ["a"], normalize="squad")


# ---------------------------------------------------------------------------------------------------------------
# Grounding accuracy


def test_grounding_accuracy_hand_computed():
    predictions = [
        [0, 0, 10, 10],  # vs 0,0,10,20: IoU 100 / 200 = 0.5, not > 0.5: wrong
        [0, 0, 10, 10],  # vs 0,0,10,19: IoU 100 / 190 = 0.526: right
        None,  # nothing parsed: wrong
        [0, 0, 10, 10],  # vs 5,5,15,15: IoU 25 / 175: wrong
        [0.1, 0.1, 0.5, 0.5],  # identical normalised box: right
        [10, 10, 0, 0],  # swapped corners have zero area: IoU 0, wrong
    ]
    references = [[0, 0, 10, 20], [0, 0, 10, 19], [0, 0, 1, 1], [5, 5, 15, 15], [0.1, 0.1, 0.5, 0.5], [0, 0, 10, 10]]
    assert compute("grounding_accuracy", predictions, references)["grounding_accuracy"] == pytest.approx(200 / 6)


def iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union


def test_grounding_accuracy_matches_an_independent_iou():
    rng = random.Random(0)

    def box():
        x, y = rng.uniform(0, 50), rng.uniform(0, 50)
        return [x, y, x + rng.uniform(1, 50), y + rng.uniform(1, 50)]

    references = [box() for _ in range(200)]
    predictions = [None if index % 7 == 0 else box() for index in range(100)]
    # Half of the predictions are the target jittered a little, so that both outcomes occur.
    predictions += [[value + rng.uniform(-4, 4) for value in target] for target in references[100:]]
    expected = sum(p is not None and iou(p, r) > 0.5 for p, r in zip(predictions, references)) / len(references)
    assert 0.2 < expected < 0.8
    result = compute("grounding_accuracy", predictions, references)["grounding_accuracy"]
    assert result == pytest.approx(100 * expected)


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        ([None, [0, 0, 1]], [[0, 0, 1, 1]] * 2, r"predictions\[1\] is \[0, 0, 1\]"),
        ([[0, 0, 1, math.nan]], [[0, 0, 1, 1]], r"predictions\[0\] is \[0, 0, 1, nan\]"),
        ([[0, 0, 1, math.inf]], [[0, 0, 1, 1]], r"predictions\[0\]"),
        ([["a", 0, 1, 1]], [[0, 0, 1, 1]], r"predictions\[0\] is \['a', 0, 1, 1\]"),
        ([[0, 0, 1, 1]], [None], r"references\[0\] is None"),
        ([[0, 0, 1, 1]], [[0, 0, 1, 1, 1]], r"references\[0\]"),
    ],
)
def test_grounding_accuracy_malformed_box_names_the_sample(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        compute("grounding_accuracy", predictions, references)


def test_grounding_accuracy_counts_samples_over_batches():
    metric = load("grounding_accuracy")
    metric.add_batch(predictions=[[0, 0, 1, 1], None], references=[[0, 0, 1, 1]] * 2)
    with pytest.raises(ValueError, match=r"predictions\[2\]"):
        metric.add_batch(predictions=[[0, 0, 1]], references=[[0, 0, 1, 1]])
    metric.add(prediction=[0, 0, 2, 2], reference=[0, 0, 2, 2])
    # 2 right of 3
    assert metric.compute()["grounding_accuracy"] == pytest.approx(200 / 3)


# ---------------------------------------------------------------------------------------------------------------
# POPE


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No.", "no"),  # the reference read this as "yes"
        ("no", "no"),
        (" NO ", "no"),
        ("No, there is no cat.", "no"),
        ("no. . ", "no"),
        ("Yes.", "yes"),
        ("none", "yes"),
        ("not sure", "yes"),
        ("Nope", "yes"),
        ("", "yes"),
    ],
)
def test_pope_reads_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_pope_hand_computed():
    predictions = ["Yes.", "No.", "no, there is no cat", "yes", "Nope", "", "NO", "not sure"]
    references = ["yes", "no", "No", "no", "no", " yes", "yes", "no"]
    # guesses  Y N N Y Y Y N Y
    # truths   Y N N N N Y Y N
    # TP 2 (0, 5), FP 3 (3, 4, 7), FN 1 (6), TN 2 (1, 2)
    result = compute("pope", predictions, references)
    assert result == pytest.approx(
        {
            "accuracy": 100 * 4 / 8,
            "precision": 100 * 2 / 5,
            "recall": 100 * 2 / 3,
            "f1": 100 * 2 * 2 / (2 * 2 + 3 + 1),
            "yes_ratio": 100 * 5 / 8,
        }
    )


def test_pope_no_positive_guesses_scores_zero_not_nan():
    result = compute("pope", ["no", "No."], ["yes", "no"])
    assert result == {"accuracy": 50.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}


def test_pope_bad_reference_names_the_sample():
    with pytest.raises(ValueError, match=r"references\[1\] is 'maybe'"):
        compute("pope", ["yes", "no"], ["yes", "maybe"])


# ---------------------------------------------------------------------------------------------------------------
# Multiple choice


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A.", "A"),
        ("b. a cat on a mat", "B"),
        ("  C  ", "C"),
        ("d", "D"),
        ("(C)", "C"),
        ("(c) a cat", "C"),
        ("D)", "D"),
        ("A: the red one", "A"),
        ("B red car", "B"),
        ("a red car", None),  # lower-case "a" followed by text is a word
        ("The answer is A", None),
        ("AB.", None),
        ("(A", None),
        ("1.", None),
        ("é.", None),
        ("", None),
    ],
)
def test_multiple_choice_reads_the_letter(text, expected):
    assert parse_option_letter(text) == expected


def test_multiple_choice_hand_computed():
    predictions = ["A.", "(b)", "C red", "d", "maybe", "E"]
    references = ["A", "B", "C", "A", "E", " e "]
    # right, right, right, wrong (D), wrong (no letter), right (case-insensitive): 4 of 6
    assert compute("multiple_choice", predictions, references)["accuracy"] == pytest.approx(400 / 6)


@pytest.mark.parametrize("reference", ["AB", "", "1"])
def test_multiple_choice_bad_reference_names_the_sample(reference):
    with pytest.raises(ValueError, match=r"references\[1\] is"):
        compute("multiple_choice", ["A", "B"], ["A", reference])


@FAST
@given(st.text())
def test_answer_parsers_never_raise_on_a_string(text):
    assert parse_option_letter(text) in (None, *"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert parse_yes_no(text) in ("yes", "no")
    assert parse_true_false(text) in (None, True, False)


# ---------------------------------------------------------------------------------------------------------------
# Image-text match


def test_image_text_match_hand_computed():
    predictions = ["True.", "false", "Yes", "no.", "maybe", "", "TRUE", "true"]
    references = [True, False, False, True, True, False, 1, 0]
    # parsed   T F T F - - T T       (- unparsed: taken as the wrong class)
    # guesses  T F T F F T T T
    # truths   T F F T T F T F
    # right: 0, 1, 6 -> 3 of 8; TP 2 (0, 6), FP 3 (2, 5, 7), FN 2 (3, 4)
    result = compute("image_text_match", predictions, references)
    assert result == pytest.approx({"accuracy": 100 * 3 / 8, "f1": 100 * 2 * 2 / (2 * 2 + 3 + 2), "unparsed": 2})
    assert result["unparsed"] == 2 and isinstance(result["unparsed"], int)


def test_image_text_match_no_true_positive_gives_zero_f1():
    assert compute("image_text_match", ["false", "false"], [False, False]) == {
        "accuracy": 100.0,
        "f1": 0.0,
        "unparsed": 0,
    }


def test_image_text_match_bad_reference_names_the_sample():
    with pytest.raises(ValueError, match=r"references\[1\] is 2"):
        compute("image_text_match", ["true", "true"], [1, 2])


# ---------------------------------------------------------------------------------------------------------------
# CIDEr

ORDINARY_CAPTIONS = [
    "A man riding a wave on top of a surfboard.",
    "Two dogs (one brown, one white) play in the snow.",
    "A woman's hands holding a smartphone, texting.",
    "The men aren't wearing hats; they're wearing helmets.",
    'A stop sign that reads "STOP" at the corner of the street.',
    "a kitchen with a stove , a sink , and a refrigerator .",
    "An old black-and-white photo of a train station.",
    "Is this a cat? No, it's a small dog!",
    "A baseball player swinging a bat at 3:45 pm...",
    "people sitting at a table: eating, drinking and talking",
    "A 10-year-old boy's birthday cake with 10 candles.",
    "An elephant -- huge and gray -- walks by the river.",
    "Dogs' toys scattered on the floor of the U.S. Capitol.",
    "It's 10 o'clock and the clock tower's lights are on.",
    "A plate with 2 slices of pizza & a soda [photo].",
    "A bowl of fruit: apples, oranges and bananas, 3,000 of them.",
    "The kitchen's counter is covered with pots/pans.",
    "There's a #1 sign on the door, and 100% of the seats are full.",
    "Someone cannot stop smiling; it\u2019s a \u201cgreat\u201d day\u2026",
    "",
]


def test_python_tokenizer_hand_cases():
    assert cider_module.python_ptb_tokenize('A man\'s dog, running (fast) on the "beach".') == (
        "a man 's dog running -lrb- fast -rrb- on the beach"
    )
    assert cider_module.python_ptb_tokenize("Don't stop -- it's 3,000 km... Yes!") == "do n't stop it 's 3,000 km yes"
    assert cider_module.python_ptb_tokenize("  ") == ""


@needs_java
def test_ptb_and_python_tokenizers_agree_on_ordinary_captions():
    ptb = cider_module.tokenize_captions(ORDINARY_CAPTIONS, "ptb")
    python = cider_module.tokenize_captions(ORDINARY_CAPTIONS, "python")
    assert ptb == python
    assert ptb[0] == "a man riding a wave on top of a surfboard"


def test_auto_tokenizer_uses_python_without_java(monkeypatch):
    monkeypatch.setattr(cider_module, "java_available", lambda: False)
    assert cider_module.tokenize_captions(["A dog's toy."], "auto") == ["a dog 's toy"]
    with pytest.raises(ValueError, match="no `java` is on the PATH"):
        cider_module.tokenize_captions(["A dog."], "ptb")
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        cider_module.tokenize_captions(["A dog."], "spacy")


def test_auto_tokenizer_falls_back_when_java_fails(monkeypatch):
    def read_only(captions):
        raise PermissionError("read-only folder")

    monkeypatch.setattr(cider_module, "java_available", lambda: True)
    monkeypatch.setattr(cider_module, "_ptb_tokenize", read_only)
    with pytest.warns(UserWarning, match="read-only folder"):
        assert cider_module.tokenize_captions(["A dog's toy."], "auto") == ["a dog 's toy"]
    with pytest.raises(PermissionError):
        cider_module.tokenize_captions(["A dog's toy."], "ptb")


# Two images with no word in common, one reference each.
DISJOINT_REFERENCES = [["A brown dog runs across green grass."], ["Three red cars parked near tall buildings."]]


@pytest.mark.parametrize("tokenizer", ["python", pytest.param("ptb", marks=needs_java)])
def test_cider_hand_computed(tokenizer):
    # A prediction equal to its only reference, with n-grams found in no other image (idf log(2) > 0): each n-gram
    # order n = 1..4 gives cosine 1 and no length penalty, so the image scores mean(1, 1, 1, 1) * 10 = 10 -> 1000.
    predictions = [references[0] for references in DISJOINT_REFERENCES]
    assert compute("cider", predictions, DISJOINT_REFERENCES, tokenizer=tokenizer)["cider"] == pytest.approx(1000)
    # An empty prediction scores 0: (0 + 1000) / 2.
    result = compute("cider", ["", predictions[1]], DISJOINT_REFERENCES, tokenizer=tokenizer)
    assert result["cider"] == pytest.approx(500)


def test_cider_short_caption_has_no_4_grams():
    # 3 words: cosines 1, 1, 1 and 0 for the missing 4-grams: mean 0.75 * 10 -> 750 for each image.
    references = [["red car parked"], ["dog runs fast"]]
    assert compute("cider", ["red car parked", "dog runs fast"], references, tokenizer="python")["cider"] == (
        pytest.approx(750)
    )


CAPTION_REFERENCES = [
    ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave.", "A man surfing in the ocean."],
    ["Two dogs play in the snow.", "A brown dog and a white dog in snow.", "Dogs running through the snow."],
    ["A plate of pizza on a table.", "A pizza with cheese on a plate.", "Slices of pizza sit on a white plate."],
    ["A red bus drives down a city street.", "A double-decker bus on the road.", "A bus driving past buildings."],
]


def test_cider_right_captions_beat_wrong_ones():
    right = [
        "A man surfing a large wave.",
        "Two dogs playing in the snow.",
        "A plate of pizza.",
        "A red bus on a street.",
    ]
    wrong = right[1:] + right[:1]
    right_score = compute("cider", right, CAPTION_REFERENCES, tokenizer="python")["cider"]
    wrong_score = compute("cider", wrong, CAPTION_REFERENCES, tokenizer="python")["cider"]
    assert right_score > 50 > wrong_score


def test_cider_is_invariant_to_sample_order():
    predictions = ["A man surfing a large wave.", "Two dogs in the snow.", "", "A bus on a street."]
    score = compute("cider", predictions, CAPTION_REFERENCES, tokenizer="python")["cider"]
    order = [2, 0, 3, 1]
    shuffled = compute(
        "cider", [predictions[i] for i in order], [CAPTION_REFERENCES[i] for i in order], tokenizer="python"
    )
    assert shuffled["cider"] == pytest.approx(score, rel=1e-12)


@pytest.mark.parametrize("tokenizer", ["python", pytest.param("ptb", marks=needs_java)])
def test_cider_equals_pycocoevalcap_on_the_tokenized_captions(tokenizer):
    predictions = ["A man surfing a large wave.", "Two dogs in the snow!", "A pizza, on a plate.", "A bus."]
    # One tokenizer run (a Java process for "ptb") for every caption.
    tokens = cider_module.tokenize_captions(predictions + sum(CAPTION_REFERENCES, []), tokenizer)
    res = {index: [tokens[index]] for index in range(len(predictions))}
    gts = {index: tokens[4 + 3 * index : 7 + 3 * index] for index in range(len(CAPTION_REFERENCES))}
    expected, _ = Cider().compute_score(gts, res)
    result = compute("cider", predictions, CAPTION_REFERENCES, tokenizer=tokenizer)
    assert result["cider"] == pytest.approx(100 * expected, rel=1e-12)


def test_cider_errors():
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        compute("cider", ["a", "b"], [["a"], []], tokenizer="python")
    with pytest.raises(ValueError, match="no words after tokenization"):
        compute("cider", ["a", "b"], [["..."], ["!"]], tokenizer="python")
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        compute("cider", ["a"], [["a"]], tokenizer="nltk")


@FAST
@given(st.text())
def test_python_tokenizer_never_raises_on_a_string(text):
    tokens = cider_module.python_ptb_tokenize(text)
    assert tokens == " ".join(tokens.split())
    assert not re.search(r"(^| )[.,?!:;]( |$)", tokens)


# ---------------------------------------------------------------------------------------------------------------
# docs/results.md

# The benchmark names of `vlmamba evaluate`, which the results page must use.
BENCHMARKS = tuple(evaluation.BENCHMARKS)


def markdown_tables(text):
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= {"-"} for cell in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def test_results_page_uses_the_benchmark_and_metric_names():
    scores, vl_mamba, protocol = markdown_tables(
        (Path(__file__).parents[1] / "docs" / "results.md").read_text(encoding="utf-8")
    )
    columns = scores[0][1:]
    assert set(columns) - {"pope"} < set(BENCHMARKS)
    # Mamba-VL / Pythia-VL were not scored on VL-Mamba's benchmarks, nor VL-Mamba on theirs.
    assert set(BENCHMARKS) - set(columns) == {"pope_adversarial", "pope_popular", "pope_random", "scienceqa_img", "mme",
                                              "mmbench_dev"}
    assert set(vl_mamba[0][1:]) - {"pope", "MM-Vet"} < set(BENCHMARKS)
    assert len(scores) == 7 and all(len(row) == len(columns) + 1 for row in scores)
    assert dict(zip(columns, scores[-1][1:]))["coco"] == "135.53"
    assert [row[0] for row in protocol[1:]] == list(BENCHMARKS)
    assert {row[2] for row in protocol[1:]} == set(METRICS)
