"""training/train.py: the stages, LoRA targets, learning on shapes, resuming an interrupted run exactly."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback


ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("vlmamba_train", ROOT / "training" / "train.py")
train_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_script)


def arguments(output_dir, *extra):
    return train_script.parse_args([
        "--tiny", "mamba", "--tiny_width", "32", "--tiny_image_size", "32", "--tiny_patch_size", "16",
        "--shapes_scenes", "48", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
        "--output_dir", str(output_dir), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--use_cpu", "--dataloader_num_workers", "0", "--seed", "3", *extra,
    ])


def test_a_recipe_file_gives_defaults_that_flags_override(tmp_path):
    model_args, data_args, training_args = train_script.parse_args([
        "--config", str(ROOT / "training" / "recipes" / "stage1.json"), "--tiny", "mamba", "--learning_rate", "5e-4",
        "--output_dir", str(tmp_path)])
    assert model_args.stage == 1 and training_args.per_device_train_batch_size == 64
    assert training_args.learning_rate == 5e-4 and training_args.lr_scheduler_type == "cosine"
    assert training_args.remove_unused_columns is False
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate": 1e-3, "lerning_rate": 2}')
    with pytest.raises(ValueError, match="lerning_rate"):
        train_script.parse_args(["--config", str(bad), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_stages_and_lora_choose_the_trainable_parameters(family, tmp_path):
    model_args, _, _ = arguments(tmp_path, "--tiny", family)
    model, _ = train_script.build_model(model_args)
    model_args.stage = 1
    trainable = {n for n, p in train_script.select_trainable(model, model_args).named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.connector.") for name in trainable)
    model_args.stage = 2
    trainable = {n for n, p in train_script.select_trainable(model, model_args).named_parameters() if p.requires_grad}
    assert any(name.startswith("model.language_model.") for name in trainable)
    assert model.lm_head.weight.requires_grad and not any("vision_tower" in name for name in trainable)
    model_args.use_lora = True
    peft_model = train_script.select_trainable(model, model_args)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable if ".lora_" in name}
    assert adapted == set(train_script.LORA_TARGETS[model.config.text_config.model_type])
    assert all("language_model" in name for name in trainable if ".lora_" in name)
    assert any("connector" in name for name in trainable if ".lora_" not in name)


def test_training_on_shapes_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    trainer = train_script.train(*arguments(tmp_path, "--max_steps", "40"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    processor = AutoProcessor.from_pretrained(tmp_path)
    inputs = processor(text=["<image>Provide a one-sentence caption for the provided image.\n"],
                       images=[torch.zeros(3, 32, 32, dtype=torch.uint8)], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


class _Steps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def _train_with(arguments, *callbacks):
    original = train_script.Trainer

    class WithCallbacks(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for callback in callbacks:
                self.add_callback(callback)

    train_script.Trainer = WithCallbacks
    try:
        return train_script.train(*arguments)
    finally:
        train_script.Trainer = original


def _final_weights(trainer):
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    steps = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    straight = _final_weights(train_script.train(*arguments(tmp_path / "straight", *steps)))

    _train_with(arguments(tmp_path / "interrupted", *steps), _StopAt(3))
    assert (tmp_path / "interrupted" / "checkpoint-3").is_dir()
    assert not (tmp_path / "interrupted" / "checkpoint-6").exists()

    seen = _Steps()
    resumed = _final_weights(_train_with(arguments(tmp_path / "interrupted", *steps, "--resume_from_checkpoint",
                                                   "last"), seen))
    assert seen.steps == [4, 5, 6]  # it went on from the checkpoint, it did not start again
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-6, atol=1e-6, msg=name)
    # The last three steps did change the weights: the comparison above is not between untouched copies.
    halfway = AutoModelForImageTextToText.from_pretrained(tmp_path / "interrupted" / "checkpoint-3").state_dict()
    assert not torch.equal(halfway["model.connector.linear_1.weight"], straight["model.connector.linear_1.weight"])


@pytest.mark.slow
def test_two_process_training_with_accelerate(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): the loss falls, the checkpoint loads and generates."""
    import json
    import os
    import subprocess
    import sys

    output = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(ROOT / "training" / "accelerate" / "cpu_2proc.yaml"), str(ROOT / "training" / "train.py"),
        "--tiny", "mamba", "--tiny_width", "32", "--tiny_image_size", "32", "--tiny_patch_size", "16",
        "--shapes_scenes", "48", "--per_device_train_batch_size", "2", "--learning_rate", "3e-3", "--max_steps", "30",
        "--output_dir", str(output), "--report_to", "none", "--save_strategy", "steps", "--save_steps", "30",
        "--logging_steps", "1", "--use_cpu", "--dataloader_num_workers", "0", "--seed", "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 process(es)" in result.stderr
    state = json.loads((output / "checkpoint-30" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 30 and sum(losses[-5:]) < 0.7 * sum(losses[:5])
    model = AutoModelForImageTextToText.from_pretrained(output).eval()
    processor = AutoProcessor.from_pretrained(output)
    inputs = processor(text=["<image>Provide a one-sentence caption for the provided image.\n"],
                       images=[torch.zeros(3, 32, 32, dtype=torch.uint8)], return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
