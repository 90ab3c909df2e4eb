# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""`vlmamba.evaluation` and `vlmamba evaluate`: tiny annotation files in the official layouts, tiny images, tiny saved
models, and a scripted model whose answers the tests choose, so that scores can be computed by hand."""

import fcntl
import functools
import json
import pickle
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocoevalcap.cider.cider import Cider

from tests.tiny import IMAGE_SIZE, make_processor, save_tiny
from vlmamba import data
from vlmamba.cli import _annotation_overrides, main
from vlmamba.evaluation import (
    BENCHMARKS,
    benchmark_paths,
    evaluate_benchmark,
    evaluate_benchmarks,
    output_lock,
    read_answer,
    read_predictions,
    results_table,
    weights_fingerprint,
)
from vlmamba.evaluation.metrics import METRICS
from vlmamba.evaluation.runner import LOCK_FILE, _content_hash
from vlmamba.models.tasks import MAX_NEW_TOKENS, build_prompt
from vlmamba.predict import load_model


NAMES = [
    "coco",
    "nocaps",
    "textcaps",
    "vqav2",
    "gqa",
    "v7w_telling",
    "vsr",
    "pope_adversarial",
    "pope_popular",
    "pope_random",
    "refcoco_testa",
    "refcoco_testb",
    "refcoco+_testa",
    "refcoco+_testb",
    "refcocog_test",
    "v7w_pointing",
    "textvqa",
    "ai2d",
    "scienceqa_img",
    "mme",
    "mmbench_dev",
]
# The reference's decoding lengths (its evaluation scripts' defaults); vlmamba's choice for VL-Mamba's benchmarks,
# whose answers are read from the start of the text.
REFERENCE_LENGTHS = {
    "coco": 40,
    "nocaps": 40,
    "textcaps": 15,
    "vqav2": 15,
    "gqa": 20,
    "v7w_telling": 20,
    "v7w_pointing": 20,
    "textvqa": 20,
    "ai2d": 10,
    "vsr": 120,
    "pope_adversarial": 120,
    "pope_popular": 120,
    "pope_random": 120,
    "refcoco_testa": 120,
    "refcoco_testb": 120,
    "refcoco+_testa": 120,
    "refcoco+_testb": 120,
    "refcocog_test": 120,
    "scienceqa_img": 10,
    "mme": 10,
    "mmbench_dev": 10,
}
VQA = "Answer the question using a single word or phrase."
POPE_QUESTIONS = ["is there a dog in the image?", "is there a cat in the image?", "is there a car?", "is there a cup?"]
POPE_LABELS = ["yes", "no", "yes", "no"]
VQA_QUESTIONS = {11: "what colour is the wall?", 12: "how many people are in the picture here?", 13: "is it day?"}
VQA_ANSWERS = {
    11: ["red"] * 4 + ["blue"] * 6,
    12: ["2"] * 2 + ["3"] * 8,
    13: ["yes"] * 10,
}
REFCOCO_IMAGE = (200, 100)  # width, height


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def write_image(path: Path, size=(40, 30), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_data(root: Path) -> Path:
    """A data root in the layout of `vlmamba.evaluation` with five benchmarks: coco, vqav2, pope_random,
    refcoco_testa and v7w_telling."""
    val2014 = root / "coco" / "images" / "val2014"
    for image_id in (1, 2, 3, 4):
        write_image(val2014 / f"COCO_val2014_{image_id:012d}.jpg", size=(40 + 8 * image_id, 30), seed=image_id)
    coco_images = [
        {
            "cocoid": image_id,
            "filepath": "val2014",
            "filename": f"COCO_val2014_{image_id:012d}.jpg",
            "split": split,
            "sentences": [
                {"raw": f"A picture number {image_id}.", "sentid": 10 * image_id},
                {"raw": "Some colours", "sentid": 10 * image_id + 1},
            ],
        }
        for image_id, split in ((1, "test"), (2, "train"), (3, "test"), (4, "test"))
    ]
    write_json(root / "coco" / "dataset_coco.json", {"images": coco_images})

    questions = [{"question_id": qid, "image_id": qid - 10, "question": text} for qid, text in VQA_QUESTIONS.items()]
    write_json(
        root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json",
        {"data_subtype": "val2014", "questions": questions},
    )
    annotations = [
        {"question_id": qid, "answers": [{"answer": answer, "answer_id": n + 1} for n, answer in enumerate(answers)]}
        for qid, answers in VQA_ANSWERS.items()
    ]
    write_json(root / "vqav2" / "v2_mscoco_val2014_annotations.json", {"annotations": annotations})

    lines = [
        json.dumps(
            {"question_id": n + 1, "image": f"COCO_val2014_{n % 3 + 1:012d}.jpg", "text": question, "label": label}
        )
        for n, (question, label) in enumerate(zip(POPE_QUESTIONS, POPE_LABELS))
    ]
    (root / "pope").mkdir(parents=True)
    (root / "pope" / "coco_pope_random.json").write_text("\n".join(lines) + "\n")

    width, height = REFCOCO_IMAGE
    write_image(root / "coco" / "images" / "train2014" / "COCO_train2014_000000000010.jpg", (width, height), seed=9)
    refs = [
        {
            "ref_id": 1,
            "ann_id": 100,
            "image_id": 10,
            "split": "testA",
            "sentences": [{"raw": "the LEFT square", "sent_id": 1}, {"raw": "square on the left", "sent_id": 2}],
        },
        {
            "ref_id": 2,
            "ann_id": 101,
            "image_id": 10,
            "split": "testA",
            "sentences": [{"raw": "right circle", "sent_id": 3}],
        },
        {
            "ref_id": 3,
            "ann_id": 101,
            "image_id": 10,
            "split": "testB",
            "sentences": [{"raw": "not this", "sent_id": 4}],
        },
    ]
    (root / "refcoco").mkdir(parents=True)
    with open(root / "refcoco" / "refs(unc).p", "wb") as file:
        pickle.dump(refs, file)
    instances = {
        "images": [{"id": 10, "file_name": "COCO_train2014_000000000010.jpg", "width": width, "height": height}],
        "annotations": [
            {"id": 100, "image_id": 10, "bbox": [20, 20, 80, 40]},
            {"id": 101, "image_id": 10, "bbox": [120, 10, 60, 60]},
        ],
    }
    write_json(root / "refcoco" / "instances.json", instances)

    write_image(root / "visual7w" / "images" / "v7w_5.jpg", (36, 36), seed=5)
    qa_pairs = [
        {"qa_id": 51, "question": "What colour is the sky?", "answer": "Blue.", "multiple_choices": ["Red.", "Green."]},
        {"qa_id": 52, "question": "Where is it?", "answer": "Outside.", "multiple_choices": ["Inside.", "Home."]},
    ]
    v7w = {"images": [{"image_id": 5, "filename": "v7w_5.jpg", "split": "test", "qa_pairs": qa_pairs}]}
    write_json(root / "visual7w" / "dataset_v7w_telling.json", v7w)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny random models saved as a user publishes them, per family: the folder."""
    folders = {}
    for family in ("mamba", "pythia"):
        folder = tmp_path_factory.mktemp(family)
        save_tiny(family, folder)
        folders[family] = folder
    return folders


@pytest.fixture(scope="module")
def mamba(saved):
    return load_model(saved["mamba"])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class ScriptedModel:
    """Stands for a model: answers each sample with the answer of the first key found in its prompt (decoded), or
    with the next answer of a list, followed by the eos. It records the batch size of every `generate` call."""

    def __init__(self, tokenizer, answers: dict[str, str] | list[str], name: str = "scripted"):
        self.tokenizer = tokenizer
        self.answers = answers
        self.name_or_path = name
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.calls = []

    def generate(self, input_ids, attention_mask, pixel_values, max_new_tokens, **kwargs):
        assert pixel_values.shape == (len(input_ids), 3, IMAGE_SIZE, IMAGE_SIZE)
        assert kwargs["do_sample"] is False
        self.calls.append(len(input_ids))
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        new = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            if isinstance(self.answers, list):
                answer = self.answers.pop(0)
            else:
                answer = next(text for key, text in self.answers.items() if key in prompt)
            new.append((self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [eos])[:max_new_tokens])
        width = max(len(tokens) for tokens in new)
        new = torch.tensor([tokens + [pad] * (width - len(tokens)) for tokens in new])
        return torch.cat([input_ids, new], dim=1)


def count_generate_calls(model) -> list[int]:
    """Wraps `model.generate` to record the batch size of each call."""
    calls = []
    original = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.generate = generate
    return calls


# The registry


def test_registry_has_the_benchmarks_and_the_reference_lengths():
    assert list(BENCHMARKS) == NAMES
    for name, benchmark in BENCHMARKS.items():
        assert benchmark.name == name
        assert benchmark.max_new_tokens == REFERENCE_LENGTHS[name], name
        assert benchmark.metric in METRICS
        assert benchmark.loader in data.SOURCES.values()
    # The task defaults of `vlmamba.models.tasks` are the first benchmark's of each task.
    assert BENCHMARKS["coco"].max_new_tokens == MAX_NEW_TOKENS["captioning"]
    assert BENCHMARKS["vqav2"].max_new_tokens == MAX_NEW_TOKENS["vqa"]
    assert BENCHMARKS["refcoco_testa"].max_new_tokens == MAX_NEW_TOKENS["grounding"]


def test_layout_paths_and_overrides(tmp_path):
    files, images = benchmark_paths("vqav2", tmp_path)
    assert files == {
        "questions_json": tmp_path / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json",
        "annotations_json": tmp_path / "vqav2" / "v2_mscoco_val2014_annotations.json",
    }
    assert images == tmp_path / "coco" / "images" / "val2014"
    files, images = benchmark_paths(
        "textvqa", tmp_path, image_root=tmp_path / "img", annotations={"ocr_json": "ocr.json", "json_path": "t.json"}
    )
    assert files == {"json_path": Path("t.json"), "ocr_json": Path("ocr.json")}
    assert images == tmp_path / "img" / "textvqa" / "train_images"
    assert benchmark_paths("textvqa", annotations={"json_path": "t.json", "images": "pics"}) == (
        {"json_path": Path("t.json")},
        Path("pics"),
    )
    with pytest.raises(ValueError, match=r"'textvqa': unknown annotation key\(s\) \['ocr'\]"):
        benchmark_paths("textvqa", tmp_path, annotations={"ocr": "x"})
    with pytest.raises(ValueError, match="'gqa': give a data root .*gqa/testdev_balanced_questions.json"):
        benchmark_paths("gqa")
    with pytest.raises(ValueError, match="Unknown benchmark 'okvqa'"):
        benchmark_paths("okvqa", tmp_path)


@functools.cache
def _processor():
    return make_processor()


def _read(benchmark, text, size):
    """`read_answer` of the answer `generate_answers` gives for the generated `text` (boxes read by the processor)."""
    answer = _processor().post_process_grounding([text], image_sizes=[size])[0]
    return read_answer(benchmark, answer)


def test_read_answer_post_processing():
    coco, gqa, refcoco = BENCHMARKS["coco"], BENCHMARKS["gqa"], BENCHMARKS["refcoco_testa"]
    assert _read(coco, "A dog on a  sofa.\n##\nmore", None) == "A dog on a sofa. more"
    assert _read(gqa, " Yes. ", None) == "Yes"
    assert _read(gqa, "2.5", None) == "2.5"
    assert _read(gqa, "a.b..", None) == "a.b."
    # Normalized [0.10,0.20,0.50,0.60] of a 200 x 100 (width x height) image.
    assert _read(refcoco, "[0.10,0.20,0.50,0.60].", (100, 200)) == pytest.approx([20.0, 20.0, 100.0, 60.0])
    assert _read(refcoco, "the left one [0.1,0.2,0.5,0.6] and [0,0,1,1]", (100, 200)) == pytest.approx(
        [20.0, 20.0, 100.0, 60.0]
    )
    assert _read(refcoco, "no box here", (100, 200)) is None
    assert _read(refcoco, "[0.10,0.20,0.5", (100, 200)) is None


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_read_answer_never_raises_on_model_output(text):
    for name in ("coco", "vqav2", "refcoco_testa", "pope_random", "v7w_telling"):
        _read(BENCHMARKS[name], text, (100, 200))


# The pipeline on a tiny model


def test_predictions_file_one_line_per_sample_with_references(mamba, data_root, tmp_path):
    model, processor = mamba
    expected = {
        "coco": [
            ("1", ["A picture number 1.", "Some colours"]),
            ("3", ["A picture number 3.", "Some colours"]),
            ("4", ["A picture number 4.", "Some colours"]),
        ],
        "vqav2": [(str(qid), answers) for qid, answers in VQA_ANSWERS.items()],
        "pope_random": [(str(n + 1), label) for n, label in enumerate(POPE_LABELS)],
        "refcoco_testa": [
            ("1-1", [20.0, 20.0, 100.0, 60.0]),
            ("1-2", [20.0, 20.0, 100.0, 60.0]),
            ("2-3", [120.0, 10.0, 180.0, 70.0]),
        ],
    }
    letters = {}
    for row in data.load_visual7w(data_root / "visual7w" / "dataset_v7w_telling.json", "x", split="test"):
        letters[row["id"]] = "ABC"[row["answer"]]
    expected["v7w_telling"] = [("51", letters["51"]), ("52", letters["52"])]
    for name, rows in expected.items():
        result = evaluate_benchmark(
            model, processor, name, data_root, output_dir=tmp_path, batch_size=2, max_new_tokens=3, progress=False
        )
        lines = read_lines(tmp_path / f"{name}.predictions.jsonl")
        assert [(line["id"], line["references"]) for line in lines] == rows, name
        assert all(set(line) == {"id", "image", "prompt", "generated", "prediction", "references"} for line in lines)
        assert result["counts"] == {"samples": len(rows), "generated": len(rows), "resumed": 0} | (
            {"no_box": result["counts"]["no_box"]} if name == "refcoco_testa" else {}
        )
        assert result["complete"] and result["model"] == model.name_or_path
        assert json.loads((tmp_path / f"{name}.scores.json").read_text()) == result
    pope = read_lines(tmp_path / "pope_random.predictions.jsonl")
    # POPE's evaluation prompt: the question alone on its line, one string after the image.
    assert pope[0]["prompt"] == f"<image>{VQA}\nIs there a dog in the image?\n"
    assert pope[0]["image"] == str(data_root / "coco" / "images" / "val2014" / "COCO_val2014_000000000001.jpg")
    vqa = read_lines(tmp_path / "vqav2.predictions.jsonl")
    assert vqa[0]["prompt"] == f"<image>{VQA}\nQuestion: What colour is the wall?\nAnswer: "
    assert not (tmp_path / "results.json").exists(), "evaluate_benchmark alone writes no results.json"


@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_batched_generation_equals_one_by_one(saved, data_root, tmp_path, family):
    model, processor = load_model(saved[family])
    for name in ("vqav2", "pope_random"):
        texts = {}
        for batch_size in (1, 3):
            calls = count_generate_calls(model)
            output_dir = tmp_path / f"batch{batch_size}"
            evaluate_benchmark(
                model,
                processor,
                name,
                data_root,
                output_dir=output_dir,
                batch_size=batch_size,
                max_new_tokens=6,
                progress=False,
            )
            del model.generate
            samples = 3 if name == "vqav2" else 4
            assert calls == [min(batch_size, samples - first) for first in range(0, samples, batch_size)]
            texts[batch_size] = [line["generated"] for line in read_lines(output_dir / f"{name}.predictions.jsonl")]
        assert texts[1] == texts[3], (family, name)
        assert any(texts[1]), "the tiny model wrote something"


def test_resume_generates_only_the_missing_samples(mamba, data_root, tmp_path):
    model, processor = mamba
    kwargs = dict(output_dir=tmp_path / "full", batch_size=2, max_new_tokens=4, progress=False)
    full = evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    full_lines = read_lines(tmp_path / "full" / "pope_random.predictions.jsonl")

    # A run killed while writing its third line.
    resumed_dir = tmp_path / "killed"
    resumed_dir.mkdir()
    text = (tmp_path / "full" / "pope_random.predictions.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    (resumed_dir / "pope_random.predictions.jsonl").write_text(lines[0] + lines[1] + lines[2][:25])
    (resumed_dir / "pope_random.scores.json").write_text((tmp_path / "full" / "pope_random.scores.json").read_text())
    calls = count_generate_calls(model)
    try:
        result = evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, "output_dir": resumed_dir})
    finally:
        del model.generate
    assert calls == [2], "only the 2 missing samples are generated"
    assert result["counts"] == {"samples": 4, "generated": 2, "resumed": 2}
    assert read_lines(resumed_dir / "pope_random.predictions.jsonl") == full_lines
    assert result["scores"] == full["scores"]

    # A run with a limit, continued without it.
    limited = tmp_path / "limited"
    evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, "output_dir": limited, "limit": 3})
    calls = count_generate_calls(model)
    try:
        result = evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, "output_dir": limited})
        assert calls == [1]
        # Everything done: nothing is generated, the scores are recomputed.
        again = evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, "output_dir": limited})
        assert calls == [1] and again["counts"] == {"samples": 4, "generated": 0, "resumed": 4}
    finally:
        del model.generate
    assert result["scores"] == full["scores"] == again["scores"]
    assert read_lines(limited / "pope_random.predictions.jsonl") == full_lines


def test_bad_line_inside_the_predictions_file_is_an_error(tmp_path):
    path = tmp_path / "x.predictions.jsonl"
    one, two = '{"id": "1", "prediction": "a"}', '{"id": "2", "prediction": null}'
    path.write_text(f'{one}\n{{"id": \n{two}\n')
    with pytest.raises(ValueError, match=r"'x': .*x.predictions.jsonl line 2 is not valid JSON"):
        read_predictions(path, "x")
    for bad in ('["id"]', '{"id": 2, "prediction": "a"}', '{"id": "2"}'):
        path.write_text(f"{one}\n{bad}\n{two}\n")
        with pytest.raises(ValueError, match="line 2 is not a prediction record"):
            read_predictions(path, "x")
    # A complete last line without its newline is kept, and the newline added; a cut one is dropped.
    path.write_text(f"{one}\n{two}")
    assert read_predictions(path, "x") == [{"id": "1", "prediction": "a"}, {"id": "2", "prediction": None}]
    assert path.read_text() == f"{one}\n{two}\n"
    path.write_bytes(f"{one}\n\n{two}\n".encode() + '{"id": "3", "prediction": "café'.encode()[:-1])
    assert len(read_predictions(path, "x")) == 2 and path.read_text() == f"{one}\n{two}\n"


def test_changed_settings_raise_unless_overwrite(mamba, data_root, tmp_path):
    model, processor = mamba
    kwargs = dict(output_dir=tmp_path, batch_size=4, max_new_tokens=2, limit=3, progress=False)
    evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    for change, message in (
        ({"max_new_tokens": 3}, "max_new_tokens: 2 before, 3 now"),
        ({"instruction_first": True}, "instruction_first: False before, True now"),
        ({"limit": 2}, "limit: 3 before, 2 now"),
    ):
        with pytest.raises(ValueError, match=f"'pope_random': the predictions in .* other settings \\({message}"):
            evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, **change})
    # The weights name the model: the same weights under another name (a moved folder, a Hub id) resume.
    renamed = evaluate_benchmark(model, processor, "pope_random", data_root, **{**kwargs, "model_name": "other"})
    assert renamed["counts"] == {"samples": 3, "generated": 0, "resumed": 3} and renamed["model"] == "other"
    calls = count_generate_calls(model)
    try:
        result = evaluate_benchmark(
            model, processor, "pope_random", data_root, **{**kwargs, "max_new_tokens": 3, "overwrite": True}
        )
    finally:
        del model.generate
    assert calls == [3] and result["settings"]["max_new_tokens"] == 3
    assert len(read_lines(tmp_path / "pope_random.predictions.jsonl")) == 3
    # Predictions without their settings record.
    (tmp_path / "pope_random.scores.json").unlink()
    with pytest.raises(ValueError, match="predictions exist but .*pope_random.scores.json"):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)


FINGERPRINT = "[0-9a-f]{12}…"


def test_resume_refuses_other_weights_saved_in_the_same_folder(data_root, tmp_path):
    folder = tmp_path / "model"
    save_tiny("mamba", folder, seed=0)
    model, processor = load_model(folder)
    kwargs = dict(output_dir=tmp_path / "out", batch_size=2, max_new_tokens=2, progress=False)
    evaluate_benchmark(model, processor, "pope_random", data_root, limit=2, **kwargs)
    save_tiny("mamba", folder, seed=1)
    other, processor = load_model(folder)
    before, now = weights_fingerprint(model), weights_fingerprint(other)
    assert before != now
    message = (
        rf"'pope_random': the predictions in {re.escape(str(tmp_path / 'out'))} were made with other settings "
        rf"\(weights: fingerprint {before[:12]}… before, {now[:12]}… now\)\. Use another output directory, or pass "
        r"overwrite=True \(--overwrite\)\."
    )
    with pytest.raises(ValueError, match=message):
        evaluate_benchmark(other, processor, "pope_random", data_root, **kwargs)
    assert len(read_lines(tmp_path / "out" / "pope_random.predictions.jsonl")) == 2


def test_resume_refuses_another_image_root_or_changed_data(mamba, data_root, tmp_path):
    _, processor = mamba
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    images = tmp_path / "images"
    shutil.copytree(data_root / "coco" / "images" / "val2014", images / "coco" / "images" / "val2014")
    pope = tmp_path / "pope.jsonl"
    pope.write_bytes((data_root / "pope" / "coco_pope_random.json").read_bytes())
    kwargs = dict(output_dir=tmp_path / "out", annotations={"jsonl_path": pope}, progress=False)
    evaluate_benchmark(model, processor, "pope_random", data_root, limit=2, **kwargs)
    old_images, new_images = data_root / "coco" / "images" / "val2014", images / "coco" / "images" / "val2014"
    with pytest.raises(ValueError, match=re.escape(f"(images: '{old_images}' before, '{new_images}' now)")):
        evaluate_benchmark(model, processor, "pope_random", data_root, image_root=images, **kwargs)

    # The label of a sample not yet done: the ids are the same, the content is not.
    lines = pope.read_text().splitlines()
    pope.write_text("\n".join([*lines[:3], lines[3].replace('"no"', '"yes"')]) + "\n")
    with pytest.raises(ValueError, match=rf"other settings \(data.jsonl_path: content {FINGERPRINT} before, "):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)

    # The same content elsewhere, the same images: resumed.
    pope.unlink()
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes((data_root / "pope" / "coco_pope_random.json").read_bytes())
    result = evaluate_benchmark(
        model, processor, "pope_random", data_root, **{**kwargs, "annotations": {"jsonl_path": moved}}
    )
    assert result["counts"] == {"samples": 4, "generated": 2, "resumed": 2}


def test_data_folder_hash_covers_its_files_but_not_the_images(tmp_path):
    folder, images = tmp_path / "ai2d", tmp_path / "ai2d" / "images"
    write_json(folder / "questions" / "1.png.json", {"imageName": "1.png"})
    write_image(images / "1.png")
    first = _content_hash(folder, images)
    write_image(images / "2.png")
    assert _content_hash(folder, images) == first
    write_json(folder / "questions" / "1.png.json", {"imageName": "2.png"})
    assert _content_hash(folder, images) != first


def test_resume_checks_the_processor_tokenizer_and_generation_config(saved, data_root, tmp_path):
    processor = make_processor()
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    kwargs = dict(output_dir=tmp_path / "out", limit=2, progress=False)
    evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    # Tokenizing with padding and truncation changes the backend's state, not the tokenizer.
    processor.tokenizer(["a", "a b c"], padding=True, truncation=True, max_length=2)
    assert evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)["counts"]["resumed"] == 2
    processor.normalize_text = "keep_case"
    with pytest.raises(ValueError, match=r"other settings \(processor.normalize_text: True before, 'keep_case' now\)"):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    processor.normalize_text = True
    processor.tokenizer.add_tokens(["<new>"])
    with pytest.raises(ValueError, match=rf"other settings \(tokenizer: fingerprint {FINGERPRINT} before, "):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)

    # Without weights (an object with no state dict), the name tells models apart.
    processor = make_processor()
    with pytest.raises(ValueError, match=r"other settings \(model: 'scripted' before, 'other' now\)"):
        evaluate_benchmark(
            ScriptedModel(processor.tokenizer, {"": "Yes."}, "other"), processor, "pope_random", data_root, **kwargs
        )

    model, processor = load_model(saved["mamba"])
    kwargs = {**kwargs, "output_dir": tmp_path / "real", "max_new_tokens": 2}
    evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    model.generation_config.repetition_penalty = 1.5
    with pytest.raises(ValueError, match=r"other settings \(generation.repetition_penalty: None before, 1.5 now\)"):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)


def test_resume_refuses_a_scores_file_without_the_new_settings(mamba, data_root, tmp_path):
    _, processor = mamba
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    kwargs = dict(output_dir=tmp_path, limit=2, progress=False)
    evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    scores = json.loads((tmp_path / "pope_random.scores.json").read_text())
    old = ("model", "instruction_first", "max_new_tokens", "limit", "batch_size", "prompt")
    scores["settings"] = {key: scores["settings"][key] for key in old}
    write_json(tmp_path / "pope_random.scores.json", scores)
    message = (
        r"pope_random.scores.json does not record weights, processor, tokenizer, generation, images, data \(it was "
        r"written by an earlier version of vlmamba\).* pass overwrite=True"
    )
    with pytest.raises(ValueError, match=message):
        evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    assert evaluate_benchmark(model, processor, "pope_random", data_root, overwrite=True, **kwargs)["complete"]


def test_weights_fingerprint_follows_the_values(saved):
    first, _ = load_model(saved["mamba"])
    second, _ = load_model(saved["mamba"])
    fingerprint = weights_fingerprint(first)
    assert re.fullmatch("[0-9a-f]{64}", fingerprint) and weights_fingerprint(second) == fingerprint
    # The head is tied to the embeddings: one state dict entry each, one tensor.
    state = second.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["model.language_model.embeddings.weight"].data_ptr()
    name, parameter = next(iter(second.named_parameters()))
    original = parameter.detach().clone()
    with torch.no_grad():
        parameter.view(-1)[0] += 1
    assert weights_fingerprint(second) != fingerprint, name
    with torch.no_grad():
        parameter.copy_(original)
    assert weights_fingerprint(second) == fingerprint
    assert weights_fingerprint(second.to(torch.bfloat16)) != fingerprint
    assert weights_fingerprint(ScriptedModel(None, [])) is None


HOLD_LOCK = """
import fcntl, os, sys
file = open(sys.argv[1], "a+")
fcntl.flock(file, fcntl.LOCK_EX)
file.seek(0)
file.truncate()
file.write(str(os.getpid()))
file.flush()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_run_on_a_locked_output_dir_is_refused(mamba, data_root, tmp_path):
    _, processor = mamba
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    kwargs = dict(output_dir=tmp_path, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / LOCK_FILE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        message = rf"Another evaluation \(process {holder.pid}\) is writing to {re.escape(str(tmp_path))} "
        with pytest.raises(ValueError, match=message):
            evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
        with pytest.raises(ValueError, match=message):
            evaluate_benchmarks(model, processor, ["pope_random"], data_root, **kwargs)
        assert not (tmp_path / "pope_random.predictions.jsonl").exists()
    finally:
        # Killed, as a crashed run: the OS releases the lock, and the lock file left behind blocks nothing.
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    assert evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)["complete"]

    # Another thread of the same process is refused too, while the holder may take the lock again.
    outcomes = []

    def take_the_lock():
        try:
            with output_lock(tmp_path):
                outcomes.append("locked")
        except ValueError as error:
            outcomes.append(str(error))

    with output_lock(tmp_path):
        thread = threading.Thread(target=take_the_lock)
        thread.start()
        thread.join()
        assert evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)["counts"]["resumed"] == 4
    assert outcomes == [
        f"Another evaluation is writing to {tmp_path} (it holds {tmp_path / LOCK_FILE} locked); wait for it to "
        "finish, or use another output directory."
    ]


def test_the_lock_is_released_when_a_run_fails(mamba, data_root, tmp_path):
    _, processor = mamba
    kwargs = dict(output_dir=tmp_path, batch_size=1, progress=False)
    # One answer for four samples: the second batch fails.
    with pytest.raises(IndexError):
        evaluate_benchmark(ScriptedModel(processor.tokenizer, ["Yes."]), processor, "pope_random", data_root, **kwargs)
    with open(tmp_path / LOCK_FILE) as file:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(file, fcntl.LOCK_UN)
    # Nor does this process still count it as held: another thread takes it.
    outcomes = []

    def take_the_lock():
        with output_lock(tmp_path):
            outcomes.append("locked")

    thread = threading.Thread(target=take_the_lock)
    thread.start()
    thread.join()
    assert outcomes == ["locked"]
    result = evaluate_benchmark(
        ScriptedModel(processor.tokenizer, ["No."] * 3), processor, "pope_random", data_root, **kwargs
    )
    assert result["counts"] == {"samples": 4, "generated": 3, "resumed": 1}


def test_missing_files_name_the_benchmark_and_the_path(mamba, data_root, tmp_path):
    model, processor = mamba
    kwargs = dict(output_dir=tmp_path / "out", progress=False, max_new_tokens=2)
    with pytest.raises(ValueError, match=f"'gqa': questions_json not found: {tmp_path}/gqa/testdev_balanced"):
        evaluate_benchmark(model, processor, "gqa", tmp_path, **kwargs)
    with pytest.raises(ValueError, match=f"'vqav2': annotations_json not found: {tmp_path}/missing.json"):
        missing = {"annotations_json": tmp_path / "missing.json"}
        evaluate_benchmark(model, processor, "vqav2", data_root, annotations=missing, **kwargs)
    with pytest.raises(ValueError, match=f"'pope_random': image folder not found: {tmp_path}/coco/images/val2014"):
        evaluate_benchmark(model, processor, "pope_random", data_root, image_root=tmp_path, **kwargs)
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "COCO_val2014_000000000001.jpg")
    message = rf"'pope_random': 2 image file\(s\) not found, e.g. {images}/COCO_val2014_000000000002.jpg"
    with pytest.raises(ValueError, match=message):
        evaluate_benchmark(model, processor, "pope_random", data_root, annotations={"images": images}, **kwargs)
    with pytest.raises(ValueError, match="'ai2d': annotation_dir not found"):
        evaluate_benchmark(model, processor, "ai2d", tmp_path, **kwargs)
    bad = write_json(tmp_path / "bad" / "coco_pope_random.json", [{"question_id": 1, "image": "a.jpg", "label": "x"}])
    with pytest.raises(ValueError, match=f"'pope_random': {bad}: row 0 .*'label' must be 'yes' or 'no'"):
        evaluate_benchmark(model, processor, "pope_random", data_root, annotations={"jsonl_path": bad}, **kwargs)


# Scores computed by hand, through the whole pipeline


def test_scripted_answers_give_the_hand_computed_scores(mamba, data_root, tmp_path):
    _, processor = mamba
    kwargs = dict(output_dir=tmp_path, batch_size=3, progress=False)

    # POPE: labels yes, no, yes, no; answers yes, no, no, no: tp 1, tn 2, fn 1, fp 0.
    answers = {"dog": "Yes.", "cat": "No.", "car": "No", "cup": "no."}
    model = ScriptedModel(processor.tokenizer, answers)
    result = evaluate_benchmark(model, processor, "pope_random", data_root, **kwargs)
    assert model.calls == [3, 1]
    assert result["scores"] == pytest.approx(
        {"accuracy": 75.0, "precision": 100.0, "recall": 50.0, "f1": 200 / 3, "yes_ratio": 25.0}
    )
    assert [line["prediction"] for line in read_lines(tmp_path / "pope_random.predictions.jsonl")] == [
        "Yes",
        "No",
        "No",
        "no",
    ]
    assert result["model"] == "scripted"

    # VQAv2: "red" matches 4 of 10 answers (1.0), "2" matches 2 (0.6: 8 leave-one-out subsets with 2 matches give
    # 2/3, 2 with 1 give 1/3), "No" matches none: (1 + 0.6 + 0) / 3.
    model = ScriptedModel(processor.tokenizer, {"wall": "Red.", "people": "2.", "day": "No."})
    result = evaluate_benchmark(model, processor, "vqav2", data_root, **kwargs)
    assert result["scores"]["vqa_accuracy"] == pytest.approx(160 / 3)

    # RefCOCO testA (image 200 x 100): "[0.10,0.20,0.50,0.60]" is [20, 20, 100, 60] px, exactly the target of ref 1
    # (IoU 1); the second sentence gets [20, 20, 60, 60], half of the target (IoU 1600 / 3200 = 0.5, not above 0.5:
    # wrong); ref 2 gets no box. 1 of 3.
    answers = {"The left square": "[0.10,0.20,0.50,0.60].", "Square on": "[0.10,0.20,0.30,0.60].", "Right": "nothing"}
    model = ScriptedModel(processor.tokenizer, answers)
    result = evaluate_benchmark(model, processor, "refcoco_testa", data_root, **kwargs)
    lines = read_lines(tmp_path / "refcoco_testa.predictions.jsonl")
    assert lines[0]["prediction"] == pytest.approx([20.0, 20.0, 100.0, 60.0])
    assert lines[1]["prediction"] == pytest.approx([20.0, 20.0, 60.0, 60.0]) and lines[2]["prediction"] is None
    assert result["scores"]["grounding_accuracy"] == pytest.approx(100 / 3)
    assert result["counts"]["no_box"] == 1

    # Visual7W telling: the right letter for one question, a wrong one for the other.
    letters = {
        row["id"]: "ABC"[row["answer"]]
        for row in data.load_visual7w(data_root / "visual7w" / "dataset_v7w_telling.json", "x", split="test")
    }
    wrong = next(letter for letter in "ABC" if letter != letters["52"])
    model = ScriptedModel(processor.tokenizer, {"sky": f"{letters['51']}.", "Where": f"{wrong}."})
    result = evaluate_benchmark(model, processor, "v7w_telling", data_root, **kwargs)
    assert result["scores"] == {"accuracy": 50.0}

    # COCO (test images 1, 3, 4): CIDEr-D over the captions as pycocoevalcap scores them after tokenization.
    captions = ["A picture number 1.\n##", "A picture number three", "Some colours"]
    model = ScriptedModel(processor.tokenizer, list(captions))
    result = evaluate_benchmark(model, processor, "coco", data_root, **kwargs)
    lines = read_lines(tmp_path / "coco.predictions.jsonl")
    assert [line["prediction"] for line in lines] == ["A picture number 1.", "A picture number three", "Some colours"]
    references = {n: [f"a picture number {image_id}", "some colours"] for n, image_id in enumerate((1, 3, 4))}
    generated = {0: ["a picture number 1"], 1: ["a picture number three"], 2: ["some colours"]}
    assert result["scores"]["cider"] == pytest.approx(100 * Cider().compute_score(references, generated)[0])
    assert result["scores"]["cider"] > 0


def test_instruction_first_follows_the_processor(mamba, data_root, tmp_path):
    _, processor = mamba
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    processor.instruction_first = True
    try:
        result = evaluate_benchmark(model, processor, "vqav2", data_root, output_dir=tmp_path, progress=False, limit=1)
    finally:
        processor.instruction_first = False
    assert result["settings"]["instruction_first"] is True
    prompt = read_lines(tmp_path / "vqav2.predictions.jsonl")[0]["prompt"]
    assert prompt == f"{VQA}<image>\nQuestion: What colour is the wall?\nAnswer: "
    expected = build_prompt({"task": "vqa", "question": VQA_QUESTIONS[11]}, for_generation=True, instruction_first=True)
    assert prompt == expected.text


def test_evaluation_prompt_variants(mamba, data_root, tmp_path):
    _, processor = mamba
    image = "COCO_val2014_000000000001.jpg"
    images = data_root / "coco" / "images" / "val2014"
    gqa = write_json(
        tmp_path / "gqa.json",
        {"q1": {"imageId": "COCO_val2014_000000000001", "question": "Is it red?", "answer": "no"}},
    )
    vsr = tmp_path / "vsr.jsonl"
    vsr.write_text(json.dumps({"image": image, "caption": "The cat is on the table.", "label": 1}) + "\n")
    textvqa = {
        "dataset_type": "val",
        "data": [
            {
                "question_id": 7,
                "image_id": "COCO_val2014_000000000001",
                "question": "what does it say?",
                "answers": ["stop"] * 10,
            }
        ],
    }
    textvqa_path = write_json(tmp_path / "textvqa.json", textvqa)
    ocr = write_json(
        tmp_path / "ocr.json", {"data": [{"image_id": "COCO_val2014_000000000001", "ocr_tokens": ["STOP", "ahead"]}]}
    )
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    kwargs = dict(output_dir=tmp_path / "out", progress=False)
    for name, annotations in (
        ("gqa", {"questions_json": gqa}),
        ("vsr", {"jsonl_path": vsr}),
        ("textvqa", {"json_path": textvqa_path, "ocr_json": ocr}),
    ):
        evaluate_benchmark(model, processor, name, annotations={**annotations, "images": images}, **kwargs)
    prompts = {
        name: read_lines(tmp_path / "out" / f"{name}.predictions.jsonl")[0]["prompt"]
        for name in ("gqa", "vsr", "textvqa")
    }
    assert prompts == {
        "gqa": f"<image>{VQA}\nQuestion: Is it red?\nAnswer: ",
        "vsr": "<image>Determine if the image matches the description:\nThe cat is on the table.\n",
        "textvqa": f"<image>{VQA}\nOCR text:\nSTOP ahead\nQuestion: What does it say?\nAnswer: ",
    }
    # The first segment after the image is tokenized as one string (GQA: instruction and question together).
    ids = processor.tokenizer(prompts["gqa"][len("<image>") :], add_special_tokens=False)["input_ids"]
    prompt = build_prompt({"task": "vqa", "question": "Is it red?"}, for_generation=True, merge_turns=True)
    tokens = processor.encode_prompt(prompt, image=Image.new("RGB", (4, 4)))["input_ids"]
    assert tokens[len(processor.image_block) :] == ids
    with pytest.raises(
        ValueError, match="'textvqa': 1 sample\\(s\\) have no OCR tokens .*--annotations textvqa.ocr_json"
    ):
        evaluate_benchmark(
            model,
            processor,
            "textvqa",
            annotations={"json_path": textvqa_path, "images": images},
            **{**kwargs, "output_dir": tmp_path / "out2"},
        )


# The command line


def test_cli_end_to_end_prints_the_table(saved, data_root, tmp_path, capsys):
    pope = tmp_path / "elsewhere" / "pope.jsonl"
    pope.parent.mkdir()
    pope.write_text((data_root / "pope" / "coco_pope_random.json").read_text())
    output_dir = tmp_path / "out"
    argv = [
        "evaluate",
        "--model",
        str(saved["mamba"]),
        "--benchmarks",
        "pope_random,v7w_telling,refcoco_testa",
        "--data-root",
        str(data_root),
        "--output-dir",
        str(output_dir),
        "--batch-size",
        "2",
        "--limit",
        "3",
        "--annotations",
        f"pope_random={pope}",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = out[out.index("benchmark") :].splitlines()
    assert table[0].split() == ["benchmark", "metric", "score", "n"]
    assert [line.split()[:2] for line in table[1:5]] == [
        ["pope_random", "accuracy"],
        ["pope_random", "f1"],
        ["v7w_telling", "accuracy"],
        ["refcoco_testa", "grounding_accuracy"],
    ]
    assert [line.split()[3] for line in table[1:5]] == ["3", "3", "2", "3"]
    results = json.loads((output_dir / "results.json").read_text())["benchmarks"]
    assert list(results) == ["v7w_telling", "pope_random", "refcoco_testa"]
    assert results["pope_random"]["files"] == {"jsonl_path": str(pope)}
    assert float(table[1].split()[2]) == pytest.approx(results["pope_random"]["scores"]["accuracy"], abs=0.005)
    assert len(read_lines(output_dir / "pope_random.predictions.jsonl")) == 3

    # Unknown names are refused before anything runs.
    with pytest.raises(SystemExit, match="Unknown benchmark"):
        main(["evaluate", "--model", "x", "--benchmarks", "coco,okvqa", "--output-dir", str(output_dir)])


def test_annotation_overrides_parse():
    assert _annotation_overrides(["coco=a.json", "vqav2.annotations_json=b.json", "refcoco+_testa.images=img"]) == {
        "coco": {"karpathy_json": "a.json"},
        "vqav2": {"annotations_json": "b.json"},
        "refcoco+_testa": {"images": "img"},
    }
    for bad in ("coco", "=x", "okvqa=x", "vqav2.answers=x"):
        with pytest.raises(SystemExit):
            _annotation_overrides([bad])


def test_results_json_merges_every_complete_benchmark(mamba, data_root, tmp_path):
    _, processor = mamba
    model = ScriptedModel(processor.tokenizer, {"": "Yes."})
    evaluate_benchmarks(model, processor, ["pope_random"], data_root, output_dir=tmp_path, progress=False)
    results = evaluate_benchmarks(model, processor, ["vqav2"], data_root, output_dir=tmp_path, progress=False)
    merged = json.loads((tmp_path / "results.json").read_text())["benchmarks"]
    assert list(merged) == ["vqav2", "pope_random"] and merged["vqav2"] == results["vqav2"]
    # "Yes" is right for the third question only (all 10 answers say yes).
    assert results_table(results).splitlines()[1].split() == ["vqav2", "vqa_accuracy", "33.33", "3"]
    with pytest.raises(ValueError, match=r"Unknown benchmark\(s\) \['okvqa'\]"):
        evaluate_benchmarks(model, processor, ["okvqa"], data_root, output_dir=tmp_path)
