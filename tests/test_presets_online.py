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
