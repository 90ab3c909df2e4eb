"""The offline quickstart: data, scoring, the blind baseline, and the whole run at a toy budget."""

import json
from pathlib import Path

import pytest
from PIL import Image

from vlmamba.cli import main
from vlmamba.data.shapes import make_shapes_dataset
from vlmamba.experiments import quickstart
from vlmamba.experiments.quickstart import (
    FAMILY_NAMES,
    MAX_NEW_TOKENS,
    QuickstartConfig,
    build,
    chance,
    drop_seen_scenes,
    evaluation_items,
    results_table,
    score,
)
from vlmamba.toy import FAMILIES, train_tokenizer
from vlmamba.training import prompt_texts


def _rows(num_scenes=3, seed=5):
    dataset = make_shapes_dataset(num_scenes, seed=seed, image_size=32, tasks=("captioning", "vqa", "grounding"))
    return [dataset[i] for i in range(len(dataset))]


def test_score_is_hand_computable():
    rows = _rows(2)
    by_task = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    cap0, cap1 = by_task["captioning"]
    vqa0, vqa1 = by_task["vqa"]
    box0, box1 = by_task["grounding"]
    x1, y1, x2, y2 = box0["box"]
    outputs = {
        id(cap0): {"text": cap0["caption"].capitalize() + ".", "boxes": []},  # right, in the model's spelling
        id(cap1): {"text": cap1["caption"] + " and a red circle.", "boxes": []},  # wrong
        id(vqa0): {"text": vqa0["answer"].capitalize() + ".", "boxes": []},  # right
        id(vqa1): {"text": "purple.", "boxes": []},  # wrong
        id(box0): {"text": "", "boxes": [[x1, y1, x2 + 1, y2]]},  # IoU > 0.5
        id(box1): {"text": "", "boxes": []},  # nothing parsed: wrong
    }
    result = score(rows, [outputs[id(row)] for row in rows])
    assert result["captioning"] == 50.0
    assert result["vqa"] == 50.0
    assert result["grounding"] == 50.0
    assert result["counts"] == {"captioning": 2, "vqa": 2, "grounding": 2}
    assert 0 < result["captioning_cider"]
    types = {vqa0["question_type"], vqa1["question_type"]}
    assert set(result["vqa_by_type"]) == types


def test_cider_rewards_the_right_captions():
    rows = [row for row in _rows(4) if row["task"] == "captioning"]
    right = score(rows, [{"text": row["caption"].capitalize() + ".", "boxes": []} for row in rows])
    shifted = score(rows, [{"text": rows[(i + 1) % len(rows)]["caption"], "boxes": []} for i in range(len(rows))])
    assert right["captioning"] == 100.0 and shifted["captioning"] < 100.0
    assert right["captioning_cider"] > shifted["captioning_cider"]


def test_score_grounding_needs_iou_above_half():
    rows = [row for row in _rows(1) if row["task"] == "grounding"]
    x1, y1, x2, y2 = rows[0]["box"]
    width = x2 - x1
    # The same height and half the width inside the true box: IoU exactly 0.5, which does not count.
    half = [x1, y1, x1 + width / 2, y2]
    assert score(rows, [{"text": "", "boxes": [half]}])["grounding"] == 0.0
    assert score(rows, [{"text": "", "boxes": [[x1, y1, x2, y2]]}])["grounding"] == 100.0


def test_chance_of_vqa_follows_question_types():
    rows = _rows(6)
    expected = {"colour": 1 / 4, "shape": 1 / 3, "count": 1 / 3, "position": 1 / 2}
    vqa = [expected[row["question_type"]] for row in rows if row["task"] == "vqa"]
    assert chance(rows)["vqa"] == round(100 * sum(vqa) / len(vqa), 1)


def test_held_out_scenes_seen_in_training_are_dropped():
    train = make_shapes_dataset(4, seed=1, image_size=32, tasks=("captioning",))
    same = make_shapes_dataset(4, seed=1, image_size=32, tasks=("captioning", "vqa"))
    kept, repeated = drop_seen_scenes(train, same)
    assert repeated == [0, 1, 2, 3] and len(kept) == 0
    other = make_shapes_dataset(4, seed=2, image_size=32, tasks=("captioning",))
    kept, repeated = drop_seen_scenes(train, other)
    assert repeated == [] and len(kept) == len(other)


def test_blind_items_use_another_scenes_image(tmp_path):
    rows = _rows(3)
    tokenizer = train_tokenizer(prompt_texts(make_shapes_dataset(3, seed=0, image_size=32)))
    _, processor = build("pythia", tokenizer, QuickstartConfig(width=32, depth={"mamba": 2, "pythia": 1}))
    seeing = evaluation_items(rows, processor, tmp_path)
    blind = evaluation_items(rows, processor, tmp_path, blind=True)
    scenes = sorted({row["scene"] for row in rows})
    for row, item, blind_item in zip(rows, seeing, blind):
        # The examples are the rows' fields; the saved processor writes their prompts.
        prompt = processor.build_prompt(item, for_generation=True).prompt
        assert prompt == processor.build_prompt(blind_item, for_generation=True).prompt
        assert item["max_new_tokens"] == MAX_NEW_TOKENS[row["task"]]
        assert Image.open(item["image"]).tobytes() == row["image"].convert("RGB").tobytes()
        following = scenes[(scenes.index(row["scene"]) + 1) % len(scenes)]
        assert blind_item["image"].endswith(f"scene_{following:05d}.png")
        assert blind_item["image"] != item["image"]
        # The task-aware layout: the instruction comes before the image.
        assert prompt.index(processor.image_token) > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [({"families": ("mamba", "llama")}, "families"), ({"steps": 0}, "steps"), ({"eval_scenes": -1}, "eval_scenes"),
     ({"connector": "vss"}, "connector"), ({"scan": "spiral"}, "scan")],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuickstartConfig(**kwargs)


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_a_failed_evaluation_keeps_the_trained_models(tmp_path, capsys, monkeypatch):
    # As the README runs it: a relative output folder, from the working directory.
    monkeypatch.chdir(tmp_path)
    command = ["quickstart", "--output-dir", "outputs/quickstart", "--steps", "2", "--train-scenes", "12",
               "--eval-scenes", "4", "--no-progress"]
    output = tmp_path / "outputs" / "quickstart"

    def failing(*args, **kwargs):
        raise RuntimeError("generation failed")

    with monkeypatch.context() as patch:
        patch.setattr(quickstart, "generate_without_vlmamba", failing)
        with pytest.raises(SystemExit, match="Evaluating Mamba-VL failed: generation failed") as failure:
            main(command)
    assert "run the same command again" in str(failure.value)
    for family in ("mamba", "pythia"):
        assert str(Path("outputs/quickstart") / f"{family}-vl-shapes") in str(failure.value)
        assert (output / f"{family}-vl-shapes" / quickstart.TRAINING_RECORD).exists()
    capsys.readouterr()

    def trained_again(*args, **kwargs):
        raise AssertionError("the saved models were trained again")

    monkeypatch.setattr(quickstart, "train", trained_again)
    code = main(command)
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing the model trained with these settings") == 2
    results = json.loads((output / "results.json").read_text())
    assert printed.strip().endswith(f"({results['seconds']:.0f} s in all).")
    assert results_table(results) in printed
    sizes = [results["families"][family]["parameters"] for family in ("mamba", "pythia")]
    assert abs(sizes[0] - sizes[1]) / max(sizes) < 0.1
    for family in ("mamba", "pythia"):
        entry = results["families"][family]
        folder = output / f"{family}-vl-shapes"
        config = json.loads((folder / "config.json").read_text())
        assert "AutoModelForImageTextToText" in config["auto_map"]
        assert (folder / "modeling_vlmamba.py").exists() and (folder / "processor_config.json").exists()
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "pipeline_tag: image-text-to-text" in card
        # Loaded as remote code (transformers' dynamic modules), not from the vlmamba package.
        assert entry["loaded_class"].startswith("transformers_modules.")
        assert entry["loaded_class"].endswith("VLForConditionalGeneration")
        assert Image.open(entry["boxes_png"]).size[1] == 4 * 32
        lines = (output / f"{family}_predictions.jsonl").read_text().splitlines()
        assert len(lines) == sum(entry["scores"]["counts"].values()) == 3 * 4
        assert {json.loads(line)["task"] for line in lines} == {"captioning", "vqa", "grounding"}
        assert len(entry["training"]["losses"]) == 2


@pytest.mark.slow
def test_the_quickstart_trains_a_vl_mamba_connector_when_asked(tmp_path, capsys):
    code = main(["quickstart", "--output-dir", str(tmp_path), "--steps", "2", "--train-scenes", "8", "--eval-scenes",
                 "3", "--families", "mamba", "--connector", "vss_l2", "--scan", "cross", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "connector: vss_l2, cross scan" in printed
    config = json.loads((tmp_path / "mamba-vl-vss-l2-shapes" / "config.json").read_text())
    assert config["connector_type"] == "vss_l2" and config["vss_scan"] == "cross"
    assert (tmp_path / "mamba-vl-vss-l2-shapes" / "vision_scan.py").is_file()


def test_the_quickstart_takes_the_other_ssm_backbones(tmp_path, capsys):
    # One run (the hybrid); the other backbones go through the same code, named by the same table.
    assert set(FAMILY_NAMES) == set(FAMILIES)
    code = main(["quickstart", "--output-dir", str(tmp_path), "--steps", "2", "--train-scenes", "8", "--eval-scenes",
                 "3", "--families", "falcon_h1", "--no-progress"])
    assert code == 0
    assert "FalconH1-VL" in capsys.readouterr().out
    config = json.loads((tmp_path / "falcon_h1-vl-shapes" / "config.json").read_text())
    assert config["model_type"] == "mamba_vl" and config["text_config"]["model_type"] == "falcon_h1"
