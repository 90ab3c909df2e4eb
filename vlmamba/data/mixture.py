# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Mixtures of sources: `mix_sources` draws a seeded, weighted mixture of loaded datasets, after unifying their columns
(a column whose type differs between sources is stored as JSON, which needs datasets >= 4.7)."""

import math
import numbers

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets

from .records import _short


# A source's weight that is its number of rows: such sources are concatenated, as the reference built its mixture.
ROWS_WEIGHT = "rows"

try:  # datasets >= 4.7
    from datasets import Json
except ImportError:  # pragma: no cover
    Json = None


def _is_null(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype == "null"


def _unify(datasets: list[Dataset]) -> list[Dataset]:
    """The datasets with the same columns: the union of all columns in first-seen order, a missing column filled
    with `None`. A column whose type differs between datasets (`answer`: a string in vqa, a bool in
    image_text_match, an index in multiple_choice; `choices`: strings or boxes) is stored as JSON (the `Json`
    feature of datasets >= 4.7), so each row reads back its own Python value."""
    features: dict = {}
    for dataset in datasets:
        for name, feature in dataset.features.items():
            known = features.get(name)
            if known is None or _is_null(known):
                features[name] = feature
            elif known != feature and not _is_null(feature):
                if Json is None:
                    raise ValueError(
                        f"Column {name!r} has different types in the sources ({known} and {feature}); mixing them "
                        "stores it as JSON, which needs datasets >= 4.7."
                    )
                features[name] = Json()
    features = Features(features)
    aligned = []
    for dataset in datasets:
        for name, feature in features.items():
            if name not in dataset.column_names:
                dataset = dataset.add_column(name, [None] * len(dataset), feature=feature)
        dataset = dataset.select_columns(list(features))
        if dataset.features != features:
            dataset = dataset.cast(features)
        aligned.append(dataset)
    return aligned


def mix_sources(datasets_with_weights, seed: int, num_samples: int | None = None) -> Dataset:
    """A weighted mixture of datasets: each row comes from dataset `i` with probability `weight_i / sum(weights)`.

    The source of every row is drawn with `numpy.random.default_rng(seed)`; each dataset's rows are then taken in a
    seeded random order, reshuffled each time the dataset is used up (a dataset drawn more often than it has rows is
    repeated, one drawn less often is subsampled without repeats). This is `datasets.interleave_datasets` with
    probabilities, except that the length is `num_samples` and rows are shuffled within each source. The result
    selects rows of the concatenated datasets (an indices mapping, no copy). The same seed gives the same mixture.

    Columns are unified: the mixture has every column of every dataset, `None` where a dataset has none (the rows
    still build the same prompts: `build_prompt` treats `None` as missing). A column with different types in
    different datasets is stored as JSON and reads back each row's own value (see `_unify`).

    A weight may be `"rows"` (`ROWS_WEIGHT`): the dataset's number of rows. When every weight is `"rows"` and
    `num_samples` is not given, the mixture is the concatenation of the datasets, every row exactly once, in a seeded
    random order: the reference's stage-2 mixture (a source listed twice is in it twice).

    Args:
        datasets_with_weights: `(dataset, weight)` pairs; weights are non-negative numbers or `"rows"`, not all 0
            (datasets with weight 0 are left out).
        seed: the random seed.
        num_samples: the mixture's length; by default the total length of the datasets of positive weight.

    Returns:
        The mixture `Dataset`.
    """
    pairs = list(datasets_with_weights)
    if not pairs:
        raise ValueError("datasets_with_weights is empty; pass (dataset, weight) pairs.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    datasets, weights, rows_weights = [], [], 0
    for position, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], Dataset):
            raise ValueError(f"datasets_with_weights[{position}] must be a (Dataset, weight) pair, got {_short(pair)}.")
        dataset, weight = pair
        if weight == ROWS_WEIGHT:
            weight = len(dataset)
            rows_weights += 1
        elif (
            isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0
        ):
            raise ValueError(
                f"The weight of dataset {position} must be a finite number >= 0 or {ROWS_WEIGHT!r}, got {weight!r}."
            )
        if weight == 0:
            continue
        if len(dataset) == 0:
            raise ValueError(f"Dataset {position} is empty but has weight {weight}.")
        datasets.append(dataset)
        weights.append(float(weight))
    if not datasets:
        raise ValueError("All weights are 0; give at least one dataset a positive weight.")
    lengths = [len(dataset) for dataset in datasets]
    if num_samples is None:
        num_samples = sum(lengths)
    elif isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}.")

    rng = np.random.default_rng(seed)
    concatenation = rows_weights == len(pairs) and num_samples == sum(lengths)
    if concatenation:
        picks = rng.permutation(np.repeat(np.arange(len(datasets)), lengths))
    else:
        probabilities = np.asarray(weights) / sum(weights)
        picks = rng.choice(len(datasets), size=int(num_samples), p=probabilities)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    indices = np.empty(int(num_samples), dtype=np.int64)
    for number, length in enumerate(lengths):
        positions = np.flatnonzero(picks == number)
        if len(positions) == 0:
            continue
        epochs = -(-len(positions) // length)
        order = np.concatenate([rng.permutation(length) for _ in range(epochs)])[: len(positions)]
        indices[positions] = offsets[number] + order
    return concatenate_datasets(_unify(datasets)).select(indices)


__all__ = [
    "mix_sources",
]
