"""vlmamba.training: the stages, LoRA targets, learning on shapes, resuming an interrupted run exactly (with the
checkpoint's tokenizer, past incomplete checkpoints), the Trainer set-up, samples that train nothing, and its entry
points (`vlmamba train`, `accelerate launch training/train.py`)."""

import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback, TrainingArguments

import vlmamba.training as training
from tests.tiny import FAMILIES
from vlmamba.cli import main as cli_main
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.data.shapes import make_shapes_dataset


ROOT = Path(__file__).resolve().parent.parent


TINY_RUN = (
    "--tiny mamba --tiny_width 32 --tiny_image_size 32 --tiny_patch_size 16 --shapes_scenes 48 "
    "--per_device_train_batch_size 4 --learning_rate 3e-3 --report_to none --save_strategy no --logging_steps 1 "
    "--use_cpu --dataloader_num_workers 0 --seed 3"
).split()


def arguments(output_dir, *extra):
    return training.parse_args([*TINY_RUN, "--output_dir", str(output_dir), *extra])


def test_a_recipe_file_gives_defaults_that_flags_override(tmp_path):
    recipe = str(ROOT / "training" / "recipes" / "stage1.json")
    model_args, data_args, training_args = training.parse_args(
        ["--config", recipe, "--tiny", "mamba", "--learning_rate", "5e-4", "--output_dir", str(tmp_path)]
    )
    assert model_args.stage == 1 and training_args.per_device_train_batch_size == 64
    assert training_args.learning_rate == 5e-4 and training_args.lr_scheduler_type == "cosine"
    assert training_args.remove_unused_columns is False
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate": 1e-3, "lerning_rate": 2}')
    with pytest.raises(ValueError, match="lerning_rate"):
        training.parse_args(["--config", str(bad), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("stage", [1, 2])
def test_the_vl_mamba_recipes_and_their_data_files_parse(stage, tmp_path):
    import inspect

    from vlmamba.data.captions import load_llava
    from vlmamba.data.registry import SOURCES

    recipe = ROOT / "training" / "recipes" / f"vl_mamba_stage{stage}.json"
    data = ROOT / "training" / "recipes" / "data" / ("llava_pretrain_558k.json" if stage == 1 else "llava_mix665k.json")
    extra = [] if stage == 1 else ["--model_name_or_path", str(tmp_path / "stage1")]
    model_args, data_args, training_args = training.parse_args(
        ["--config", str(recipe), "--dataset", str(data), "--output_dir", str(tmp_path), *extra]
    )
    assert model_args.stage == stage and data_args.max_length == 2048 and data_args.normalize_text == "False"
    assert (model_args.preset == "vl-mamba-2.8b") is (stage == 1)
    # LLaVA-1.5's global batches on 8 devices: 256 for the connector's pre-training, 128 for instruction tuning.
    assert 8 * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == (
        256 if stage == 1 else 128)
    assert training_args.learning_rate == (1e-3 if stage == 1 else 2e-5)
    for source in json.loads(data.read_text())["sources"]:
        assert source["name"] in SOURCES and source["name"].startswith("llava")  # both LLaVA loaders
        assert set(source["kwargs"]) <= set(inspect.signature(load_llava).parameters), source


@pytest.mark.parametrize("family", FAMILIES)
def test_stages_and_lora_choose_the_trainable_parameters(family, tmp_path):
    model_args, _, _ = arguments(tmp_path, "--tiny", family)
    model, processor = training.build_model(model_args)
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
    # Every adapter is in the computation: its B matrix (zero at the start) gets a gradient, which an adapter the
    # backbone's code bypasses (Mamba's dt_proj) would not.
    peft_model(**VLMambaDataCollator(processor)(list(make_shapes_dataset(2, seed=0)))).loss.backward()
    without_gradient = [name for name, parameter in peft_model.named_parameters()
                        if ".lora_B" in name and (parameter.grad is None or not parameter.grad.abs().sum())]
    assert not without_gradient


def test_training_on_shapes_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    trainer = training.train(*arguments(tmp_path, "--max_steps", "40"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    processor = AutoProcessor.from_pretrained(tmp_path)
    inputs = processor(
        text=["<image>Provide a one-sentence caption for the provided image.\n"],
        images=[torch.zeros(3, 32, 32, dtype=torch.uint8)],
        return_tensors="pt",
    )
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
    return training.train(*arguments, callbacks=list(callbacks))


def _final_weights(trainer):
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    steps = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    straight = _final_weights(training.train(*arguments(tmp_path / "straight", *steps)))

    _train_with(arguments(tmp_path / "interrupted", *steps), _StopAt(3))
    assert (tmp_path / "interrupted" / "checkpoint-3").is_dir()
    assert not (tmp_path / "interrupted" / "checkpoint-6").exists()

    seen = _Steps()
    resumed = _final_weights(
        _train_with(arguments(tmp_path / "interrupted", *steps, "--resume_from_checkpoint", "last"), seen)
    )
    assert seen.steps == [4, 5, 6]  # it went on from the checkpoint, it did not start again
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-6, atol=1e-6, msg=name)
    # The last three steps did change the weights: the comparison above is not between untouched copies.
    halfway = AutoModelForImageTextToText.from_pretrained(tmp_path / "interrupted" / "checkpoint-3").state_dict()
    assert not torch.equal(halfway["model.connector.linear_1.weight"], straight["model.connector.linear_1.weight"])


CHECKPOINTED = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """The output folder of a 4-step run with checkpoints at steps 2 and 4; tests change copies of it."""
    output = tmp_path_factory.mktemp("checkpointed")
    training.train(*arguments(output, *CHECKPOINTED))
    return output


def _copy(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


@contextmanager
def _transformers_warnings():
    """The warnings transformers logs (its loggers do not propagate to pytest's caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        yield records
    finally:
        library.removeHandler(handler)


def test_a_resumed_run_keeps_the_checkpoints_tokenizer_processor_and_config(checkpointed_run, tmp_path):
    run = _copy(checkpointed_run, tmp_path)
    other_data = ["--shapes_scenes", "24", "--shapes_seed", "5"]
    # Those flags would make a new tiny model's tokenizer another one: the check below is not between equal copies.
    _, other_data_args, _ = arguments(run, *other_data)
    fresh = training.build_model(arguments(run)[0], training.prompt_texts(training.load_data(other_data_args)[0]))[1]
    saved = AutoProcessor.from_pretrained(run / "checkpoint-4")
    assert fresh.tokenizer.get_vocab() != saved.tokenizer.get_vocab()

    seen = _Steps()
    with _transformers_warnings() as warnings:
        trainer = _train_with(
            arguments(run, *CHECKPOINTED, "--max_steps", "6", *other_data, "--resume_from_checkpoint", "last"), seen
        )
    assert seen.steps == [5, 6]
    resumed = trainer.processing_class
    assert resumed.tokenizer.get_vocab() == saved.tokenizer.get_vocab()
    text = "a red circle left of two blue squares ### && the answer"
    assert resumed.tokenizer(text)["input_ids"] == saved.tokenizer(text)["input_ids"]
    assert {**resumed.to_dict(), "auto_map": None} == {**saved.to_dict(), "auto_map": None}  # saving adds auto_map
    assert (
        trainer.model.config.to_dict()
        == AutoModelForImageTextToText.from_pretrained(run / "checkpoint-4").config.to_dict()
    )
    assert AutoProcessor.from_pretrained(run).tokenizer.get_vocab() == saved.tokenizer.get_vocab()
    # The head is tied to the embeddings, so the checkpoint rightly lacks it: no "missing keys" warning.
    assert trainer.model.lm_head.weight is trainer.model.get_input_embeddings().weight
    assert not [record for record in warnings if "missing keys" in record.getMessage()]

    flags = [*CHECKPOINTED, "--normalize_text", "keep_case", "--resume_from_checkpoint", str(run / "checkpoint-4")]
    with pytest.raises(ValueError, match="--normalize_text keep_case differs"):
        training.train(*arguments(run, *flags))
    flags = [*CHECKPOINTED, "--box_normalization", "reference", "--resume_from_checkpoint", str(run / "checkpoint-4")]
    with pytest.raises(ValueError, match="--box_normalization reference differs"):
        training.train(*arguments(run, *flags))


def test_box_normalization_flag_is_saved_with_the_processor(tmp_path):
    trainer = training.train(*arguments(tmp_path, "--max_steps", "1", "--box_normalization", "reference"))
    assert trainer.processing_class.box_format.reference_size == trainer.processing_class.image_processor.size["height"]
    assert AutoProcessor.from_pretrained(tmp_path).box_normalization == "reference"
    with pytest.raises(ValueError, match="--box_normalization must be one of direct, reference"):
        training.train(*arguments(tmp_path / "other", "--max_steps", "1", "--box_normalization", "pixels"))


def test_only_tied_keys_are_dropped_from_the_missing_keys_warning(tmp_path):
    from torch.nn.modules.module import _IncompatibleKeys

    for family, tied in (("mamba", True), ("pythia", False)):
        model_args, _, training_args = arguments(tmp_path, "--tiny", family)
        model, processor = training.build_model(model_args)
        trainer = training.make_trainer(model, processor, make_shapes_dataset(4, seed=0), training_args)
        assert (model.lm_head.weight is model.get_input_embeddings().weight) is tied
        with _transformers_warnings() as warnings:
            trainer._issue_warnings_after_load(
                _IncompatibleKeys(["lm_head.weight", "model.connector.linear_1.weight"], [])
            )
        message = " ".join(record.getMessage() for record in warnings)
        assert "model.connector.linear_1.weight" in message and ("lm_head.weight" in message) is not tied


def _skipped(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "vlmamba.train"]


def test_last_resumes_from_the_newest_complete_checkpoint(checkpointed_run, tmp_path, caplog):
    run = _copy(checkpointed_run, tmp_path)
    # A kill while checkpoint-4 was being saved: the weights are written, the optimizer and trainer state are not.
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        (run / "checkpoint-4" / name).unlink()
    # And a checkpoint-6 cut short in its weights.
    (run / "checkpoint-6").mkdir()
    weights = (run / "checkpoint-2" / "model.safetensors").read_bytes()
    (run / "checkpoint-6" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with caplog.at_level("WARNING", logger="vlmamba.train"):
        assert training.find_checkpoint("last", str(run)) == str(run / "checkpoint-2")
    messages = _skipped(caplog)
    assert len(messages) == 2
    assert (
        "Skipping" in messages[0] and "checkpoint-6" in messages[0] and "model.safetensors is truncated" in messages[0]
    )
    assert (
        "Skipping" in messages[1] and "checkpoint-4" in messages[1] and "trainer_state.json is missing" in messages[1]
    )

    seen = _Steps()
    _train_with(arguments(run, *CHECKPOINTED, "--resume_from_checkpoint", "last"), seen)
    assert seen.steps == [3, 4]


def test_no_complete_checkpoint_starts_from_scratch(tmp_path, caplog):
    (tmp_path / "checkpoint-3").mkdir()
    with caplog.at_level("WARNING", logger="vlmamba.train"):
        assert training.find_checkpoint("last", str(tmp_path)) is None
        assert training.find_checkpoint("last", str(tmp_path / "not-yet-created")) is None
    assert "checkpoint-3" in caplog.text and "starting from scratch" in caplog.text


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_truncated_checkpoint_file_is_named(checkpointed_run, tmp_path, caplog, name):
    run = _copy(checkpointed_run, tmp_path)
    path = run / "checkpoint-4" / name
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=f"Cannot resume from .*checkpoint-4: {name} is truncated"):
        training.find_checkpoint(str(run / "checkpoint-4"), str(run))
    # Before anything is loaded, also from `train`.
    with pytest.raises(ValueError, match=f"{name} is truncated"):
        training.train(*arguments(run, *CHECKPOINTED, "--resume_from_checkpoint", str(run / "checkpoint-4")))
    with caplog.at_level("WARNING", logger="vlmamba.train"):
        assert training.find_checkpoint("last", str(run)) == str(run / "checkpoint-2")
    assert f"{name} is truncated" in caplog.text


@pytest.mark.parametrize(
    "missing", [["optimizer.pt"], ["scheduler.pt"], ["optimizer.pt", "scheduler.pt", "rng_state.pth"]]
)
def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(checkpointed_run, tmp_path, caplog, missing):
    run = _copy(checkpointed_run, tmp_path)
    for name in missing:
        (run / "checkpoint-4" / name).unlink()
    with caplog.at_level("WARNING", logger="vlmamba.train"):
        assert training.find_checkpoint(str(run / "checkpoint-4"), str(run)) == str(run / "checkpoint-4")
        assert training.find_checkpoint("last", str(run)) == str(run / "checkpoint-4")
    messages = _skipped(caplog)
    assert messages and all("not a full training state" in message for message in messages)
    assert all(name in caplog.text for name in missing)
    assert "the optimizer (its moment estimates) and the learning-rate schedule start afresh" in caplog.text
    assert ("random draws" in caplog.text) is ("rng_state.pth" in missing)


def test_a_max_length_that_cuts_every_answer_is_counted_and_warned(tmp_path, caplog):
    # The shapes prompts are at least 19 tokens long before their answer; 12 keeps the 7-token image block.
    with caplog.at_level("WARNING"):
        trainer = training.train(*arguments(tmp_path, "--max_steps", "2", "--max_length", "12"))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["unsupervised_samples"] for entry in logged] == [4, 8]
    assert all(entry["loss"] == 0 for entry in logged)
    collator = [record for record in caplog.records if record.name == "vlmamba.data.collator"]
    assert len(collator) >= 2 and all(
        "No supervised token in every sample" in record.getMessage() for record in collator
    )
    assert "8 training samples had no supervised token" in caplog.text


@pytest.mark.parametrize("max_length", ["0", "-4"])
def test_max_length_must_be_positive(tmp_path, max_length):
    with pytest.raises(ValueError, match=f"--max_length must be a positive number of tokens, got {max_length}"):
        arguments(tmp_path, "--max_length", max_length)


def test_make_trainer_keeps_the_columns_the_collator_needs(tmp_path):
    model_args, _, _ = arguments(tmp_path)
    model, processor = training.build_model(model_args)
    training_args = TrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
        dataloader_num_workers=0,
    )
    assert training_args.remove_unused_columns is True  # the default, which would drop the examples' fields
    seen = _Steps()
    trainer = training.make_trainer(
        model, processor, make_shapes_dataset(4, seed=0, image_size=32), training_args, max_length=48, callbacks=[seen]
    )
    assert training_args.remove_unused_columns is False and trainer.args.remove_unused_columns is False
    assert isinstance(trainer.data_collator, VLMambaDataCollator) and trainer.data_collator.max_length == 48
    assert trainer.data_collator.processor is processor and trainer.processing_class is processor
    assert seen in trainer.callback_handler.callbacks
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 48
    assert batch["labels"].shape == batch["input_ids"].shape


def test_vlmamba_train_runs_a_stage_and_saves_a_loadable_model(tmp_path):
    output = tmp_path / "out"
    flags = (
        "train --tiny pythia --tiny_width 32 --tiny_image_size 32 --tiny_patch_size 16 --shapes_scenes 8 "
        "--per_device_train_batch_size 4 --max_steps 1 --report_to none --save_strategy no --use_cpu "
        "--dataloader_num_workers 0"
    ).split()
    assert cli_main([*flags, "--output_dir", str(output)]) == 0
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
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    flags = (
        "--tiny mamba --tiny_width 32 --tiny_image_size 32 --tiny_patch_size 16 --shapes_scenes 48 "
        "--per_device_train_batch_size 2 --learning_rate 3e-3 --max_steps 30 --report_to none --save_strategy steps "
        "--save_steps 30 --logging_steps 1 --use_cpu --dataloader_num_workers 0 --seed 3"
    ).split()
    command = [
        *launch,
        str(ROOT / "training" / "accelerate" / "cpu_2proc.yaml"),
        str(ROOT / "training" / "train.py"),
        *flags,
        "--output_dir",
        str(output),
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
    inputs = processor(
        text=["<image>Provide a one-sentence caption for the provided image.\n"],
        images=[torch.zeros(3, 32, 32, dtype=torch.uint8)],
        return_tensors="pt",
    )
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
