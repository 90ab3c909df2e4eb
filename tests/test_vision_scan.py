"""VL-Mamba's Vision Selective Scan and its connectors: scan orders written out by hand, raster order restored, the
merge and both connectors against explicit computations, and the connectors through the model's user paths."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText
from transformers.models.mamba.modeling_mamba import MambaMixer

from tests.test_hub import _run_without_vlmamba
from tests.tiny import make_model, make_processor
from vlmamba import MambaVLConfig
from vlmamba.models.mamba_kernels import scan_implementation
from vlmamba.models.vision_scan import (
    VisionSelectiveScan,
    VLMambaVSSL2Connector,
    VLMambaVSSMLPConnector,
    cross_merge,
    cross_scan,
    scan_orders,
)
from vlmamba.toy import text_config, vision_configs


# A 3 x 4 grid, raster index r * 4 + c:
#    0  1  2  3
#    4  5  6  7
#    8  9 10 11
RASTER = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
COLUMNS = [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]  # top to bottom, then left to right


def test_scan_orders_of_a_3_by_4_grid_written_out():
    assert scan_orders(3, 4, "bidirectional").tolist() == [RASTER, RASTER[::-1]]
    assert scan_orders(3, 4, "cross").tolist() == [RASTER, COLUMNS, RASTER[::-1], COLUMNS[::-1]]
    with pytest.raises(ValueError, match="Unknown scan 'diagonal'"):
        scan_orders(3, 4, "diagonal")


def test_cross_scan_reads_each_order_and_cross_merge_restores_raster_order_exactly():
    grid = torch.arange(2 * 12 * 3, dtype=torch.float64).view(2, 12, 3)  # (batch, patches, channels)
    orders = scan_orders(3, 4, "cross")
    sequences = cross_scan(grid, orders)
    assert sequences.shape == (4, 2, 12, 3)
    for direction, order in enumerate([RASTER, COLUMNS, RASTER[::-1], COLUMNS[::-1]]):
        for position, patch in enumerate(order):
            assert torch.equal(sequences[direction, :, position], grid[:, patch])
    assert torch.equal(cross_merge(sequences, orders, "mean"), grid)
    assert torch.equal(cross_merge(sequences, orders, "sum"), 4 * grid)


def test_the_merge_against_a_hand_computation():
    # Direction k writes value 10 ** k at sequence position p -> patch orders[k][p] collects 10 ** k * (p + 1).
    orders = scan_orders(3, 4, "cross")
    sequences = torch.stack([10.0**k * torch.arange(1, 13, dtype=torch.float64) for k in range(4)]).view(4, 1, 12, 1)
    merged = cross_merge(sequences, orders, "sum").flatten().tolist()
    expected = [0.0] * 12
    for k, order in enumerate([RASTER, COLUMNS, RASTER[::-1], COLUMNS[::-1]]):
        for position, patch in enumerate(order):
            expected[patch] += 10.0**k * (position + 1)
    assert merged == expected
    assert merged[0] == 1 + 10 + 1200 + 12000  # patch 0 is first in two orders and last in the others
    with pytest.raises(ValueError, match="Unknown merge 'max'"):
        cross_merge(sequences, orders, "max")


def config(**kwargs):
    return MambaVLConfig(
        vision_config=vision_configs(28, 14, 16, 1)["clip"],
        text_config=text_config("mamba", 64, 24, 1),
        image_token_id=60,
        image_begin_token_id=61,
        image_end_token_id=61,
        row_separator_token_id=62,
        **kwargs,
    )


def _explicit_scan(module, features, side):
    """VisionSelectiveScan written out: each direction reordered by a Python loop, through its own mixer, put back
    patch by patch, then merged."""
    orders = scan_orders(side, side, module.scan).tolist()
    if module.conv is not None:
        grid = features.transpose(1, 2).reshape(features.shape[0], -1, side, side)
        features = torch.nn.functional.silu(module.conv(grid)).flatten(2).transpose(1, 2)
    restored = []
    for direction, order in enumerate(orders):
        mixer = module.mixers[0] if len(module.mixers) == 1 else module.mixers[direction]
        output = mixer(torch.stack([features[:, patch] for patch in order], dim=1))
        back = torch.empty_like(output)
        for position, patch in enumerate(order):
            back[:, patch] = output[:, position]
        restored.append(back)
    total = sum(restored)
    return total if module.merge == "sum" else total / len(orders)


@pytest.mark.parametrize(
    "settings",
    [
        {"vss_scan": "bidirectional"},
        {"vss_scan": "cross"},
        {"vss_scan": "cross", "vss_share_directions": True, "vss_merge": "mean"},
        {"vss_scan": "bidirectional", "vss_depthwise_conv": True},
    ],
)
def test_vision_selective_scan_equals_its_explicit_computation(settings):
    torch.manual_seed(0)
    module = VisionSelectiveScan(16, config(**settings)).double()
    assert len(module.mixers) == (1 if settings.get("vss_share_directions") else {"bidirectional": 2, "cross": 4}[
        settings["vss_scan"]])
    assert all(isinstance(mixer, MambaMixer) for mixer in module.mixers)
    features = torch.randn(3, 9, 16, dtype=torch.float64)
    expected = _explicit_scan(module, features, 3)
    torch.testing.assert_close(module(features, 3), expected, rtol=1e-9, atol=1e-9)
    # The fast scan (vlmamba's on CPU) gives what transformers' own PyTorch mixer gives.
    with scan_implementation("reference"):
        torch.testing.assert_close(module(features, 3), expected, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="3x3 patch grid; got 8 patches"):
        module(features[:, :8], 3)


def test_directions_see_different_context():
    # Per-direction mixers with the same weights would make the reversed raster the same function of the grid as the
    # raster; a reversed order sees the last patch first, so the two outputs differ.
    torch.manual_seed(0)
    module = VisionSelectiveScan(16, config(vss_scan="bidirectional", vss_share_directions=True)).double()
    features = torch.randn(1, 9, 16, dtype=torch.float64)
    sequences = cross_scan(features, module.orders(3, 3))
    forward, backward = (module.mixers[0](sequence) for sequence in sequences)
    assert not torch.allclose(forward, backward.flip(1))


def test_the_connectors_are_the_papers_equations():
    torch.manual_seed(0)
    features = torch.randn(2, 4, 16, dtype=torch.float64)
    cfg = config(connector_type="vss_mlp")
    vss_mlp = VLMambaVSSMLPConnector(16, cfg).double()
    hidden = vss_mlp.norm(vss_mlp.vss(features, 2) + features)
    expected = vss_mlp.linear_2(torch.nn.functional.gelu(vss_mlp.linear_1(hidden)))
    torch.testing.assert_close(vss_mlp(features, 2), expected)
    assert vss_mlp.linear_2.out_features == 24 and vss_mlp.vss.mixers[0].hidden_size == 16  # scan at vision width

    vss_l2 = VLMambaVSSL2Connector(16, config(connector_type="vss_l2")).double()
    projected = vss_l2.linear_1(features)
    expected = vss_l2.linear_2(vss_l2.norm(vss_l2.vss(torch.nn.functional.gelu(projected), 2) + projected))
    torch.testing.assert_close(vss_l2(features, 2), expected)
    assert vss_l2.vss.mixers[0].hidden_size == 24  # scan at the language model's width
    # The skip connection takes V' before the activation: with the activated V' the output differs.
    activated = torch.nn.functional.gelu(projected)
    wrong = vss_l2.linear_2(vss_l2.norm(vss_l2.vss(activated, 2) + activated))
    assert not torch.allclose(vss_l2(features, 2), wrong)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"connector_type": "vss"}, "Unknown connector_type 'vss'"),
        ({"vss_scan": "zigzag"}, "Unknown vss_scan 'zigzag'"),
        ({"vss_merge": "max"}, "Unknown vss_merge 'max'"),
        ({"vss_state_size": 0}, "vss_state_size must be a positive integer"),
        ({"vss_expand": -1}, "vss_expand must be a positive integer"),
        ({"vss_norm_eps": 0.0}, "vss_norm_eps must be positive"),
    ],
)
def test_bad_vss_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (20 + 7 * i, 30, 3), dtype=np.uint8)) for i in range(n)]


VSS_MODELS = [("mamba", "vss_l2", "bidirectional"), ("pythia", "vss_mlp", "cross")]


@pytest.mark.parametrize("family, connector, scan", VSS_MODELS)
def test_gradients_reach_every_connector_parameter(family, connector, scan):
    processor = make_processor()
    model = make_model(family, processor, connector_type=connector, vss_scan=scan, vss_depthwise_conv=True).train()
    inputs = processor(images=_images(2), text=["<image>a red circle", "<image>two squares"], return_tensors="pt",
                       padding=True)
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    missing = [name for name, parameter in model.model.connector.named_parameters()
               if parameter.grad is None or not parameter.grad.abs().sum() > 0]
    assert not missing, missing
    assert {name.split(".")[1] for name, _ in model.model.connector.named_parameters() if name.startswith("vss.")} \
        >= {"mixers", "conv"}


@pytest.mark.parametrize("family, connector, scan", VSS_MODELS)
def test_save_load_batched_generation_and_remote_code(family, connector, scan, tmp_path):
    processor = make_processor()
    model = make_model(family, processor, connector_type=connector, vss_scan=scan)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "vision_scan.py").is_file(), "the connector's module ships with the weights"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert loaded.config.connector_type == connector and loaded.config.vss_scan == scan
    prompts = ["<image>what colour is the circle?", "<image>a", "<image>provide a one sentence caption please"]
    imgs = _images(3)
    inputs = processor(images=imgs, text=prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model.eval()(**inputs).logits, rtol=0, atol=0)
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    together = loaded.generate(**inputs, **kwargs)
    for row, (prompt, image) in enumerate(zip(prompts, imgs)):
        alone = loaded.generate(**processor(images=[image], text=[prompt], return_tensors="pt"), **kwargs)
        assert together[row, -6:].tolist() == alone[0, -6:].tolist(), f"sample {row} differs"

    single = processor(images=imgs[:1], text=prompts[:1], return_tensors="pt")
    with torch.no_grad():
        expected = loaded(**single).logits[0, -1]
    found = _run_without_vlmamba(f"""
import json, torch
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
inputs = {{key: torch.tensor(value) for key, value in {json.dumps({k: v.tolist() for k, v in single.items()})}.items()}}
with torch.no_grad():
    logits = model(**inputs).logits[0, -1]
print(json.dumps({{"module": type(model.model.connector).__module__, "logits": logits.tolist()}}))
""")
    assert "vlmamba" not in found["module"] and found["module"].endswith("vision_scan")
    assert found["logits"] == pytest.approx(expected.tolist(), abs=1e-5)


def test_lora_on_the_language_model_trains_the_whole_vss_connector():
    from vlmamba.training import ModelArguments, select_trainable

    processor = make_processor()
    model = make_model("mamba", processor, connector_type="vss_l2", vss_scan="cross")
    total = len(list(model.model.connector.parameters()))
    adapted = select_trainable(model, ModelArguments(stage=2, use_lora=True))
    trainable = {name for name, parameter in adapted.named_parameters() if parameter.requires_grad}
    connector = [name for name in trainable if ".connector." in name]
    assert connector and all("modules_to_save" in name for name in connector)
    assert len(connector) == total, "every connector parameter, the scan's Mamba layers included, trains in full"
    assert not any("lora_" in name and ".connector." in name for name in trainable)
    assert any("lora_" in name and "language_model" in name for name in trainable)
