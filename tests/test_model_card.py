"""Model cards: the metadata `huggingface_hub` reads back, the usage code run as written, the paper's scores and
citation, the measured scores of a results.json, and the template shipped in the wheel."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image, ImageDraw

import vlmamba
from tests.test_hub import stdout_without_vlmamba
from tests.tiny import save_tiny
from vlmamba.evaluation.runner import write_results
from vlmamba.model_card import PAPER_CITATION, PAPER_URL, read_results, template_text, write_model_card


REPO_ID = "vlmamba-tests/tiny-mamba-vl"
SOURCE = Path(vlmamba.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-mamba-vl")
    model, processor = save_tiny("mamba", folder)
    return folder, model.eval(), processor


def _results_json(directory: Path) -> Path:
    """A results.json written by the runner's own writer from scores files in its format."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, metric, scores, samples, limit in (
        ("coco", "cider", {"cider": 101.2345, "bleu_4": 30.0}, 5000, None),
        ("pope_random", "pope", {"accuracy": 85.5, "f1": 84.25, "precision": 90.0}, 100, 100),
    ):
        (directory / f"{name}.scores.json").write_text(json.dumps({
            "benchmark": name, "metric": metric, "scores": scores, "counts": {"samples": samples},
            "settings": {"limit": limit}, "complete": True}))
    (directory / "gqa.scores.json").write_text(json.dumps({"benchmark": "gqa", "metric": "exact_match",
                                                           "scores": None, "complete": False}))
    write_results(directory)
    return directory / "results.json"


def _usage_code(card_text: str) -> str:
    section = card_text.split("## Use", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_card_metadata_parses_and_says_what_the_hub_indexes(saved, tmp_path):
    folder, model, processor = saved
    model.config.text_config._name_or_path = "state-spaces/mamba-130m-hf"
    model.config.vision_config._name_or_path = "timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k"
    try:
        path = write_model_card(folder, model, processor, title="Tiny Mamba-VL", repo_id=REPO_ID,
                                datasets=["vlmamba-tests/shapes"], results=_results_json(tmp_path / "eval"))
    finally:
        model.config.text_config._name_or_path = model.config.vision_config._name_or_path = ""
    card = ModelCard.load(path)
    data = card.data
    assert data.pipeline_tag == "image-text-to-text" and data.library_name == "transformers"
    assert data.license == "apache-2.0" and data.datasets == ["vlmamba-tests/shapes"]
    assert data.base_model == ["state-spaces/mamba-130m-hf", "timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k"]
    assert {"vlmamba", "mamba-vl", "custom_code"} <= set(data.tags)
    # The main scores of each complete benchmark, self-reported; the incomplete one and other scores left out.
    found = {(result.dataset_type, result.metric_type): result for result in data.eval_results}
    assert set(found) == {("coco", "cider"), ("pope_random", "accuracy"), ("pope_random", "f1")}
    assert found["coco", "cider"].metric_value == 101.2345 and found["coco", "cider"].source_name is None
    assert found["pope_random", "f1"].dataset_args == {"limit": 100}
    assert "| coco | COCO captions, Karpathy test split | cider | 101.23 | 5000 |" in card.text
    assert "| pope_random | POPE on COCO, random subset | f1 | 84.25 | 100 (limited) |" in card.text
    assert "`state-spaces/mamba-130m-hf`" in card.text and "Citation" not in card.text
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card.text


def test_base_models_are_hub_ids_only(saved, tmp_path):
    folder, model, processor = saved
    model.config.text_config._name_or_path = str(tmp_path / "local-mamba")
    try:
        path = write_model_card(folder, model, processor, repo_id=REPO_ID)
    finally:
        model.config.text_config._name_or_path = ""
    assert ModelCard.load(path).data.base_model is None
    path = write_model_card(folder, model, processor, repo_id=REPO_ID, base_model="EleutherAI/pythia-160m")
    assert ModelCard.load(path).data.base_model == "EleutherAI/pythia-160m"


def test_the_usage_code_runs_as_written_in_a_process_without_vlmamba(saved):
    folder, model, processor = saved
    text = write_model_card(folder, model, processor, repo_id=REPO_ID).read_text()
    code = _usage_code(text)
    assert code.count(REPO_ID) == 1
    # The user's process: a fresh interpreter where vlmamba cannot be imported, the Hub id replaced by the folder.
    printed = stdout_without_vlmamba(code.replace(REPO_ID, str(folder)))
    # What it printed is what this model answers.
    image = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(image).rectangle([200, 120, 440, 360], fill="red")
    expected = []
    for prompt in (processor.build_prompt({"task": "captioning"}, for_generation=True).prompt,
                   processor.build_prompt({"task": "grounding", "expression": "the red square"},
                                          for_generation=True).prompt):
        inputs = processor(images=[image], text=[prompt], return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=30, do_sample=False)
        expected.append(output[:, inputs["input_ids"].shape[1]:])
    assert printed == (
        f"{processor.post_process_image_text_to_text(expected[0], skip_special_tokens=True)[0]}\n"
        f"{processor.post_process_grounding(expected[1], image_sizes=[image.size[::-1]])[0]}\n"
    )


def test_the_usage_prompt_follows_the_processor_layout(saved, tmp_path):
    folder, model, processor = saved
    shutil.copytree(folder, tmp_path / "first", dirs_exist_ok=True)
    processor.instruction_first = True
    try:
        text = write_model_card(tmp_path / "first", model, processor).read_text()
    finally:
        processor.instruction_first = False
    code = _usage_code(text)
    assert 'text=["Provide a one-sentence caption for the provided image.\\n<image>"]' in code
    assert 'model_id = "path/to/first"' in code
    assert "instruction before the image" in text


def test_paper_checkpoints_cite_the_paper_with_its_scores(saved, tmp_path):
    folder, model, processor = saved
    path = write_model_card(folder, model, processor, title="Mamba-VL 790M", repo_id=REPO_ID,
                            paper_scores={"coco": 110.5, "pope_random": {"accuracy": 86.0, "f1": 85.1}},
                            results=_results_json(tmp_path / "eval"))
    card = ModelCard.load(path)
    assert PAPER_CITATION in card.text and "2409.05395" in card.text
    found = {(result.dataset_type, result.metric_type): result for result in card.data.eval_results}
    # One source per benchmark on the Hub: the paper's scores where it has any; the measured ones stay in the table.
    assert set(found) == {("coco", "cider"), ("pope_random", "accuracy"), ("pope_random", "f1")}
    assert found["coco", "cider"].metric_value == 110.5
    assert {result.source_url for result in found.values()} == {PAPER_URL}
    assert "| coco | COCO captions, Karpathy test split | cider | 110.50 | 101.23 | 5000 |" in card.text
    assert "| pope_random | POPE on COCO, random subset | f1 | 85.10 | 84.25 | 100 (limited) |" in card.text
    # Scores alone: the paper's column, no measured one; a citation of one's own replaces the paper's.
    text = write_model_card(folder, model, processor, paper_scores={"vqav2": 70.25}, citation="@misc{x}").read_text()
    assert "| vqav2 | VQAv2 validation | vqa_accuracy | 70.25 |\n" in text
    assert "@misc{x}" in text and PAPER_CITATION not in text and "measured" not in text


@pytest.mark.parametrize("paper_scores, message", [
    ({"okvqa": 50.0}, "unknown benchmark 'okvqa'"),
    ({"pope_random": {"precision": 80.0}}, r"unknown metric 'precision'; pope_random reports accuracy, f1"),
    ({"coco": float("nan")}, r"paper_scores\['coco'\]\['cider'\]: a score must be a finite number"),
    ({"coco": "110"}, "a score must be a finite number, got '110'"),
])
def test_bad_paper_scores_are_refused_by_name(saved, paper_scores, message):
    folder, model, processor = saved
    with pytest.raises(ValueError, match=message):
        write_model_card(folder, model, processor, paper_scores=paper_scores)


def test_results_are_read_from_a_file_or_its_folder_and_bad_files_named(tmp_path):
    path = _results_json(tmp_path / "eval")
    assert read_results(path) == read_results(path.parent) == read_results(json.loads(path.read_text()))
    assert list(read_results(path)) == ["coco", "pope_random"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a readable results.json"):
        read_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="other.json: no 'benchmarks' mapping"):
        read_results(tmp_path / "other.json")


def test_a_card_from_the_folder_alone_matches_the_card_from_the_model(saved, tmp_path):
    folder, model, processor = saved
    from_model = write_model_card(folder, model, processor, title="t", repo_id=REPO_ID).read_text()
    assert write_model_card(folder, title="t", repo_id=REPO_ID).read_text() == from_model


def test_quickstart_scores_and_training_are_written(saved):
    folder, model, processor = saved
    scores = {"captioning": 90.0, "captioning_cider": 150.5, "vqa": 80.0, "grounding": 70.0}
    text = write_model_card(folder, model, processor, training={"seconds": 12.5, "losses": [3.2, 0.4]},
                            config={"steps": 2, "batch_size": 4, "connector": "mlp"}, scores=scores,
                            blind={"captioning": 1.0, "vqa": 30.0}).read_text()
    assert "steps 2, batch_size 4; every parameter trained, 12.5 s on CPU. Loss 3.2 -> 0.4." in text
    assert "| captioning (exact match) | 90.0 | 1.0 |" in text and "| grounding (IoU > 0.5) | 70.0 |  |" in text
    assert ModelCard.load(folder / "README.md").data.eval_results is None


def test_the_template_ships_in_the_wheel_and_loads_from_an_installed_copy(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(SOURCE / name, source / name)
    shutil.copytree(SOURCE / "vlmamba", source / "vlmamba", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel", "-d", str(tmp_path / "dist")],
                           cwd=source, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("vlmamba-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    assert (installed / "vlmamba" / "model_card.md").is_file()
    # The installed copy first on the path, away from the checkout.
    script = "import vlmamba.model_card as card\nprint(card.__file__)\nprint(len(card.template_text()))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    module_file, length = result.stdout.split()
    assert Path(module_file).is_relative_to(installed) and int(length) == len(template_text())
