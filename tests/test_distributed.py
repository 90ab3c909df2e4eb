"""Distributed training (`training/accelerate/`): the configs as accelerate reads them, FSDP2's units in the models, an
FSDP2 run on two CPU processes against one process, and the DeepSpeed settings as accelerate's plugin builds them.

Run as a script, this file is one process of an FSDP launch (see `fsdp_worker`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch


ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "training" / "accelerate"

TINY_FLAGS = [
    "--tiny_width", "32", "--tiny_image_size", "32", "--tiny_patch_size", "16", "--shapes_scenes", "32",
    "--learning_rate", "3e-3", "--max_steps", "4", "--seed", "3", "--report_to", "none", "--save_strategy", "no",
    "--logging_steps", "1", "--use_cpu", "--dataloader_num_workers", "0",
]


def launch_environment(config: str, *flags: str) -> dict[str, str]:
    """The variables `accelerate launch --config_file training/accelerate/CONFIG.yaml FLAGS` sets for its processes.

    Goes through accelerate's own launcher code: its parser, its merge of the file into the flags, and the functions
    that build the environment of the multi-process and DeepSpeed launchers.
    """
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{config}.yaml"), *flags, "train.py"])
    args, defaults, mixed_precision_from_file = _validate_launch_command(args)
    if args.use_deepspeed:
        # As `accelerate launch` does before it hands over to the DeepSpeed launcher.
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_file else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, environment = prepare_deepspeed_cmd_env(args)
    else:
        environment = prepare_multi_gpu_env(args)
    return {key: value for key, value in environment.items() if os.environ.get(key) != value}


def fsdp_plugin(*flags: str):
    """accelerate's `FullyShardedDataParallelPlugin` as a process of an `fsdp.yaml` launch builds it."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    with mock.patch.dict(os.environ, launch_environment("fsdp", *flags)):
        return FullyShardedDataParallelPlugin()


def fsdp_units(model) -> dict[str, torch.nn.Module]:
    """The modules accelerate shards as FSDP2 units of their own (its auto-wrap policy on `fsdp.yaml`)."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    policy = fsdp2_prepare_auto_wrap_policy(fsdp_plugin(), model)
    return {name: module for name, module in model.named_modules() if policy(module)}


def shapes_batch(processor, num_examples: int = 4) -> dict:
    from vlmamba.data.collator import VLMambaDataCollator
    from vlmamba.data.shapes import make_shapes_dataset

    examples = make_shapes_dataset(num_examples, seed=123)
    return VLMambaDataCollator(processor)([examples[i] for i in range(num_examples)])


@pytest.mark.parametrize("config", ["ddp", "cpu_2proc", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_every_setting_of_a_config_is_one_accelerate_reads(config):
    # accelerate rejects an unknown top-level key, but drops a misspelt key of `fsdp_config` or `deepspeed_config`
    # without a word: each must name one of `accelerate launch`'s flags.
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    settings = load_config_from_file(str(CONFIGS / f"{config}.yaml"))
    flags = {action.dest for action in launch_command_parser()._actions}
    nested = {**settings.fsdp_config, **settings.deepspeed_config}
    assert set(nested) <= flags, sorted(set(nested) - flags)


def test_fsdp_config_is_fsdp2_over_whole_layers_saving_a_full_state_dict():
    from torch.distributed.fsdp import StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    environment = launch_environment("fsdp")
    assert environment["ACCELERATE_USE_FSDP"] == "true" and environment["ACCELERATE_MIXED_PRECISION"] == "bf16"
    plugin = fsdp_plugin()
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # `save_model` writes one plain safetensors file
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy and plugin.transformer_cls_names_to_wrap is None
    assert plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading is True
    # The flags a CPU run passes override the file.
    assert launch_environment("fsdp", "--num_processes", "2", "--mixed_precision", "no")[
        "ACCELERATE_MIXED_PRECISION"] == "no"


@pytest.mark.parametrize("family, layer_class", [("mamba", "MambaBlock"), ("pythia", "GPTNeoXLayer")])
@pytest.mark.parametrize(
    "vision", ["clip", "timm"]
)
def test_fsdp_units_are_the_no_split_modules_and_each_runs_its_own_forward(family, layer_class, vision):
    from tests.tiny import make_model, make_processor

    processor = make_processor()
    model = make_model(family, processor, vision).train()
    units = fsdp_units(model)
    assert layer_class in type(model)._no_split_modules
    assert {type(unit).__name__ for unit in units.values()} <= set(model._no_split_modules)
    layers = model.get_decoder().layers
    assert all(any(unit is layer for unit in units.values()) for layer in layers), sorted(units)
    assert any(name.startswith("model.vision_tower") for name in units), sorted(units)
    if family == "mamba":
        # One parameter: accelerate shards the embedding and the tied head as a single unit.
        assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    # A unit's weights are gathered in its forward hooks; a unit whose forward is bypassed would compute on shards.
    called = set()
    for name, unit in units.items():
        unit.register_forward_pre_hook(lambda module, args, name=name: called.add(name))
    model(**shapes_batch(processor, 2))
    assert called == set(units), sorted(set(units) - called)


def _take_the_fsdp_path_on_cpu():
    """Lets accelerate prepare FSDP on CPU processes, as it does on GPUs.

    accelerate (1.16) turns FSDP on only for GPU-like devices (`AcceleratorState.__init__` checks for MULTI_GPU, XPU,
    NPU, ...): on a CPU run (MULTI_CPU, gloo) it leaves the FSDP plugin unused and wraps the model in DDP. Here a CPU
    run with an FSDP plugin is switched to FSDP right after that check; everything else is accelerate's and torch's.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    initialize = AcceleratorState.__init__

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        initialize(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = __init__


def fsdp_worker(argv: list[str]) -> None:
    """One process of an `accelerate launch --config_file fsdp.yaml` run of `vlmamba.training.train` on CPU.

    Trains and saves as `training/train.py` does, then writes what its shard of the model held to
    `OUTPUT_DIR/rank<N>.json`: the class and distributed type, which parameters are DTensors, their local and full
    sizes, whether the embedding and the head are still one parameter, and the logged losses.
    """
    from torch.distributed.tensor import DTensor

    import vlmamba.training as training

    _take_the_fsdp_path_on_cpu()
    trainer = training.train(*training.parse_args(argv))
    model = trainer.model
    parameters = dict(model.named_parameters())
    record = {
        "class": type(model).__name__,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "dtensors": sorted(name for name, parameter in parameters.items() if isinstance(parameter, DTensor)),
        "parameters": sorted(parameters),
        "local_numel": {
            name: parameter.to_local().numel()
            for name, parameter in parameters.items()
            if isinstance(parameter, DTensor)
        },
        "numel": {name: parameter.numel() for name, parameter in parameters.items()},
        "tied": model.get_input_embeddings().weight is model.get_output_embeddings().weight,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    rank = trainer.accelerator.process_index
    Path(trainer.args.output_dir, f"rank{rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_fsdp2_on_two_cpu_processes_trains_the_weights_one_process_trains(tmp_path, family):
    """`fsdp.yaml` with 2 CPU processes (gloo) against one process on the same batches: every parameter is sharded,
    the saved full state dict loads to the same logits, and the checkpoint names vlmamba's classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import vlmamba.training as training

    flags = ["--tiny", family, *TINY_FLAGS]
    sharded = tmp_path / "fsdp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "fsdp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", __file__,
        *flags, "--per_device_train_batch_size", "2", "--output_dir", str(sharded),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads((sharded / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for record in records:
        assert record["distributed_type"] == "DistributedType.FSDP" and record["class"].startswith("FSDP")
        assert record["dtensors"] == record["parameters"]  # frozen vision tower included
        assert record["tied"] is (family == "mamba")
    for name, numel in records[0]["numel"].items():
        # Each process holds its part of dim 0 (FSDP2's `Shard(0)`); together, the whole parameter.
        assert records[0]["local_numel"][name] + records[1]["local_numel"][name] == numel, name
    embedding = next(name for name in records[0]["numel"] if name.startswith("model.language_model.embed"))
    assert records[0]["local_numel"][embedding] == records[0]["numel"][embedding] // 2

    # One process, batches of 4: the same examples per step as 2 processes x 2 (accelerate deals the batches out).
    single = tmp_path / "single"
    trainer = training.train(*training.parse_args([*flags, "--per_device_train_batch_size", "4",
                                                   "--output_dir", str(single)]))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert records[0]["losses"] == pytest.approx(losses, rel=1e-5)

    config = json.loads((sharded / "config.json").read_text())
    assert all(name.split(".")[0] in ("configuration_vlmamba", "modeling_vlmamba")
               for name in config["auto_map"].values()), config["auto_map"]
    assert not list(sharded.glob("_fsdp*.py"))
    processor = AutoProcessor.from_pretrained(single)
    batch = shapes_batch(processor)
    with torch.no_grad():
        logits = {
            name: AutoModelForImageTextToText.from_pretrained(folder).eval()(**batch).logits
            for name, folder in (("fsdp", sharded), ("single", single))
        }
    # fp32 on both sides, the same examples and order: only the order of the gradient sums differs (gloo adds the two
    # processes' halves), a few ulps that 4 AdamW steps carry to about 1e-6 in logits of size ~4.
    torch.testing.assert_close(logits["fsdp"], logits["single"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_reach_accelerates_plugin(stage):
    # accelerate builds its DeepSpeed plugin without deepspeed installed; the Trainer fills the "auto" fields.
    from accelerate.utils import DeepSpeedPlugin

    environment = launch_environment(f"deepspeed_zero{stage}")
    assert environment["ACCELERATE_USE_DEEPSPEED"] == "true" and environment["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with mock.patch.dict(os.environ, environment):
        plugin = DeepSpeedPlugin()
        plugin.set_mixed_precision("bf16")
    settings = plugin.deepspeed_config
    zero = settings["zero_optimization"]
    assert zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    # ZeRO-3 holds every parameter in pieces: the final save gathers them into whole 16-bit weights.
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    assert plugin.zero3_init_flag is (stage == 3)
    assert settings["bf16"] == {"enabled": True}
    assert settings["gradient_accumulation_steps"] == settings["gradient_clipping"] == "auto"
    assert settings["train_micro_batch_size_per_gpu"] == "auto"


if __name__ == "__main__":
    fsdp_worker(sys.argv[1:])
