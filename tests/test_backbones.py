"""The Mamba-VL family's other backbones (Mamba-2, FalconMamba, the hybrid FalconH1): the VL model is the backbone's
own language model on text, FalconMamba takes vlmamba's scan, and the config names what it accepts. Generation,
caches, batching, saving, remote code and LoRA are checked for every family by the tests parametrized over
`FAMILIES` (test_modeling, test_cache_continuation, test_hub, test_training)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.tiny import FAMILIES, make_model, make_processor
from vlmamba import MambaVLConfig
from vlmamba.models.configuration_vlmamba import SSM_TEXT_MODEL_TYPES
from vlmamba.models.mamba_kernels import scan_implementation
from vlmamba.toy import text_config, vision_configs


@pytest.fixture(scope="module")
def processor():
    return make_processor()


@pytest.mark.parametrize("family", [name for name in FAMILIES if name != "pythia"])
def test_on_text_the_model_is_the_backbones_own_causal_lm(processor, family):
    # The backbone's causal-LM class with the VL model's weights: FalconH1's embedding and logit multipliers, which its
    # own classes apply, must be applied by the VL model too.
    model = make_model(family, processor).eval()
    language = AutoModelForCausalLM.from_config(model.config.text_config).eval()
    language.base_model.load_state_dict(model.model.language_model.state_dict())
    language.get_output_embeddings().load_state_dict(model.lm_head.state_dict())
    ids = torch.tensor([processor.tokenizer("a red circle left of two blue squares")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, language(ids).logits, rtol=1e-5, atol=1e-5)
        prefilled = model.prefill(ids, chunk_size=3).logits[:, -1]
        torch.testing.assert_close(prefilled, language(ids).logits[:, -1], rtol=1e-5, atol=1e-5)
    if family == "falcon_h1":  # the toy config's multipliers are not 1, so a missing one shows
        assert (model.config.text_config.embedding_multiplier, model.config.text_config.lm_head_multiplier) != (1, 1)


def test_falcon_mamba_trains_on_vlmambas_scan_with_its_norms(processor):
    # Training without a cache goes through the fused entry point; FalconMamba's B/C/dt norms keep it off vlmamba's
    # fused mixer (which does not apply them), on its own code with vlmamba's scan: as transformers' reference path.
    model = make_model("falcon_mamba", processor).train()
    ids = torch.tensor([processor.tokenizer("a red circle left of two blue squares")["input_ids"]])
    found = model(input_ids=ids, labels=ids)
    found.loss.backward()
    gradient = model.model.language_model.layers[0].mixer.in_proj.weight.grad.clone()
    model.zero_grad()
    with scan_implementation("reference"):
        expected = model(input_ids=ids, labels=ids)
        expected.loss.backward()
    torch.testing.assert_close(found.logits, expected.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gradient, model.model.language_model.layers[0].mixer.in_proj.weight.grad,
                               rtol=1e-4, atol=1e-6)


def test_the_config_names_the_backbones_it_takes():
    assert SSM_TEXT_MODEL_TYPES == ("mamba", "mamba2", "falcon_mamba", "falcon_h1")
    ids = {"image_token_id": 60, "image_begin_token_id": 61, "image_end_token_id": 61, "row_separator_token_id": 62}
    for backbone in SSM_TEXT_MODEL_TYPES:
        config = MambaVLConfig(vision_config=vision_configs()["clip"], text_config=text_config(backbone, 64), **ids)
        assert config.text_config.model_type == backbone
    with pytest.raises(ValueError, match="'mamba' or 'mamba2' or 'falcon_mamba' or 'falcon_h1', got 'gpt_neox'"):
        MambaVLConfig(vision_config=vision_configs()["clip"], text_config=text_config("pythia", 64), **ids)


@pytest.mark.parametrize("preset, family", [("falcon-mamba-vl-7b", "falcon_mamba"), ("mamba2-vl-7b", "mamba2"),
                                            ("falcon-h1-vl-0.5b", "falcon_h1")])
def test_backbone_presets_build_from_local_stand_ins(preset, family, tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, TimmWrapperConfig, TimmWrapperModel

    from tests.tiny import make_tokenizer
    from vlmamba import PRESETS, build_from_preset
    from vlmamba.experiments.demo import demo_image

    assert PRESETS[preset]["family"] == family
    # Local folders in place of the preset's Hub ids: a tiny language model of the backbone, its tokenizer, a tower.
    tokenizer = make_tokenizer()
    config = dict(text_config(family, len(tokenizer)))
    AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config)).save_pretrained(
        tmp_path / "language")
    tokenizer.save_pretrained(tmp_path / "language")
    timm_config = dict(vision_configs()["timm"])
    timm_config.pop("model_type")
    TimmWrapperModel(TimmWrapperConfig(**timm_config)).save_pretrained(tmp_path / "tower")
    model, processor = build_from_preset(preset, language_model=str(tmp_path / "language"),
                                         vision_model=str(tmp_path / "tower"), tokenizer=None)
    assert model.config.text_config.model_type == family
    # The preset's own markers, added as special tokens, frame the image block.
    assert processor.tokenizer.convert_ids_to_tokens(processor.image_block[:1]) == ["<image_start>"]
    assert model.config.image_block_ids() == processor.image_block
    model.save_pretrained(tmp_path / "vl")
    processor.save_pretrained(tmp_path / "vl")
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "vl").eval()
    inputs = AutoProcessor.from_pretrained(tmp_path / "vl")(images=[demo_image()], text=["<image>a red circle"],
                                                             return_tensors="pt")
    assert reloaded.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] <= inputs["input_ids"].shape[1] + 3
    if family != "mamba2":  # a backbone family takes only its own backbone
        with pytest.raises(ValueError, match=f"is a '{family}' model; family 'mamba2' needs one"):
            build_from_preset("mamba2-vl-7b", language_model=str(tmp_path / "language"),
                              vision_model=str(tmp_path / "tower"), tokenizer=None)
