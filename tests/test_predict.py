"""`vlmamba predict`: a saved model, an image file and a prompt -> text, boxes and an annotated PNG."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import save_tiny
from vlmamba.cli import main
from vlmamba.predict import load_model, predict, task_prompt


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("predict")
    save_tiny("mamba", directory / "model")
    image_path = directory / "scene.png"
    pixels = np.full((60, 90, 3), 255, dtype=np.uint8)
    Image.fromarray(pixels).save(image_path)
    return directory, image_path


def test_cli_runs_end_to_end_on_a_saved_model(saved, capsys):
    directory, image_path = saved
    output = directory / "out.png"
    result_file = directory / "result.json"
    code = main(["predict", "--model", str(directory / "model"), "--image", str(image_path), "--task", "grounding",
                 "--prompt", "the white background", "--max-new-tokens", "6", "--output", str(output),
                 "--json", str(result_file)])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(result_file.read_text())
    assert result["prompt"] == "<image>Locate the region that is described by:\nThe white background.\n"
    assert printed.splitlines()[0] == "text: " + json.dumps(result["text"])
    if result["boxes"]:  # drawn on the image, at its size
        assert Image.open(output).size == (90, 60) and result["output_image"] == str(output)
    else:
        assert not output.exists() and f"{output} not written" in printed
    assert len(result["boxes"]) == len(result["phrases"])


def test_predict_parses_and_draws_the_generated_box(saved, tmp_path):
    directory, image_path = saved
    model, processor = load_model(directory / "model")
    answer = processor.tokenizer("[0.10,0.20,0.50,0.80].", add_special_tokens=False)["input_ids"]
    original = model.generate

    def generate(**inputs):  # a model that has learnt the answer
        prompt = inputs["input_ids"]
        return torch.cat([prompt, torch.tensor([answer + [processor.tokenizer.eos_token_id]])], dim=1)

    model.generate = generate
    try:
        result = predict(model, processor, image_path, prompt="the thing", task="grounding",
                         output_image=tmp_path / "boxes.png")
    finally:
        model.generate = original
    np.testing.assert_allclose(result["boxes"], [[9.0, 12.0, 45.0, 48.0]], atol=1e-9)
    assert result["output_image"] == str(tmp_path / "boxes.png")
    drawn = np.asarray(Image.open(tmp_path / "boxes.png").convert("RGB"))
    original_pixels = np.asarray(Image.open(image_path).convert("RGB"))
    assert (drawn != original_pixels).any(axis=-1)[12:49, 9].any()  # the box's left edge is drawn
    assert (drawn[55:, 60:] == original_pixels[55:, 60:]).all()  # far from the box nothing changed


def test_task_prompts_and_their_errors(saved):
    directory, _ = saved
    _, processor = load_model(directory / "model")
    assert task_prompt(processor, None, "describe") == "<image>describe"
    assert task_prompt(processor, "vqa", "what is it?").endswith("\nQuestion: What is it?\nAnswer: ")
    mc = task_prompt(processor, "multiple_choice", "which?", choices=["red", "blue"])
    assert mc.endswith("A: Red\nB: Blue\nAnswer: ")
    with pytest.raises(ValueError, match="needs a prompt"):
        task_prompt(processor, "grounding", None)
    with pytest.raises(ValueError, match="needs choices"):
        task_prompt(processor, "multiple_choice", "which?")
    with pytest.raises(ValueError, match="Unknown task"):
        task_prompt(processor, "dance", "x")


def test_missing_image_is_a_clear_error(saved, tmp_path):
    directory, _ = saved
    model, processor = load_model(directory / "model")
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        predict(model, processor, tmp_path / "nothing.png", prompt="hi")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        predict(model, processor, broken, prompt="hi")


def _answering(model, processor, text):
    """`model` with a `generate` that answers `text` (a model that has learnt it)."""
    answer = processor.tokenizer(text, add_special_tokens=False)["input_ids"] + [processor.tokenizer.eos_token_id]

    def generate(**inputs):
        return torch.cat([inputs["input_ids"], torch.tensor([answer] * len(inputs["input_ids"]))], dim=1)

    model.generate = generate
    return model


def test_grounding_boxes_are_labelled_with_the_expression(saved, tmp_path, monkeypatch):
    directory, image_path = saved
    model, processor = load_model(directory / "model")
    _answering(model, processor, "[0.10,0.20,0.50,0.80].")
    labels = []

    def draw_boxes(image, boxes, labels=(), path=None):
        drawn.extend(labels)

    drawn = labels
    monkeypatch.setattr("vlmamba.predict.draw_boxes", draw_boxes)
    predict(model, processor, image_path, prompt="the thing", task="grounding", output_image=tmp_path / "boxes.png")
    assert labels == ["the thing"]
    labels.clear()
    _answering(model, processor, "||a cat [0.1,0.1,0.2,0.2]|| [0.5,0.5,0.6,0.6]")
    predict(model, processor, image_path, prompt="describe", output_image=tmp_path / "free.png")
    assert labels == ["a cat", "box 1"]


def test_no_image_is_written_for_an_answer_without_boxes(saved, tmp_path, capsys):
    directory, image_path = saved
    model, processor = load_model(directory / "model")
    _answering(model, processor, "A white square.")
    result = predict(model, processor, image_path, task="captioning", output_image=tmp_path / "caption.png")
    assert result["output_image"] is None and not (tmp_path / "caption.png").exists()


def test_cli_reports_user_errors_without_a_traceback(saved, tmp_path, capsys):
    directory, image_path = saved
    model = str(directory / "model")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "llama", "auto_map": {"AutoModel": "x.Y"}}))
    cases = [
        (["--model", model, "--image", str(tmp_path / "missing.png"), "--prompt", "hi"], "missing.png"),
        (["--model", str(tmp_path / "none"), "--image", str(image_path), "--prompt", "hi"], "Model folder not found"),
        (["--model", str(image_path), "--image", str(image_path), "--prompt", "hi"], "must be a folder"),
        (["--model", str(tmp_path), "--image", str(image_path), "--prompt", "hi"], "has no config.json"),
        (["--model", str(foreign), "--image", str(image_path), "--prompt", "hi"], "model_type 'llama'"),
        (["--model", model, "--image", str(image_path), "--task", "grounding"], "needs a prompt"),
    ]
    for arguments, message in cases:
        assert main(["predict", *arguments]) == 2, arguments
        error = capsys.readouterr().err
        assert "Traceback" not in error, arguments
        assert error.splitlines()[-1].startswith("vlmamba predict: error: ") and message in error, error
    with pytest.raises(SystemExit, match="--box must be"):
        main(["predict", "--model", model, "--image", str(image_path), "--task", "dense_captioning",
              "--box", "1,2,x,4"])
