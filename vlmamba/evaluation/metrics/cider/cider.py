# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CIDEr-D of generated captions, scored by pycocoevalcap after PTB tokenization."""

import re
import shutil
import warnings

import datasets
import evaluate
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer


_DESCRIPTION = """\
CIDEr-D (consensus-based image description evaluation) of generated captions against human captions, as computed by
pycocoevalcap's `Cider` scorer (the COCO caption evaluation: 1- to 4-grams, TF-IDF weights from the references of the
whole evaluated set, clipping and a length penalty), multiplied by 100 as published tables report it. The document
frequencies come from the evaluated set itself, so scores of different sets are not comparable and a set of one
image always scores 0.

Captions are tokenized as the COCO evaluation does: Stanford's PTB tokenizer (pycocoevalcap's `PTBTokenizer`, which
runs Java), lower-cased, with the punctuation tokens it lists removed (. , ? ! : ; - -- ... and quotes). Without
Java, a pure-Python equivalent (`python_ptb_tokenize`) gives the same tokens on ordinary captions.
"""

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={{CIDEr}: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2015}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per image; an empty caption scores 0.
    references (`list[list[str]]`): the human captions of each image (any number, at least one).
    tokenizer (`str`, default `"auto"`): `"ptb"` (pycocoevalcap's `PTBTokenizer`, needs `java`), `"python"`
        (`python_ptb_tokenize`), or `"auto"`: `"ptb"` when `java` is on the PATH, else (or when the Java run fails,
        with a warning) `"python"`.

Returns:
    `{"cider": float}`: the corpus CIDEr-D x 100.

Example:
    >>> metric = evaluate.load("vlmamba/evaluation/metrics/cider")
    >>> result = metric.compute(predictions=["a dog runs", "a red car"],
    ...                         references=[["a dog is running", "a dog runs"], ["a red car parked"]])
    >>> round(result["cider"], 2)
    526.31
"""

TOKENIZERS = ("auto", "ptb", "python")

# The PTB tokenizer writes brackets as these tokens; with -lowerCase they are lower-cased, so pycocoevalcap's list of
# dropped tokens (which has them in upper case) keeps them.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."})
# Always a token of their own (quotes, brackets, dashes, ellipses, symbols), whatever surrounds them.
_SEPARATE = re.compile(r"""(\.\.\.|--|[\u2013\u2014]|["()\[\]{};&$#%<>])""")
# A comma stays inside a number ("3,000", ",5") and a colon inside a time ("10:30") or a URL ("http://");
# elsewhere they are tokens.
_COMMA = re.compile(r",(?!\d)")
_COLON = re.compile(r"(?<!\d):(?!//)|:(?![\d/])")
_TRAILING_MARKS = re.compile(r"(.+?)([?!]+|[.'/])$")
_CLITIC = re.compile(r"(.+?)(n't|'s|'m|'d|'ll|'re|'ve)$")
# Words the PTB tokenizer splits in two.
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "gimme": ("gim", "me"),
    "lemme": ("lem", "me"),
}
# Words that keep their final period: initialisms ("u.s.", "p.m.", "e.g.") and common abbreviations.
_INITIALISM = re.compile(r"(?:[a-z]\.){2,}")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "inc.", "co.", "ltd.", "mt."}
)


def _split_word(word: str) -> list[str]:
    if word in _BRACKETS:
        return [_BRACKETS[word]]
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    before = []
    # An opening single quote ("'quoted") is a token; "'90s" and the clitics ("'s") are words.
    if len(word) > 1 and word[0] == "'" and not word[1].isdigit() and not _CLITIC.fullmatch("x" + word):
        before, word = ["'"], word[1:]
    after = []
    while True:
        if word.endswith(".") and (_INITIALISM.fullmatch(word) or word in _ABBREVIATIONS):
            break
        match = _TRAILING_MARKS.fullmatch(word)
        if match is None:
            break
        word, mark = match.groups()
        after.insert(0, mark)
    match = _CLITIC.fullmatch(word)
    words = [*match.groups()] if match else [word]
    return before + words + after


def python_ptb_tokenize(caption: str) -> str:
    """Tokenizes a caption like pycocoevalcap's `PTBTokenizer` (Stanford PTB tokenizer, lower-cased, punctuation
    tokens removed), in pure Python.

    Lower-cases; splits off quotes, brackets (kept as `-lrb-`, `-rrb-`, `-lsb-`, `-rsb-`, `-lcb-`, `-rcb-`, as the
    PTB script leaves them), `; & $ # % < >`, dashes, ellipses, commas (not inside numbers), colons (not inside times),
    trailing `. ? ! ' /` (a period stays on initialisms like `u.s.` and a few abbreviations like `mr.`) and the
    clitics `n't 's 'm 'd 'll 're 've` (`"don't"` -> `do n't`, `"dog's"` -> `dog 's`); splits `cannot`, `gonna`,
    `gotta`, `wanna`, `gimme`, `lemme`; then drops pycocoevalcap's punctuation tokens. Hyphenated words, numbers
    (`3,000`, `1.5`), times and URLs stay whole. Rare constructs the Java tokenizer handles with context (emoticons,
    `AT&T`, other abbreviations, currency signs other than `$`) may be split differently.

    Returns:
        The tokens joined by single spaces (what pycocoevalcap's scorers take).
    """
    text = caption.translate(_TYPOGRAPHIC).lower()
    text = _COLON.sub(" : ", _COMMA.sub(" , ", _SEPARATE.sub(r" \1 ", text)))
    tokens = [token for word in text.split() for token in _split_word(word)]
    tokens = ["--" if token in ("\u2013", "\u2014") else "''" if token == '"' else token for token in tokens]
    return " ".join(token for token in tokens if token not in PUNCTUATIONS)


def java_available() -> bool:
    """Whether a `java` executable is on the PATH (pycocoevalcap's `PTBTokenizer` runs one)."""
    return shutil.which("java") is not None


def _ptb_tokenize(captions: list[str]) -> list[str]:
    # One caption per line: any whitespace that Java or Python could take for a line break becomes a space.
    lines = [" ".join(caption.split()) for caption in captions]
    # Empty captions never reach Java, whose output would then have fewer lines than captions.
    nonempty = [index for index, line in enumerate(lines) if line]
    tokenized = [""] * len(lines)
    if nonempty:
        result = PTBTokenizer().tokenize({index: [{"caption": lines[index]}] for index in nonempty})
        if sorted(result) != nonempty:
            raise RuntimeError(
                f"The PTB tokenizer returned {len(result)} of {len(nonempty)} captions; pass tokenizer='python'."
            )
        for index in nonempty:
            tokenized[index] = result[index][0]
    return tokenized


def tokenize_captions(captions: list[str], tokenizer: str = "auto") -> list[str]:
    """Tokenizes captions for CIDEr with `tokenizer` (`"ptb"`, `"python"` or `"auto"`, see `Cider`'s inputs).

    Returns:
        One string of space-separated tokens per caption.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}.")
    if tokenizer == "ptb" and not java_available():
        raise ValueError("tokenizer='ptb' runs Java, and no `java` is on the PATH; use tokenizer='python'.")
    if tokenizer == "ptb":
        return _ptb_tokenize(captions)
    if tokenizer == "auto" and java_available():
        try:
            return _ptb_tokenize(captions)
        except (OSError, RuntimeError) as error:  # e.g. a read-only pycocoevalcap folder for its temporary file
            warnings.warn(f"The PTB tokenizer failed ({error}); tokenizing in Python instead.", stacklevel=2)
    return [python_ptb_tokenize(caption) for caption in captions]


def _check_inputs(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions and {len(references)} references; pass one of each.")
    if not predictions:
        raise ValueError("Got no predictions and no references; pass at least one of each.")


class CIDEr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, tokenizer="auto"):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}.")
        _check_inputs(predictions, references)
        for index, captions in enumerate(references):
            if not captions:
                raise ValueError(f"references[{index}] is empty; each image needs at least one reference caption.")
        # One tokenizer run for all captions (each PTB run starts a Java process).
        tokens = tokenize_captions(
            list(predictions) + [caption for captions in references for caption in captions], tokenizer
        )
        if not any(tokens[len(predictions) :]):
            raise ValueError("The reference captions have no words after tokenization; CIDEr is undefined.")
        results, gts, start = {}, {}, len(predictions)
        for index, captions in enumerate(references):
            results[index] = [tokens[index]]
            gts[index] = tokens[start : start + len(captions)]
            start += len(captions)
        score, _ = Cider().compute_score(gts, results)
        return {"cider": 100.0 * float(score)}


__all__ = ["TOKENIZERS", "python_ptb_tokenize", "java_available", "tokenize_captions", "CIDEr"]
