import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import DynamicCache

from tests.tiny import make_model, make_processor, make_tokenizer
from vlmamba import MambaVLConfig, PythiaVLConfig
from vlmamba.models.modeling_vlmamba import VLCausalLMOutputWithPast, VLModelOutputWithPast
from vlmamba.toy import text_config, vision_configs


FAMILIES = ["mamba", "pythia"]


@pytest.fixture(scope="module")
def processor():
    return make_processor()


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (20 + 7 * i, 30, 3), dtype=np.uint8)) for i in range(n)]


def batch(processor, prompts, imgs, **kwargs):
    return processor(images=imgs or None, text=prompts, return_tensors="pt", padding=True, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("vision", ["timm", "clip", "siglip"])
def test_forward_backward_trains_connector_and_lm_not_tower(processor, family, vision):
    model = make_model(family, processor, vision).train()
    inputs = batch(processor, ["<image>the red circle", "<image>a blue square on the left"], images(2))
    out = model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    assert out.image_hidden_states.shape == (2, 4, model.config.text_config.hidden_size)
    out.loss.backward()
    assert model.model.connector.linear_1.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.model.vision_tower.parameters())
    assert not model.model.vision_tower.training, "a frozen tower stays in eval mode"


def test_unfrozen_tower_gets_gradients(processor):
    model = make_model("mamba", processor, freeze_vision_tower=False).train()
    inputs = batch(processor, ["<image>the red circle"], images(1))
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    grads = [p.grad for p in model.model.vision_tower.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_matches_manual_cross_entropy_over_unmasked_labels(processor, family):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>the red circle is small", "<image>two blue squares"], images(2))
    labels = inputs["input_ids"].clone()
    labels[:, : labels.shape[1] // 2] = -100
    labels[inputs["attention_mask"] == 0] = -100
    out = model(**inputs, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float()
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(out.loss, expected)
    # Trainer's gradient accumulation passes the number of supervised tokens of the whole accumulated batch.
    out = model(**inputs, labels=labels, num_items_in_batch=torch.tensor(3 * int(keep.sum())))
    torch.testing.assert_close(out.loss, expected / 3)


def test_tied_embeddings_mamba_untied_pythia(processor):
    mamba = make_model("mamba", processor)
    pythia = make_model("pythia", processor)
    assert mamba.lm_head.weight.data_ptr() == mamba.get_input_embeddings().weight.data_ptr()
    assert pythia.lm_head.weight.data_ptr() != pythia.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_generation_equals_full_forward_step_by_step(processor, family):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>what colour is the circle?"], images(1))
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, output_logits=True,
                         return_dict_in_generate=True)
    ids = inputs["input_ids"]
    with torch.no_grad():
        for step in range(8):
            logits = model(input_ids=ids, pixel_values=inputs["pixel_values"], use_cache=False).logits[:, -1]
            # Logits, not just tokens: a tiny random model repeats tokens whatever its state.
            torch.testing.assert_close(out.logits[step], logits, atol=1e-4, rtol=1e-4)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert out.sequences.tolist() == ids.tolist()


@pytest.mark.parametrize("output_class", [VLModelOutputWithPast, VLCausalLMOutputWithPast])
@pytest.mark.parametrize("name", ["cache", "past_key_values", "cache_params"])
def test_output_classes_take_cache_and_its_deprecated_names(output_class, name):
    cache = DynamicCache()
    output = output_class(**{name: cache})
    assert output.cache is cache and output["cache"] is cache and output.to_tuple() == (cache,)
    assert list(output.keys()) == ["cache"]
    assert output.past_key_values is cache and output.cache_params is cache  # transformers' read-only aliases
    with pytest.raises(ValueError, match="cannot specify both"):
        output_class(cache=cache, past_key_values=cache)


def test_older_transformers_is_refused_by_name(monkeypatch):
    import importlib.metadata

    from vlmamba.models import modeling_vlmamba

    modeling_vlmamba.check_transformers_version()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "5.23.0")
    with pytest.raises(ImportError, match=r"transformers>=5\.24 is required .* found transformers==5\.23\.0"):
        modeling_vlmamba.check_transformers_version()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["past_key_values", "cache_params"])
def test_deprecated_cache_argument_names_warn_and_continue_the_cache(processor, family, name):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>what colour is the circle?"], images(1))
    step = {"input_ids": torch.tensor([[5]]), "use_cache": True}
    if family == "pythia":
        step["attention_mask"] = torch.ones(1, inputs["input_ids"].shape[1] + 1, dtype=torch.long)
    with torch.no_grad():
        expected = model(**step, cache=model(**inputs, use_cache=True).cache).logits
        cache = model(**inputs, use_cache=True).cache
        with pytest.warns(FutureWarning, match=f"`{name}` is deprecated"):
            logits = model(**step, **{name: cache}).logits
        full = model(input_ids=torch.cat([inputs["input_ids"], step["input_ids"]], 1),
                     pixel_values=inputs["pixel_values"], use_cache=False).logits[:, -1:]
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_left_padded_generation_equals_one_by_one(processor, family):
    model = make_model(family, processor)
    prompts = [
        "<image>what colour is the circle?",
        "a text only prompt about two small red squares on the left of the picture",
        "<image>how many?",
        "<image>provide a one sentence caption for the provided image with many words in it",
    ]
    imgs = images(3)
    kwargs = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False, output_logits=True,
                  return_dict_in_generate=True)
    together = model.generate(**batch(processor, prompts, imgs, padding_side="left"), **kwargs)
    image_iter = iter(imgs)
    for row, prompt in enumerate(prompts):
        sample_images = [next(image_iter)] if "<image>" in prompt else []
        alone = model.generate(**batch(processor, [prompt], sample_images), **kwargs)
        assert together.sequences[row, -10:].tolist() == alone.sequences[0, -10:].tolist(), f"sample {row} differs"
        for step in range(10):
            torch.testing.assert_close(together.logits[step][row], alone.logits[step][0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_with_cache_equals_without_and_sampling_is_seeded(processor, family):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>where is the square?", "<image>a"], images(2), padding_side="left")
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, num_beams=3, do_sample=False, output_scores=True,
                  return_dict_in_generate=True)
    cached = model.generate(**inputs, **kwargs)
    uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert cached.sequences.tolist() == uncached.sequences.tolist()
    torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-4, rtol=1e-4)
    torch.manual_seed(1)
    first = model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=20)
    torch.manual_seed(1)
    second = model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=20)
    assert first.tolist() == second.tolist() and first.shape[1] == inputs["input_ids"].shape[1] + 6


@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_keeps_each_samples_images_with_several_images_per_sample(processor, family, monkeypatch):
    # Beam search copies every sample num_beams times: a sample's images must follow it as a group ([a, b] ->
    # [a, b, a, b]), not image by image ([a, a, b, b]). The tiny random model barely reacts to images, so the images
    # reaching the vision tower are checked directly, then the tokens against each sample searched alone.
    model = make_model(family, processor)
    prompts = ["<image><image>which one is larger?", "<image>a", "no image here at all"]
    imgs = images(3)
    inputs = batch(processor, prompts, imgs, padding_side="left")
    seen = []
    encode = model.model.get_image_features
    monkeypatch.setattr(model.model, "get_image_features", lambda pixel_values: seen.append(pixel_values) or
                        encode(pixel_values))
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=False,
                  output_scores=True, return_dict_in_generate=True)
    together = model.generate(**inputs, **kwargs)
    a, b, c = inputs["pixel_values"]
    torch.testing.assert_close(seen[0], torch.stack([a, b, a, b, a, b, c, c, c]), rtol=0, atol=0)
    for row, (prompt, sample_images) in enumerate(zip(prompts, (imgs[:2], imgs[2:], []))):
        alone = model.generate(**batch(processor, [prompt], sample_images), **kwargs)
        for beam in range(2):
            assert together.sequences[2 * row + beam, -5:].tolist() == alone.sequences[beam, -5:].tolist(), row
        torch.testing.assert_close(together.sequences_scores[2 * row : 2 * row + 2], alone.sequences_scores,
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_from_inputs_embeds_matches_input_ids(processor, family):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>the small green triangle"], images(1))
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    from_ids = model.generate(**inputs, **kwargs)
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    from_embeds = model.generate(
        inputs_embeds=embeds, attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"], **kwargs
    )
    assert from_embeds.tolist() == from_ids[:, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_vision_tower_runs_once_per_generate(processor, family):
    model = make_model(family, processor)
    calls = []
    model.model.vision_tower.timm_model.patch_embed.register_forward_hook(lambda *args: calls.append(1))
    inputs = batch(processor, ["<image>a", "<image>b"], images(2))
    model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert len(calls) == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_same_loss_and_gradients(processor, family):
    inputs = batch(processor, ["<image>the red circle", "<image>two blue squares"], images(2))
    results = []
    for checkpointing in (False, True):
        model = make_model(family, processor).train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
            assert any(getattr(m, "gradient_checkpointing", False) for m in model.model.language_model.modules())
        loss = model(**inputs, labels=inputs["input_ids"]).loss
        loss.backward()
        results.append((loss.detach(), model.model.connector.linear_1.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("vision", ["timm", "clip"])
def test_vision_feature_layer_selects_an_earlier_block(processor, vision):
    final = make_model("mamba", processor, vision)
    earlier = make_model("mamba", processor, vision, vision_feature_layer=-2)
    earlier.load_state_dict(final.state_dict())
    pixel_values = batch(processor, ["<image>"], images(1))["pixel_values"]
    a, b = final.get_image_features(pixel_values), earlier.get_image_features(pixel_values)
    assert a.shape == b.shape == (1, 4, 32)
    assert not torch.allclose(a, b)


def test_final_features_are_normed_output_without_prefix_tokens(processor):
    model = make_model("mamba", processor)
    pixel_values = batch(processor, ["<image>"], images(1))["pixel_values"]
    timm_model = model.model.vision_tower.timm_model
    with torch.no_grad():
        expected = timm_model.norm(timm_model.forward_intermediates(pixel_values, output_fmt="NLC",
                                                                    return_prefix_tokens=False,
                                                                    intermediates_only=True)[-1])
        got = model.model._vision_features(pixel_values)
    torch.testing.assert_close(got, expected)


def test_mismatched_images_and_placeholders_raise(processor):
    model = make_model("pythia", processor)
    inputs = batch(processor, ["<image>a", "<image>b"], images(2))
    with pytest.raises(ValueError, match=r"8 image placeholder tokens \(per sample: \[4, 4\]\).*1 image"):
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"][:1])
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=inputs["input_ids"], use_cache=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_without_images_for_image_placeholders_raises(processor, family):
    model = make_model(family, processor)
    inputs = batch(processor, ["<image>what colour is the circle?"], images(1))
    with pytest.raises(ValueError, match="no pixel_values"):
        model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=2)
    # After the prefill, a placeholder id among the new tokens is just a token the model wrote.
    with torch.no_grad():
        cache = model(**inputs, use_cache=True).cache
        step = {"attention_mask": torch.ones(1, inputs["input_ids"].shape[1] + 1, dtype=torch.long)}
        logits = model(input_ids=torch.tensor([[model.config.image_token_id]]), cache=cache, use_cache=True,
                       **(step if family == "pythia" else {})).logits
    assert logits.shape[:2] == (1, 1)


def test_wrong_pixel_shape_raises(processor):
    model = make_model("mamba", processor)
    inputs = batch(processor, ["<image>a"], images(1))
    message = r"pixel_values must have shape \(num_images, 3, 28, 28\), got \(1, 3, 56, 56\)"
    with pytest.raises(ValueError, match=message):
        model(input_ids=inputs["input_ids"], pixel_values=torch.zeros(1, 3, 56, 56))
    with pytest.raises(ValueError, match=r"got \(3, 28, 28\)"):
        model(input_ids=inputs["input_ids"], pixel_values=torch.zeros(3, 28, 28))
    # Raw 0-255 pixels (uint8 or int64) are not the processor's normalized floats.
    for dtype in (torch.uint8, torch.int64):
        with pytest.raises(ValueError, match=f"pixel_values must be floating point.*got {dtype}"):
            model(input_ids=inputs["input_ids"], pixel_values=(inputs["pixel_values"] * 100).to(dtype))


@pytest.mark.parametrize(
    "config_class, kwargs, message",
    [
        (MambaVLConfig, {"text_config": text_config("pythia", 64)},
         "needs a text_config of type 'mamba' or 'mamba2' or 'falcon_mamba' or 'falcon_h1', got 'gpt_neox'"),
        (PythiaVLConfig, {"text_config": text_config("mamba", 64)},
         "needs a text_config of type 'gpt_neox', got 'mamba'"),
        (MambaVLConfig, {"text_config": text_config("mamba2", 64), "norm_type": "layernorm"},
         "norm_type='layernorm' is for Mamba-1 language models"),
        (MambaVLConfig, {"norm_type": "batch"}, "Unknown norm_type 'batch'"),
        (MambaVLConfig, {"connector_type": "vss"}, "Unknown connector_type 'vss'"),
        (MambaVLConfig, {"image_size": 30}, r"image_size=30 disagrees with the vision tower's image_size=28"),
        (MambaVLConfig, {"image_size": 10, "patch_size": 14, "vision_config": vision_configs(28, 14, 16, 1)["clip"]},
         r"at least one patch per side"),
        (MambaVLConfig, {"image_size": 42}, "image_size=42 disagrees with the vision tower's image_size=28"),
        (MambaVLConfig, {"image_token_id": 64}, r"image_token_id=64 is outside .* \(size 64\)"),
        (MambaVLConfig, {"row_separator_token_id": 3}, "row_separator_token_id must differ from image_token_id"),
        (MambaVLConfig, {"vision_config": {"model_type": "vit"}}, "supported vision towers are"),
    ],
)
def test_config_errors(config_class, kwargs, message):
    family = "mamba" if config_class is MambaVLConfig else "pythia"
    arguments = {
        "vision_config": vision_configs()["clip"],
        "text_config": text_config(family, 64),
        "image_token_id": 3,
        "image_begin_token_id": 4,
        "image_end_token_id": 5,
        "row_separator_token_id": 6,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        config_class(**arguments)


def test_reference_layout_defaults():
    config = MambaVLConfig()
    block = config.image_block_ids()
    assert (config.image_size, config.patch_size, len(block)) == (336, 14, 601)
    assert block[0] == block[-1] == 4118 and block.count(10494) == 23 and block.count(50277) == 576
    assert config.tie_word_embeddings and not PythiaVLConfig().tie_word_embeddings


@pytest.mark.parametrize("vision", ["clip", "siglip"])
def test_a_side_that_is_not_a_multiple_of_the_patch_reads_the_convolutions_grid(vision):
    # SigLIP-SO400M/14 at 384 px reads 27 x 27 patches (the last 6 pixels unread); here 30 px with 14 px patches: 2 x 2.
    from vlmamba.toy import tiny_processor

    processor = tiny_processor(make_tokenizer(), image_size=30, patch_size=14)
    assert processor.patches_per_side == 2 and processor.image_block.count(processor.image_token_id) == 4
    model = make_model("mamba", processor, vision)
    assert model.config.patches_per_side == 2
    inputs = batch(processor, ["<image>a red circle"], images(1))
    assert inputs["pixel_values"].shape[-2:] == (30, 30)
    out = model(**inputs)
    assert out.image_hidden_states.shape == (1, 4, model.config.text_config.hidden_size)
