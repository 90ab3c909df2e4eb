"""Save/load through the Auto classes, remote code in a process without vlmamba, the pipeline, and the builder."""

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    MambaConfig,
    MambaForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
    TimmWrapperConfig,
    TimmWrapperModel,
    pipeline,
)

import vlmamba.models
from tests.tiny import FAMILIES, make_tokenizer, save_tiny
from vlmamba import (
    MambaVLForConditionalGeneration,
    MambaVLModel,
    PythiaVLForConditionalGeneration,
    PythiaVLModel,
    VLMambaProcessor,
    build_from_components,
    build_from_preset,
)
from vlmamba.experiments.demo import demo_image, generate_in_fresh_process
from vlmamba.models.processing_vlmamba import FREE_PROMPT_MAX_NEW_TOKENS
from vlmamba.toy import text_config, vision_configs
from vlmamba.training import LORA_TARGETS


MODELS_DIR = Path(vlmamba.models.__file__).parent
HEADS = {family: MambaVLForConditionalGeneration for family in FAMILIES} | {"pythia": PythiaVLForConditionalGeneration}
BASES = {family: MambaVLModel for family in FAMILIES} | {"pythia": PythiaVLModel}
PROMPT = "<image>Provide a one-sentence caption for the provided image."


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    model, processor = save_tiny(request.param, directory)
    image_path = directory / "image.png"
    demo_image().save(image_path)
    return request.param, directory, model, processor, image_path


def test_save_pretrained_writes_code_and_auto_map(saved):
    family, directory, model, _, _ = saved
    config = json.loads((directory / "config.json").read_text())
    head, base = HEADS[family].__name__, BASES[family].__name__
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_vlmamba.{type(model.config).__name__}",
        "AutoModelForImageTextToText": f"modeling_vlmamba.{head}",
        "AutoModel": f"modeling_vlmamba.{base}",
        "AutoModelForCausalLM": f"modeling_vlmamba.{head}",
    }
    assert config["model_type"] == ("pythia_vl" if family == "pythia" else "mamba_vl")
    assert config["text_config"]["model_type"] == {"pythia": "gpt_neox"}.get(family, family)
    processor_config = json.loads((directory / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_vlmamba.VLMambaProcessor"
    # The code that ships is exactly the models package.
    shipped = {path.name for path in directory.glob("*.py")}
    assert shipped == {path.name for path in MODELS_DIR.glob("*.py")} - {"__init__.py"}


def stdout_without_vlmamba(code: str) -> str:
    """Runs `code` in a Python process in which `import vlmamba` fails, offline, and returns what it printed."""
    script = "import sys\nsys.modules['vlmamba'] = None\n" + code
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _run_without_vlmamba(code: str) -> dict:
    """`stdout_without_vlmamba` of `code` that prints one JSON line last: that line, parsed."""
    return json.loads(stdout_without_vlmamba(code).strip().splitlines()[-1])


def test_a_headless_model_saves_a_folder_that_loads_as_remote_code(saved, tmp_path):
    family, directory, model, processor, image_path = saved
    AutoModel.from_pretrained(directory).save_pretrained(tmp_path)
    assert (tmp_path / "modeling_vlmamba.py").is_file()
    ids = processor.tokenizer("a red square", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = model.model(input_ids=torch.tensor([ids])).last_hidden_state
    found = _run_without_vlmamba(f"""
import json, torch
from transformers import AutoModel
base = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
with torch.no_grad():
    hidden = base(input_ids=torch.tensor([{ids!r}])).last_hidden_state
print(json.dumps({{"class": type(base).__name__, "hidden": hidden.flatten().tolist()}}))
""")
    assert found["class"] == BASES[family].__name__
    assert found["hidden"] == pytest.approx(expected.flatten().tolist(), abs=1e-6)


def test_remote_auto_classes_pick_the_backend_and_the_causal_lm_head(saved):
    family, directory, model, processor, image_path = saved
    found = _run_without_vlmamba(f"""
import json
from transformers import AutoImageProcessor, AutoModelForCausalLM
folder = {str(directory)!r}
print(json.dumps({{
    "pil": type(AutoImageProcessor.from_pretrained(folder, backend="pil", trust_remote_code=True)).__name__,
    "default": type(AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)).__name__,
    "causal_lm": type(AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)).__name__,
}}))
""")
    assert found == {"pil": "VLMambaImageProcessorPil", "default": "VLMambaImageProcessor",
                     "causal_lm": HEADS[family].__name__}
    # With vlmamba installed, the causal-LM Auto class gives the same head, for text-only generation.
    causal = AutoModelForCausalLM.from_pretrained(directory).eval()
    assert type(causal) is HEADS[family]
    ids = torch.tensor([processor.tokenizer("a red square", add_special_tokens=False)["input_ids"]])
    torch.testing.assert_close(causal.generate(input_ids=ids, max_new_tokens=4, do_sample=False),
                               model.generate(input_ids=ids, max_new_tokens=4, do_sample=False), rtol=0, atol=0)


def test_auto_classes_reload_identical_logits(saved):
    family, directory, model, processor, image_path = saved
    assert isinstance(AutoConfig.from_pretrained(directory), type(model.config))
    loaded = AutoModelForImageTextToText.from_pretrained(directory).eval()
    assert type(loaded) is HEADS[family]
    loaded_processor = AutoProcessor.from_pretrained(directory)
    assert isinstance(loaded_processor, VLMambaProcessor)
    inputs = loaded_processor(images=[Image.open(image_path)], text=[PROMPT], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    base, loading_info = AutoModel.from_pretrained(directory, output_loading_info=True)
    assert type(base) is BASES[family]
    assert not loading_info["missing_keys"] and not loading_info["unexpected_keys"]
    with torch.no_grad():
        torch.testing.assert_close(base.eval()(**inputs).last_hidden_state,
                                   model.model(**inputs).last_hidden_state, rtol=0, atol=0)


def test_remote_code_in_a_process_without_vlmamba_generates_the_same_tokens(saved):
    family, directory, model, processor, image_path = saved
    remote = generate_in_fresh_process(directory, image_path, PROMPT, max_new_tokens=8)
    assert remote["class"] == HEADS[family].__name__
    assert remote["module"].startswith("transformers_modules."), remote["module"]
    inputs = processor(images=[Image.open(image_path)], text=[PROMPT], return_tensors="pt")
    local = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert remote["tokens"] == local[0, inputs["input_ids"].shape[1]:].tolist()


def test_image_text_to_text_pipeline(saved):
    family, directory, model, processor, image_path = saved
    pipe = pipeline("image-text-to-text", model=str(directory))
    image = Image.open(image_path)
    result = pipe(images=image, text=PROMPT, max_new_tokens=6, return_full_text=False)
    inputs = processor(images=[image], text=[PROMPT], return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    expected_text = processor.post_process_image_text_to_text(
        expected[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert result[0]["generated_text"] == expected_text
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "what colour?"}]}]
    chat = pipe(text=messages, max_new_tokens=4)
    assert isinstance(chat[0]["generated_text"], (str, list))


def test_batched_pipeline_answers_as_one_by_one_calls(saved):
    family, directory, model, processor, image_path = saved
    assert AutoProcessor.from_pretrained(directory).tokenizer.padding_side == "left"
    pipe = pipeline("image-text-to-text", model=str(directory))
    images = [demo_image(seed=seed) for seed in range(4)]
    # Prompts of different lengths, so that the shorter ones are padded in the batch.
    texts = [PROMPT, "<image>What?", "<image>Describe the picture, its colours and its shapes, in detail.", PROMPT]
    batched = pipe(images=images, text=texts, batch_size=4, max_new_tokens=6, return_full_text=False)
    alone = [pipe(images=image, text=text, max_new_tokens=6, return_full_text=False)
             for image, text in zip(images, texts)]
    assert len(batched) == len(texts)
    assert [result["generated_text"] for result in batched] == [result[0]["generated_text"] for result in alone]


def test_pipeline_chat_with_a_task_item_matches_generate(saved):
    family, directory, model, processor, image_path = saved
    pipe = pipeline("image-text-to-text", model=str(directory))
    image = Image.open(image_path)
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "task", "task": "grounding", "expression": "the square"}]}]
    result = pipe(text=messages, max_new_tokens=5, return_full_text=False)
    prompt = processor.apply_chat_template(messages)
    assert prompt == "<image>Locate the region that is described by:\nThe square.\n"
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    expected_text = processor.post_process_image_text_to_text(
        expected[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert result[0]["generated_text"] == expected_text


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    """Local folders standing in for Hub ids: a timm tower, a CLIP tower, Mamba and Pythia LMs, a tokenizer."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    tokenizer.save_pretrained(root / "tokenizer")
    timm_config = dict(vision_configs()["timm"])
    timm_config.pop("model_type")
    TimmWrapperModel(TimmWrapperConfig(**timm_config)).save_pretrained(root / "timm")
    clip_config = dict(vision_configs()["clip"])
    clip_config.pop("model_type")
    CLIPVisionModel(CLIPVisionConfig(**clip_config)).save_pretrained(root / "clip")
    # SigLIP at a side that is not a multiple of its patch, as SigLIP-SO400M/14 at 384 px.
    siglip_config = dict(vision_configs(30, 14)["siglip"])
    siglip_config.pop("model_type")
    SiglipVisionModel(SiglipVisionConfig(**siglip_config)).save_pretrained(root / "siglip")
    for family, (config_class, model_class) in {"mamba": (MambaConfig, MambaForCausalLM),
                                                 "pythia": (GPTNeoXConfig, GPTNeoXForCausalLM)}.items():
        config = dict(text_config(family, len(tokenizer)))
        config.pop("model_type")
        model_class(config_class(**config)).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
    return root


@pytest.mark.parametrize("family, vision", [("mamba", "timm"), ("pythia", "timm"), ("mamba", "clip")])
def test_build_from_components_keeps_pretrained_weights(components, family, vision, tmp_path):
    model, processor = build_from_components(family, str(components / vision), str(components / family),
                                             str(components / "tokenizer"))
    tower = AutoModel.from_pretrained(components / vision)
    for name, value in tower.state_dict().items():
        torch.testing.assert_close(model.model.vision_tower.state_dict()[name], value, rtol=0, atol=0)
    language = AutoModelForCausalLM.from_pretrained(components / family)
    rows = language.get_input_embeddings().weight.shape[0]
    torch.testing.assert_close(model.get_input_embeddings().weight[:rows], language.get_input_embeddings().weight)
    torch.testing.assert_close(model.lm_head.weight[:rows], language.get_output_embeddings().weight)
    assert model.get_input_embeddings().weight.shape[0] >= len(processor.tokenizer)
    assert model.config.image_block_ids() == processor.image_block
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    inputs = AutoProcessor.from_pretrained(tmp_path)(images=[demo_image()], text=[PROMPT], return_tensors="pt")
    out = reloaded.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or out[0, -1] == processor.tokenizer.eos_token_id

    # The saved generation defaults: eos from the tokenizer and a new-token budget, so a bare generate() neither
    # falls back to the model-agnostic max_length (shorter than the image block) nor warns about it.
    saved_defaults = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved_defaults["max_new_tokens"] == FREE_PROMPT_MAX_NEW_TOKENS
    assert saved_defaults["eos_token_id"] == processor.tokenizer.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bare = reloaded.generate(**inputs)
    assert inputs["input_ids"].shape[1] < bare.shape[1] <= inputs["input_ids"].shape[1] + FREE_PROMPT_MAX_NEW_TOKENS


def test_the_vl_mamba_preset_builds_a_vss_l2_model_from_components(components):
    model, processor = build_from_preset("vl-mamba-2.8b", vision_model=str(components / "siglip"),
                                         language_model=str(components / "mamba"),
                                         tokenizer=str(components / "tokenizer"))
    assert model.config.connector_type == "vss_l2" and model.config.vss_scan == "bidirectional"
    assert type(model.model.connector).__name__ == "VLMambaVSSL2Connector"
    assert model.config.vision_config.model_type == "siglip_vision_model"
    assert model.config.patches_per_side == 2 and processor.patches_per_side == 2


def test_builder_adds_markers_named_by_the_user(components):
    model, processor = build_from_components("mamba", str(components / "timm"), str(components / "mamba"),
                                             str(components / "tokenizer"), image_begin_token="<image_begin>",
                                             image_end_token="<image_end>")
    tokenizer = processor.tokenizer
    assert {"<image_begin>", "<image_end>"} <= set(tokenizer.all_special_tokens)
    assert processor.row_separator_token_id == make_tokenizer().get_vocab()["&&"]
    assert max(processor.image_block) < model.get_input_embeddings().weight.shape[0]
    assert model.config.image_block_ids() == processor.image_block


def test_builder_errors(components):
    with pytest.raises(ValueError, match="family 'pythia' needs 'gpt_neox'"):
        build_from_components("pythia", str(components / "timm"), str(components / "mamba"))
    with pytest.raises(ValueError, match="Unknown family 'rwkv'"):
        build_from_components("rwkv", str(components / "timm"), str(components / "mamba"))
    with pytest.raises(ValueError, match="Unknown preset 'mamba-vl-7b'"):
        build_from_preset("mamba-vl-7b")


@pytest.mark.slow
def test_cli_demo_runs_offline_with_a_relative_output_folder(tmp_path, monkeypatch):
    from vlmamba.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--output-dir", "outputs/demo", "--max-new-tokens", "4"]) == 0
    assert (tmp_path / "outputs" / "demo" / "mamba-vl-tiny" / "modeling_vlmamba.py").exists()


def test_images_in_any_array_layout_reach_the_model(saved):
    family, directory, model, processor, _ = saved
    rgb = np.asarray(demo_image())
    variants = [rgb, torch.from_numpy(rgb).permute(2, 0, 1), Image.fromarray(rgb).convert("RGBA")]
    outputs = [processor(images=[v], text=[PROMPT], return_tensors="pt")["pixel_values"] for v in variants]
    for other in outputs[1:]:
        torch.testing.assert_close(outputs[0], other, atol=1e-5, rtol=0)


def test_models_package_imports_alone_without_the_rest_of_vlmamba(tmp_path):
    # A copy of the folder under another name, in a process where `import vlmamba` fails: what remote code gets.
    package = tmp_path / "shipped"
    package.mkdir()
    for path in MODELS_DIR.glob("*.py"):
        (package / path.name).write_text(path.read_text())
    script = (
        'import sys; sys.modules["vlmamba"] = None\n'
        "import importlib, pathlib\n"
        "for path in sorted(pathlib.Path('shipped').glob('*.py')):\n"
        "    importlib.import_module('shipped.' + path.stem if path.stem != '__init__' else 'shipped')\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "imported"


@pytest.mark.parametrize("auto_class", [AutoModelForImageTextToText, AutoModel])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_a_loaded_model_keeps_its_vision_tower_frozen(saved, auto_class, dtype):
    family, directory, _, _, _ = saved
    loaded = auto_class.from_pretrained(directory, dtype=dtype)
    tower = loaded.get_vision_tower()
    assert not any(parameter.requires_grad for parameter in tower.parameters())
    connector = (loaded.model if auto_class is AutoModelForImageTextToText else loaded).connector
    assert all(parameter.requires_grad for parameter in connector.parameters())


def test_a_loaded_model_with_a_trainable_tower_keeps_it_trainable(tmp_path):
    save_tiny("mamba", tmp_path, freeze_vision_tower=False)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert all(parameter.requires_grad for parameter in loaded.get_vision_tower().parameters())


def test_an_adapter_folder_loads_through_the_documented_peft_paths(saved, tmp_path):
    from peft import AutoPeftModel, LoraConfig, PeftModel, get_peft_model

    family, directory, model, processor, image_path = saved
    targets = "|".join(LORA_TARGETS[model.config.text_config.model_type])
    base = AutoModelForImageTextToText.from_pretrained(directory)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=rf".*language_model\..*\.({targets})$",
                                              init_lora_weights=False)).eval()
    adapted.save_pretrained(tmp_path)
    inputs = processor(images=[Image.open(image_path)], text=[PROMPT], return_tensors="pt")
    with torch.no_grad():
        expected = adapted(**inputs).logits
        assert not torch.equal(expected, model(**inputs).logits)  # the adapter changes the model
        for loaded in (
            PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(directory), tmp_path),
            AutoPeftModel.from_pretrained(tmp_path, import_allowlist=["vlmamba"]),
        ):
            torch.testing.assert_close(loaded.eval()(**inputs).logits, expected, rtol=0, atol=0)
