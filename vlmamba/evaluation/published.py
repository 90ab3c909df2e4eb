# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The scores the paper reports for its instruction-tuned (stage 2) checkpoints, by Hub repo and benchmark name
(percentages, CIDEr x 100), as `docs/results.md` quotes them. Model cards of converted checkpoints cite them."""

PAPER = {
    "title": "Shaking Up VLMs: Comparing Transformers and Structured State Space Models for Vision & Language Modeling",
    "authors": "Pantazopoulos et al.",
    "venue": "EMNLP 2024",
    "arxiv": "2409.05395",
}

BENCHMARKS = (
    "coco", "nocaps", "vqav2", "gqa", "v7w_telling", "vsr", "pope", "refcoco_testa", "refcoco_testb", "refcoco+_testa",
    "refcoco+_testb", "refcocog_test", "v7w_pointing", "textcaps", "textvqa", "ai2d",
)

# One row per checkpoint: its name in the paper and the values in the order of `BENCHMARKS`.
_ROWS = {
    "gpantaz/finetuned_pythiavl_1b": ("Pythia-VL-1B", (
        132.89, 97.61, 72.26, 53.79, 81.96, 72.43, 86.77, 76.00,
        62.48, 45.36, 47.44, 67.58, 83.78, 92.73, 35.22, 77.62,
    )),
    "gpantaz/finetuned_mambavl_790m": ("Mamba-VL-790M", (
        133.81, 99.00, 71.67, 54.95, 81.82, 75.39, 86.77, 67.84,
        56.35, 57.97, 41.43, 59.16, 74.01, 94.30, 40.72, 79.27,
    )),
    "gpantaz/finetuned_pythiavl_1.4b": ("Pythia-VL-1.4B", (
        134.06, 100.72, 73.57, 57.05, 83.06, 77.72, 86.40, 82.43,
        68.39, 72.35, 55.16, 72.56, 86.13, 94.60, 37.54, 79.27,
    )),
    "gpantaz/finetuned_mambavl_1.4b": ("Mamba-VL-1.4B", (
        134.76, 100.56, 74.46, 58.44, 83.78, 80.18, 85.32, 76.60,
        63.48, 68.40, 52.11, 68.82, 80.18, 98.68, 41.30, 80.86,
    )),
    "gpantaz/finetuned_pythiavl_2.8b": ("Pythia-VL-2.8B", (
        134.97, 101.27, 75.08, 59.76, 84.34, 80.86, 86.87, 85.39,
        70.82, 75.39, 58.62, 76.24, 86.61, 99.74, 39.14, 81.57,
    )),
    "gpantaz/finetuned_mambavl_2.8b": ("Mamba-VL-2.8B", (
        135.53, 102.00, 76.08, 60.41, 85.31, 81.45, 87.33, 79.29,
        64.97, 71.64, 53.94, 71.27, 82.50, 100.47, 42.14, 83.71,
    )),
}

PAPER_SCORES = {repo: dict(zip(BENCHMARKS, scores, strict=True)) for repo, (_, scores) in _ROWS.items()}
MODEL_NAMES = {repo: name for repo, (name, _) in _ROWS.items()}

__all__ = ["PAPER", "BENCHMARKS", "PAPER_SCORES", "MODEL_NAMES"]
