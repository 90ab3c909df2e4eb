"""Opt-in checks against the real Hub checkpoints of the presets (skipped offline, which is the default)."""

import os

import pytest

from vlmamba import PRESETS, build_from_preset


pytestmark = [
    pytest.mark.online,
    pytest.mark.skipif(os.environ.get("VLMAMBA_ONLINE_TESTS") != "1", reason="set VLMAMBA_ONLINE_TESTS=1 to download"),
]


@pytest.mark.parametrize("name", ["mamba-vl-790m", "pythia-vl-1b"])
def test_preset_builds_and_generates(name):
    from transformers.image_utils import load_image

    model, processor = build_from_preset(name)
    assert model.config.num_image_tokens == 576 and len(processor.image_block) == 601
    assert PRESETS[name]["language_model"]
    image = load_image("https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg")
    inputs = processor(images=[image], text=["<image>Provide a one-sentence caption for the provided image."],
                       return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= inputs["input_ids"].shape[1] + 5


def test_vl_mamba_preset_builds_with_siglip_and_the_vss_l2_connector():
    model, processor = build_from_preset("vl-mamba-2.8b")
    assert model.config.connector_type == "vss_l2" and model.config.vss_scan == "bidirectional"
    assert model.config.num_image_tokens == 729 and len(processor.image_block) == 1 + 729 + 26 + 1
    assert model.config.vision_config.model_type == "siglip_vision_model"


def test_published_checkpoint_converts_and_captions(tmp_path):
    """The smallest published Mamba-VL: converted from the Hub (2.4 GB), with GPT-NeoX-20B's tokenizer."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.image_utils import load_image

    from vlmamba.convert import convert_checkpoint

    convert_checkpoint("gpantaz/finetuned_mambavl_790m", tmp_path, tokenizer="EleutherAI/gpt-neox-20b")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert model.config.norm_type == "layernorm" and len(processor.image_block) == 601
    image = load_image("https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg")
    inputs = processor(images=[image], text=["<image>Provide a one-sentence caption for the provided image."],
                       return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=20, do_sample=False)[:, inputs["input_ids"].shape[1]:]
    caption = processor.batch_decode(generated, skip_special_tokens=True)[0]
    assert "cat" in caption.lower()
