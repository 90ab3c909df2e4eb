"""vlmamba.training: the stages, LoRA targets, learning on shapes, resuming an interrupted run exactly, the Trainer
set-up, and its entry points (`vlmamba train`, `accelerate launch training/train.py`)."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback, TrainingArguments

import vlmamba.training as training
from vlmamba.cli import main as cli_main
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.data.shapes import make_shapes_dataset


ROOT = Path(__file__).resolve().parent.parent


def arguments(output_dir, *extra):
    return training.parse_args([
        "--tiny", "mamba", "--tiny_width", "32", "--tiny_image_size", "32", "--tiny_patch_size", "16",
        "--shapes_scenes", "48", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
        "--output_dir", str(output_dir), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--use_cpu", "--dataloader_num_workers", "0", "--seed", "3", *extra,
    ])


def test_a_recipe_file_gives_defaults_that_flags_override(tmp_path):
    model_args, data_args, training_args = training.parse_args([
        "--config", str(ROOT / "training" / "recipes" / "stage1.json"), "--tiny", "mamba", "--learning_rate", "5e-4",
        "--output_dir", str(tmp_path)])
    assert model_args.stage == 1 and training_args.per_device_train_batch_size == 64
    assert training_args.learning_rate == 5e-4 and training_args.lr_scheduler_type == "cosine"
    assert training_args.remove_unused_columns is False
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate": 1e-3, "lerning_rate": 2}')
    with pytest.raises(ValueError, match="lerning_rate"):
        training.parse_args(["--config", str(bad), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_stages_and_lora_choose_the_trainable_parameters(family, tmp_path):
    model_args, _, _ = arguments(tmp_path, "--tiny", family)
    model, _ = training.build_model(model_args)
    model_args.stage = 1
    trainable = {n for n, p in training.select_trainable(model, model_args).named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.connector.") for name in trainable)
    model_args.stage = 2
    trainable = {n for n, p in training.select_trainable(model, model_args).named_parameters() if p.requires_grad}
    assert any(name.startswith("model.language_model.") for name in trainable)
    assert model.lm_head.weight.requires_grad and not any("vision_tower" in name for name in trainable)
    model_args.use_lora = True
    peft_model = training.select_trainable(model, model_args)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable if ".lora_" in name}
    assert adapted == set(training.LORA_TARGETS[model.config.text_config.model_type])
    assert all("language_model" in name for name in trainable if ".lora_" in name)
    assert any("connector" in name for name in trainable if ".lora_" not in name)


def test_training_on_shapes_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    trainer = training.train(*arguments(tmp_path, "--max_steps", "40"))
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
    original = training.Trainer

    class WithCallbacks(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for callback in callbacks:
                self.add_callback(callback)

    training.Trainer = WithCallbacks
    try:
        return training.train(*arguments)
    finally:
        training.Trainer = original


def _final_weights(trainer):
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    steps = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    straight = _final_weights(training.train(*arguments(tmp_path / "straight", *steps)))

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


def test_make_trainer_keeps_the_columns_the_collator_needs(tmp_path):
    model_args, _, _ = arguments(tmp_path)
    model, processor = training.build_model(model_args)
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                                      per_device_train_batch_size=2, dataloader_num_workers=0)
    assert training_args.remove_unused_columns is True  # the default, which would drop the examples' fields
    seen = _Steps()
    trainer = training.make_trainer(model, processor, make_shapes_dataset(4, seed=0, image_size=32), training_args,
                                    max_length=48, callbacks=[seen])
    assert training_args.remove_unused_columns is False and trainer.args.remove_unused_columns is False
    assert isinstance(trainer.data_collator, VLMambaDataCollator) and trainer.data_collator.max_length == 48
    assert trainer.data_collator.processor is processor and trainer.processing_class is processor
    assert seen in trainer.callback_handler.callbacks
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 48
    assert batch["labels"].shape == batch["input_ids"].shape


def test_vlmamba_train_runs_a_stage_and_saves_a_loadable_model(tmp_path):
    output = tmp_path / "out"
    assert cli_main([
        "train", "--tiny", "pythia", "--tiny_width", "32", "--tiny_image_size", "32", "--tiny_patch_size", "16",
        "--shapes_scenes", "8", "--per_device_train_batch_size", "4", "--max_steps", "1", "--output_dir", str(output),
        "--report_to", "none", "--save_strategy", "no", "--use_cpu", "--dataloader_num_workers", "0",
    ]) == 0
    model = AutoModelForImageTextToText.from_pretrained(output)
    assert model.config.text_config.model_type == "gpt_neox"
    assert AutoProcessor.from_pretrained(output).image_token == "<image>"


def test_vlmamba_train_help_lists_the_training_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: vlmamba train")
    assert "--tiny_width" in help_text and "--learning_rate" in help_text and "--shapes_scenes" in help_text


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
