"""Building at another image size than the tower was trained at (the paper's 480 px experiment)."""

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    MambaConfig,
    MambaForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
    TimmWrapperConfig,
    TimmWrapperModel,
)

from tests.tiny import make_tokenizer
from vlmamba import build_from_components, resize_vision_tower
from vlmamba.experiments.demo import demo_image
from vlmamba.toy import text_config, vision_configs


PATCH = 14


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A timm (EVA-02 architecture), CLIP and SigLIP tower at 28 px, a Mamba LM and its tokenizer, saved locally."""
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    configs = vision_configs(28, PATCH)
    for name, (config_class, model_class) in {
        "timm": (TimmWrapperConfig, TimmWrapperModel),
        "clip": (CLIPVisionConfig, CLIPVisionModel),
        "siglip": (SiglipVisionConfig, SiglipVisionModel),
    }.items():
        config = dict(configs[name])
        config.pop("model_type")
        model = model_class(config_class(**config))
        with torch.no_grad():  # position tables that are not all alike, so that resampling shows
            for parameter in model.parameters():
                parameter.normal_(0, 0.5)
        model.save_pretrained(root / name)
    tokenizer = make_tokenizer()
    config = dict(text_config("mamba", len(tokenizer)))
    config.pop("model_type")
    MambaForCausalLM(MambaConfig(**config)).save_pretrained(root / "mamba")
    tokenizer.save_pretrained(root / "mamba")
    return root


def _bicubic(table: torch.Tensor, prefix: int, old: int, new: int) -> torch.Tensor:
    """The resampling written out: prefix rows kept, the patch rows as an image, bicubic with antialiasing."""
    rows = table.reshape(-1, table.shape[-1]).float()
    grid = rows[prefix:].reshape(old, old, -1).permute(2, 0, 1)[None]
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([rows[:prefix], grid[0].permute(1, 2, 0).reshape(new * new, -1)])


@pytest.mark.parametrize("vision, key, prefix", [
    ("timm", "timm_model.pos_embed", 1),
    ("clip", "embeddings.position_embedding.weight", 1),
    ("siglip", "embeddings.position_embedding.weight", 0),
])
def test_build_at_another_size_resamples_the_position_embedding(parts, vision, key, prefix, tmp_path):
    model, processor = build_from_components("mamba", str(parts / vision), str(parts / "mamba"), image_size=56)
    original = {"timm": TimmWrapperModel, "clip": CLIPVisionModel, "siglip": SiglipVisionModel}[vision]
    tower = original.from_pretrained(parts / vision)
    resized = model.model.vision_tower.state_dict()
    torch.testing.assert_close(resized[key].reshape(-1, resized[key].shape[-1]),
                               _bicubic(tower.state_dict()[key], prefix, 2, 4))
    # Every other weight is the pretrained one.
    for name, value in tower.state_dict().items():
        if name != key:
            torch.testing.assert_close(resized[name], value, rtol=0, atol=0)

    # The config, the image processor and the image block follow the new size: a 4x4 grid.
    assert (model.config.image_size, model.config.num_image_tokens) == (56, 16)
    assert processor.image_processor.size == {"height": 56, "width": 56}
    assert model.config.image_block_ids() == processor.image_block
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    inputs = reloaded(images=[demo_image()], text=["<image>a red circle"], return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (56, 56)
    assert model.model.get_image_features(inputs["pixel_values"]).shape[1] == 16
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_resizing_to_the_same_size_or_below_one_patch(parts):
    tower = TimmWrapperModel.from_pretrained(parts / "timm")
    same = resize_vision_tower(tower, 28)
    for name, value in tower.state_dict().items():
        torch.testing.assert_close(same.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least one patch"):
        resize_vision_tower(tower, 10)
