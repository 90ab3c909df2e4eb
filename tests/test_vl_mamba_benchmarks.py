# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The VL-Mamba benchmarks of `vlmamba evaluate` (`scienceqa_img`, `mme`, `mmbench_dev`): their loaders on
hand-written files in the official layouts, their metrics against hand computations, and one end-to-end run each on
a tiny saved model whose `generate` answers what the test chooses."""

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import save_tiny
from vlmamba import data
from vlmamba.data.vl_benchmarks import MME_COGNITION, MME_PERCEPTION, MME_SUBTASKS
from vlmamba.evaluation import BENCHMARKS, evaluate_benchmark, layout_lines, load_benchmark, results_table
from vlmamba.evaluation.metrics import load
from vlmamba.predict import load_model


# The subtasks whose official folder holds `images/` and `questions_answers_YN/`; the others hold both side by side.
MME_SPLIT_LAYOUT = ("artwork", "celebrity", "landmark", "posters", "scene")
MMBENCH_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "l2-category"]


def write_image(path: Path, seed: int = 0, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def png_base64(seed: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), seed, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# Fixture files


def make_scienceqa(root: Path) -> Path:
    """`scienceqa/` with 4 problems: two test questions with an image (1, 3), one without (2), one train (4)."""
    problem = {"lecture": "", "solution": "", "task": "closed choice", "grade": "grade4", "subject": "social science"}
    problems = {
        "1": {
            **problem,
            "question": "Which state is highlighted?",
            "choices": ["Ohio", "Iowa"],
            "answer": 0,
            "hint": "The map shows the USA.",
            "image": "image.png",
            "split": "test",
        },
        "2": {
            **problem,
            "question": "Which word is a noun?",
            "choices": ["run", "cat"],
            "answer": 1,
            "hint": "",
            "image": None,
            "split": "test",
        },
        "3": {
            **problem,
            "question": "Which animal has fur?",
            "choices": ["trout", "frog", "otter"],
            "answer": 2,
            "hint": "",
            "image": "image.png",
            "split": "test",
        },
        "4": {
            **problem,
            "question": "Which is a mammal?",
            "choices": ["cow", "eel"],
            "answer": 0,
            "hint": "",
            "image": "image.png",
            "split": "train",
        },
    }
    folder = root / "scienceqa"
    write_json(folder / "problems.json", problems)
    write_json(folder / "pid_splits.json", {"train": ["4"], "val": [], "test": ["1", "2", "3"]})
    for pid, split in (("1", "test"), ("3", "test"), ("4", "train")):
        write_image(folder / "images" / split / pid / "image.png", seed=int(pid))
    return folder


def mme_questions(subtask: str, image: int) -> list[tuple[str, str]]:
    return [
        (f"Is {subtask} picture {image} red? Please answer yes or no.", "Yes"),
        (f"Is {subtask} picture {image} blue? Please answer yes or no.", "No"),
    ]


def make_mme(root: Path, subtasks=MME_SUBTASKS) -> Path:
    """`MME_Benchmark_release_version/`: one image per subtask (two for `existence`), two questions each, in the
    official layouts (`images/` + `questions_answers_YN/`, or side by side)."""
    release = root / "mme" / "MME_Benchmark_release_version"
    for number, subtask in enumerate(subtasks):
        for image in (1, 2) if subtask == "existence" else (1,):
            name = f"{subtask.lower()}_{image:04d}"
            if subtask in MME_SPLIT_LAYOUT:
                image_path, text_path = release / subtask / "images", release / subtask / "questions_answers_YN"
            else:
                image_path = text_path = release / subtask
            write_image(image_path / f"{name}.{'jpg' if number % 2 else 'png'}", seed=number + image)
            lines = [f"{question}\t{answer}" for question, answer in mme_questions(subtask, image)]
            text_path.mkdir(parents=True, exist_ok=True)
            (text_path / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return release


def mmbench_row(index, question, options, answer, category, image, hint="") -> list:
    options = list(options) + [""] * (4 - len(options))
    return [str(index), question, hint, *options, answer, category, image, "l2"]


def write_tsv(path: Path, rows, header=MMBENCH_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_mmbench(root: Path) -> Path:
    """An MMBench dev TSV: question 0 (3 options), question 1 (2 options, a hint, the image of row 0 by index) and
    question 2 (3 options) whose file holds its pass 1 as row 1000002."""
    rows = [
        mmbench_row(0, "What animal is shown?", ["Cat", "Dog", "Cow"], "B", "ocr", png_base64(10)),
        mmbench_row(1, "What does the sign say?", ["Stop", "Go"], "A", "scene", "0", hint="Look at the sign."),
        mmbench_row(2, "Which colour is it?", ["Red", "Green", "Blue"], "C", "scene", png_base64(20)),
        mmbench_row(1000002, "Which colour is it?", ["Blue", "Red", "Green"], "A", "scene", png_base64(20)),
    ]
    return write_tsv(root / "mmbench" / "mmbench_dev_20230712.tsv", rows)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vl_mamba_data")
    make_scienceqa(root)
    make_mme(root)
    make_mmbench(root)
    return root


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_mamba")
    save_tiny("mamba", folder)
    return folder


@pytest.fixture
def tiny(saved):
    return load_model(saved)


def answering(model, tokenizer, answers: dict[str, str]):
    """`model` with a `generate` that answers each prompt with the answer of the first key found in it (decoded);
    the prompts it saw are kept in `model.prompts`."""
    model.prompts = []

    def generate(input_ids, attention_mask, max_new_tokens, **kwargs):
        new = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            model.prompts.append(prompt)
            answer = next(text for key, text in answers.items() if key in prompt)
            new.append(
                (tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_new_tokens]
            )
        width = max(len(tokens) for tokens in new)
        new = [tokens + [tokenizer.pad_token_id] * (width - len(tokens)) for tokens in new]
        return torch.cat([input_ids, torch.tensor(new)], dim=1)

    model.generate = generate
    return model


# The registry


def test_registry_rows_and_layout():
    assert [BENCHMARKS[name].metric for name in ("scienceqa_img", "mme", "mmbench_dev")] == [
        "multiple_choice",
        "mme",
        "circular_choice",
    ]
    assert BENCHMARKS["mme"].task == "vqa" and BENCHMARKS["mme"].prompt["vqa_format"] == "plain"
    assert [BENCHMARKS[name].writes_images for name in ("scienceqa_img", "mme", "mmbench_dev")] == [False, False, True]
    lines = {line.split()[0]: line for line in layout_lines()}
    assert "problems_json=scienceqa/problems.json, pid_splits=scienceqa/pid_splits.json" in lines["scienceqa_img"]
    assert lines["mme"].endswith("images: mme/MME_Benchmark_release_version")
    assert "mmbench/images (written from the annotation file)" in lines["mmbench_dev"]
    for name in ("scienceqa", "mme", "mmbench"):
        assert name in data.SOURCES


# ScienceQA


def test_scienceqa_keeps_the_test_questions_with_an_image(tmp_path):
    folder = make_scienceqa(tmp_path)
    images = folder / "images"
    rows = list(data.load_scienceqa(folder / "problems.json", images, pid_splits=folder / "pid_splits.json"))
    assert [row["id"] for row in rows] == ["1", "3"]
    assert rows[0]["question"] == "Context: The map shows the USA.\nWhich state is highlighted?"
    assert rows[1]["question"] == "Which animal has fur?" and rows[1]["hint"] == ""
    assert rows[0]["image"] == str(images / "test" / "1" / "image.png")
    assert (rows[0]["choices"], rows[0]["answer"], rows[1]["answer"]) == (["Ohio", "Iowa"], 0, 2)
    assert {row["task"] for row in rows} == {"multiple_choice"}
    # Without pid_splits.json the problems' own split field chooses; image_only=False keeps problem 2.
    assert list(data.load_scienceqa(folder / "problems.json", images)) == rows
    everything = list(data.load_scienceqa(folder / "problems.json", images, image_only=False))
    assert [row["id"] for row in everything] == ["1", "2", "3"] and everything[1]["image"] is None
    with pytest.raises(ValueError, match="no problem is in split 'dev'; the file has \\['test', 'train'\\]"):
        data.load_scienceqa(folder / "problems.json", images, split="dev")


def test_scienceqa_bad_records_name_the_file_row_and_field(tmp_path):
    folder = make_scienceqa(tmp_path)
    problems = json.loads((folder / "problems.json").read_text())
    problems["3"]["answer"] = 3
    write_json(folder / "problems.json", problems)
    splits = folder / "pid_splits.json"
    with pytest.raises(ValueError, match=r"problems.json: row 2 \(id '3'\): field 'answer' is 3, but there are 3"):
        data.load_scienceqa(folder / "problems.json", folder / "images", pid_splits=splits)
    report = []
    rows = data.load_scienceqa(
        folder / "problems.json", folder / "images", pid_splits=splits, skip_bad=True, report=report
    )
    assert [row["id"] for row in rows] == ["1"] and report[0]["row"] == 2
    write_json(splits, {"test": ["1", "9"]})
    with pytest.raises(ValueError, match=r"row 1 \(id '9'\): is in split 'test' of .*pid_splits.json but not in"):
        data.load_scienceqa(folder / "problems.json", folder / "images", pid_splits=splits)
    with pytest.raises(ValueError, match="has no split 'minitest'"):
        data.load_scienceqa(folder / "problems.json", folder / "images", pid_splits=splits, split="minitest")


# MME


def test_mme_reads_both_layouts(tmp_path):
    release = make_mme(tmp_path)
    rows = list(data.load_mme(release, release))
    assert len(rows) == 2 * (len(MME_SUBTASKS) + 1)
    assert [row["id"] for row in rows[:4]] == [
        "existence/existence_0001/0",
        "existence/existence_0001/1",
        "existence/existence_0002/0",
        "existence/existence_0002/1",
    ]
    first = rows[0]
    assert first["question"] == "Is existence picture 1 red? Please answer yes or no."
    assert (first["answer"], rows[1]["answer"]) == ("yes", "no")
    assert (first["category"], first["group"], first["task"]) == ("existence", "existence/existence_0001", "vqa")
    assert first["image"] == str(release / "existence" / "existence_0001.png")
    scene = next(row for row in rows if row["category"] == "scene")
    assert scene["image"] == str(release / "scene" / "images" / "scene_0001.png")
    assert next(row for row in rows if row["category"] == "count")["image"] == str(release / "count" / "count_0001.jpg")
    assert [row["category"] for row in rows[::2]][1:] == list(MME_SUBTASKS)
    assert len(data.load_mme(release, release, subtasks=["OCR"])) == 2


def test_mme_bad_files_name_the_file_and_line(tmp_path):
    release = make_mme(tmp_path, subtasks=("count", "scene"))
    text = release / "count" / "count_0001.txt"
    with pytest.raises(ValueError, match=r"has no 'existence' folder"):
        data.load_mme(release, release)
    text.write_text("Is it red? Please answer yes or no.\tYes\nIs it blue? Please answer yes or no. No\n")
    with pytest.raises(ValueError, match=rf"{text} \(id 'count/count_0001'\): line 2 is not 'question<TAB>answer'"):
        data.load_mme(release, release, subtasks=["count"])
    text.write_text("Is it red?\tYes\nIs it blue?\tMaybe\n")
    with pytest.raises(ValueError, match=r"line 2: the answer must be Yes or No, got 'Maybe'"):
        data.load_mme(release, release, subtasks=["count"])
    text.write_text("Is it red?\tYes\nIs it blue?\tNo\nIs it green?\tNo\n")
    with pytest.raises(ValueError, match=r"count_0001.txt \(id 'count/count_0001'\): has 3 question line\(s\)"):
        data.load_mme(release, release, subtasks=["count"])
    report = []
    assert len(data.load_mme(release, release, subtasks=["count", "scene"], skip_bad=True, report=report)) == 2
    assert report[0]["file"] == str(text)
    (release / "scene" / "images" / "scene_0001.png").unlink(missing_ok=True)
    (release / "scene" / "images" / "scene_0001.jpg").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"scene_0001.txt \(id 'scene/scene_0001'\): has no image named 'scene_0001'"):
        data.load_mme(release, release, subtasks=["scene"])


def test_mme_score_by_hand():
    def reference(answer, category, group):
        return {"answer": answer, "category": category, "group": group}

    # existence, image a: both right; image b: the yes question answered "No" (wrong), the no question right.
    # accuracy 3/4 = 75, accuracy+ 1/2 = 50: 125. code_reasoning: "Yesterday" is not yes (wrong, unparsed), the no
    # question right: accuracy 50, accuracy+ 0: 50.
    predictions = ["Yes", "no.", "No", "No, there is none", "Yesterday", "no"]
    references = [
        reference("yes", "existence", "a"),
        reference("no", "existence", "a"),
        reference("yes", "existence", "b"),
        reference("no", "existence", "b"),
        reference("Yes", "code_reasoning", "c"),
        reference("No", "code_reasoning", "c"),
    ]
    result = load("mme").compute(predictions=predictions, references=references)
    assert result["subtasks"] == {
        "existence": {"accuracy": 75.0, "accuracy_plus": 50.0, "score": 125.0},
        "code_reasoning": {"accuracy": 50.0, "accuracy_plus": 0.0, "score": 50.0},
    }
    assert (result["perception"], result["cognition"], result["unparsed"]) == (125.0, 50.0, 1)
    assert load("mme").compute(predictions=["yes"], references=references[:1])["cognition"] is None
    assert len(MME_PERCEPTION) == 10 and len(MME_COGNITION) == 4
    with pytest.raises(ValueError, match=r"references\[0\] has category 'counting'"):
        load("mme").compute(predictions=["yes"], references=[reference("yes", "counting", "a")])
    with pytest.raises(ValueError, match=r"references\[0\] has answer 'maybe'"):
        load("mme").compute(predictions=["yes"], references=[reference("maybe", "count", "a")])


# MMBench


def test_mmbench_rotates_the_options_of_each_question(tmp_path):
    tsv = make_mmbench(tmp_path)
    images = tmp_path / "written"
    rows = list(data.load_mmbench(tsv, images))
    # Question 0, options Cat, Dog, Cow, answer B (Dog), rotated by one place per pass:
    #   pass 0: A Cat, B Dog, C Cow -> B;  pass 1: A Dog, B Cow, C Cat -> A;  pass 2: A Cow, B Cat, C Dog -> C.
    assert [(row["id"], row["choices"], row["answer"]) for row in rows[:3]] == [
        ("0/0", ["Cat", "Dog", "Cow"], 1),
        ("0/1", ["Dog", "Cow", "Cat"], 0),
        ("0/2", ["Cow", "Cat", "Dog"], 2),
    ]
    assert [(row["id"], row["choices"], row["answer"]) for row in rows[3:]] == [
        ("1/0", ["Stop", "Go"], 0),
        ("1/1", ["Go", "Stop"], 1),
        # Question 2's passes are the file's (rows 2 and 1000002), as written.
        ("2/0", ["Red", "Green", "Blue"], 2),
        ("2/1", ["Blue", "Red", "Green"], 0),
    ]
    assert [row["group"] for row in rows] == ["0", "0", "0", "1", "1", "2", "2"]
    assert [row["category"] for row in rows] == ["ocr"] * 3 + ["scene"] * 4
    assert rows[3]["question"] == "Context: Look at the sign.\nWhat does the sign say?"
    assert rows[0]["question"] == "What animal is shown?" and rows[3]["hint"] == "Look at the sign."
    # The images are written once each; row 1 names row 0's image by its index, row 1000002 repeats row 2's.
    assert sorted(path.name for path in images.iterdir()) == ["0.png", "2.png"]
    assert {row["image"] for row in rows[:5]} == {str(images / "0.png")}
    assert (images / "0.png").read_bytes() == base64.b64decode(png_base64(10))
    modified = (images / "0.png").stat().st_mtime_ns
    assert list(data.load_mmbench(tsv, images)) == rows
    assert (images / "0.png").stat().st_mtime_ns == modified


@pytest.mark.parametrize(
    "row, message",
    [
        (mmbench_row(5, "Q?", ["x", "y"], "A", "ocr", "QUJD!"), r"row 1 \(id '5'\): field 'image' is not valid"),
        (mmbench_row(5, "Q?", ["x", "y"], "A", "ocr", base64.b64encode(b"text").decode()), "are not an image"),
        (mmbench_row(5, "Q?", ["x", "", "z"], "A", "ocr", "0"), r"field 'C' follows the empty option B"),
        (mmbench_row(5, "Q?", ["x", "y"], "C", "ocr", "0"), r"field 'answer' must be the letter of one of its 2"),
        (mmbench_row(5, "Q?", ["x", "y"], "A", "ocr", "7"), r"field 'image' names row index 7"),
        (mmbench_row(2000003, "Q?", ["x", "y"], "A", "ocr", "0"), r"is pass 2 of question 3, which is missing"),
        (mmbench_row(0, "Q?", ["x", "y"], "A", "ocr", "0"), r"row 1 \(id '0'\): field 'index' is also row 0's"),
        (["6", "Q?", "", "x"], r"row 1: has 4 fields, but the header has 11"),
    ],
)
def test_mmbench_bad_rows_name_the_file_and_row(tmp_path, row, message):
    tsv = write_tsv(tmp_path / "dev.tsv", [mmbench_row(0, "What?", ["a", "b"], "A", "ocr", png_base64(1)), row])
    with pytest.raises(ValueError, match=rf"dev.tsv: {message}" if message.startswith("row") else message) as error:
        data.load_mmbench(tsv, tmp_path / "images")
    assert str(tsv) in str(error.value)
    report = []
    assert len(data.load_mmbench(tsv, tmp_path / "images", skip_bad=True, report=report)) == 2
    assert [entry["row"] for entry in report] == [1]


def test_mmbench_header_must_have_the_columns(tmp_path):
    tsv = write_tsv(tmp_path / "dev.tsv", [], header=["index", "question", "A", "B", "answer"])
    with pytest.raises(ValueError, match=r"dev.tsv: the header has no column 'image'"):
        data.load_mmbench(tsv, tmp_path / "images")


def test_circular_choice_by_hand():
    def reference(answer, group, category):
        return {"answer": answer, "group": group, "category": category}

    # Question 0: 3 passes, all right. Question 1: 2 passes, the second wrong. Question 2: 1 pass, right.
    predictions = ["B.", "A", "(C) a cow", "A", "The answer is B", "b"]
    references = [
        reference("B", "0", "ocr"),
        reference("A", "0", "ocr"),
        reference("C", "0", "ocr"),
        reference("A", "1", "scene"),
        reference("B", "1", "scene"),
        reference("B", "2", "scene"),
    ]
    result = load("circular_choice").compute(predictions=predictions, references=references)
    assert result.pop("categories") == {"ocr": 100.0, "scene": 50.0}
    assert result == pytest.approx({"circular_accuracy": 200 / 3, "accuracy": 500 / 6, "questions": 3})
    with pytest.raises(ValueError, match=r"references\[0\] has answer 'AB'"):
        load("circular_choice").compute(predictions=["A"], references=[reference("AB", "0", "ocr")])


# End to end


def test_scienceqa_img_end_to_end(tiny, data_root, tmp_path):
    model, processor = tiny
    answering(model, processor.tokenizer, {"highlighted": "A.", "fur": "B"})
    result = evaluate_benchmark(model, processor, "scienceqa_img", data_root, output_dir=tmp_path, progress=False)
    # Question 1 right (A), question 3 wrong (B for C); the text-only question 2 is not asked.
    assert result["scores"] == {"accuracy": 50.0} and result["counts"]["samples"] == 2
    lines = [json.loads(line) for line in (tmp_path / "scienceqa_img.predictions.jsonl").read_text().splitlines()]
    assert [line["references"] for line in lines] == ["A", "C"]
    assert lines[0]["prompt"].endswith(
        "Answer with the option's letter from the given choices directly.\nQuestion: Context: The map shows the USA.\n"
        "Which state is highlighted?\nA: Ohio\nB: Iowa\nAnswer: "
    )


def test_mme_end_to_end(tiny, data_root, tmp_path):
    model, processor = tiny
    answers = {
        "existence picture 1 blue": "No.",
        "existence picture 2 red": "no",
        "code_reasoning picture 1 red": "Yesterday",
        "": "Yes",
    }
    answering(model, processor.tokenizer, answers)
    result = evaluate_benchmark(model, processor, "mme", data_root, output_dir=tmp_path, progress=False, batch_size=8)
    # "Yes" to every other question: one of an image's two right, accuracy 50, accuracy+ 0: 50 per subtask.
    # existence: image 1 both right, image 2 both wrong: accuracy 50, accuracy+ 50: 100.
    # code_reasoning: "Yesterday" is wrong, and so is "Yes" to its no question: 0.
    scores = result["scores"]
    assert scores["subtasks"]["existence"] == {"accuracy": 50.0, "accuracy_plus": 50.0, "score": 100.0}
    assert scores["subtasks"]["code_reasoning"]["score"] == 0.0 and scores["subtasks"]["OCR"]["score"] == 50.0
    assert (scores["perception"], scores["cognition"], scores["unparsed"]) == (100 + 9 * 50, 3 * 50, 1)
    assert result["counts"]["samples"] == 30
    prompt = next(prompt for prompt in model.prompts if "OCR picture 1 red" in prompt)
    assert prompt.endswith(
        "Answer the question using a single word or phrase.\nIs OCR picture 1 red? Please answer yes or no.\n"
    )
    table = results_table({"mme": result})
    assert "perception" in table and "550.00" in table and "150.00" in table


def test_mmbench_dev_end_to_end(tiny, data_root, tmp_path):
    model, processor = tiny
    answers = {
        "A: Cat": "B.",
        "A: Dog": "A",
        "A: Cow": "A",
        "A: Stop": "A",
        "A: Go": "(B)",
        "A: Red": "C",
        "A: Blue": "A",
    }
    answering(model, processor.tokenizer, answers)
    assert not (data_root / "mmbench" / "images").exists()
    result = evaluate_benchmark(model, processor, "mmbench_dev", data_root, output_dir=tmp_path, progress=False)
    # Question 0's third pass answers A for C: wrong; questions 1 and 2 are right in every pass.
    scores = dict(result["scores"])
    assert scores.pop("categories") == {"ocr": 0.0, "scene": 100.0}
    assert scores == pytest.approx({"circular_accuracy": 200 / 3, "accuracy": 600 / 7, "questions": 3})
    assert result["counts"]["samples"] == 7
    assert sorted(path.name for path in (data_root / "mmbench" / "images").iterdir()) == ["0.png", "2.png"]
    prompt = next(prompt for prompt in model.prompts if "A: Go" in prompt)
    assert "Question: Context: Look at the sign.\nWhat does the sign say?\nA: Go\nB: Stop\nAnswer: " in prompt
    lines = [json.loads(line) for line in (tmp_path / "mmbench_dev.predictions.jsonl").read_text().splitlines()]
    assert lines[1]["references"] == {"answer": "A", "group": "0", "category": "ocr"}
    assert len(load_benchmark("mmbench_dev", data_root)) == 7


@pytest.mark.parametrize("name", ["scienceqa_img", "mme", "mmbench_dev"])
def test_the_tiny_model_itself_runs_each_benchmark(tiny, data_root, tmp_path, name):
    model, processor = tiny
    result = evaluate_benchmark(
        model, processor, name, data_root, output_dir=tmp_path, progress=False, limit=2, max_new_tokens=3
    )
    assert result["complete"] and result["counts"] == {"samples": 2, "generated": 2, "resumed": 0}
    main = {"scienceqa_img": "accuracy", "mme": "unparsed", "mmbench_dev": "circular_accuracy"}[name]
    assert 0 <= result["scores"][main] <= 100
