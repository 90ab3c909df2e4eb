"""Several tokens fed on top of a Mamba cache continue its recurrent state exactly (transformers' mixer restarts the
scan from zeros there): against one full forward, on every scan path, with left padding, and for an image prefix
encoded once and continued with several questions."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import MambaConfig, MambaForCausalLM

import vlmamba.models.mamba_kernels as mamba_kernels
from tests.tiny import FAMILIES, make_model, make_processor
from vlmamba.models.mamba_kernels import scan_implementation
from vlmamba.models.modeling_vlmamba import RECURRENT_TEXT_MODEL_TYPES
from vlmamba.models.selective_scan import selective_scan_sequential


def slow_decay_mamba(seed=0):
    """A small Mamba whose states decay slowly, so that a lost state shows in the logits."""
    torch.manual_seed(seed)
    model = MambaForCausalLM(MambaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8)).eval()
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.A_log -= 3
    return model


@pytest.mark.parametrize("implementation", ["auto", "reference"])
@pytest.mark.parametrize("chunks", [[1, 39], [7, 33], [29, 11], [39, 1], [10, 10, 20], [5, 5, 5, 25]])
def test_chunks_fed_on_a_cache_give_the_logits_of_one_forward(implementation, chunks):
    model = slow_decay_mamba()
    ids = torch.randint(0, 100, (2, 40), generator=torch.Generator().manual_seed(1))
    with scan_implementation(implementation), torch.no_grad():
        full = model(ids).logits
        cache, start, pieces = None, 0, []
        for length in chunks:
            out = model(ids[:, start : start + length], cache=cache, use_cache=True)
            cache, start = out.cache, start + length
            pieces.append(out.logits)
        torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
        # Without the carried state (transformers' behaviour) the second chunk is visibly wrong: the test can fail.
        first = model(ids[:, : chunks[0]], use_cache=True).cache
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(mamba_kernels, "_cached_state", lambda: None)
            lost = model(ids[:, chunks[0] :], cache=first, use_cache=True).logits
    if chunks[1] > 1:
        assert (lost - full[:, chunks[0] :]).abs().max() > 1e-3


def test_left_padding_in_the_first_chunk():
    model = slow_decay_mamba(1)
    ids = torch.randint(1, 100, (2, 40), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    ids[0, :6], mask[0, :6] = 0, 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        prefix = model(ids[:, :25], attention_mask=mask[:, :25], use_cache=True)
        rest = model(ids[:, 25:], attention_mask=mask[:, 25:], cache=prefix.cache, use_cache=True).logits
    torch.testing.assert_close(rest, full[:, 25:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [256, 3])
def test_the_initial_state_correction_is_the_scan_from_that_state(monkeypatch, block):
    # The correction that lets zero-state scans (mamba-ssm's kernel, transformers' path) continue from a state,
    # against the sequential scan started from that state; a small block crosses block boundaries.
    monkeypatch.setattr(mamba_kernels, "_CONTINUATION_BLOCK", block)
    generator = torch.Generator().manual_seed(0)
    batch, channels, length, state = 2, 5, 11, 4

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    u, delta, z = rand(batch, channels, length), rand(batch, channels, length), rand(batch, channels, length)
    A, B, C = -rand(channels, state).exp(), rand(batch, state, length), rand(batch, state, length)
    D, bias, h0 = rand(channels), rand(channels), rand(batch, channels, state)
    options = {"D": D, "z": z, "delta_bias": bias, "delta_softplus": True, "return_last_state": True}
    zero_start = selective_scan_sequential(u, delta, A, B, C, **options)
    expected_out, expected_last = selective_scan_sequential(u, delta, A, B, C, initial_state=h0, **options)
    out, last = mamba_kernels._continued(zero_start, h0, (u, delta, A, B, C), options)
    torch.testing.assert_close(out, expected_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, expected_last, rtol=1e-10, atol=1e-10)
    plain = {key: value for key, value in options.items() if key != "return_last_state"}
    torch.testing.assert_close(
        mamba_kernels._continued(selective_scan_sequential(u, delta, A, B, C, **plain), h0, (u, delta, A, B, C), plain),
        expected_out, rtol=1e-10, atol=1e-10,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_an_image_encoded_once_answers_several_questions(family):
    processor = make_processor()
    model = make_model(family, processor).eval()
    if family == "mamba":
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                layer.mixer.A_log -= 3
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    with torch.no_grad():
        prefix = processor(images=[image], text=["<image>"], return_tensors="pt")
        cache = model(**prefix, use_cache=True).cache
        start = prefix["input_ids"].shape[1]
        for question in ("what colour is the circle?", "how many squares are there in the picture?"):
            full = processor(images=[image], text=["<image>" + question], return_tensors="pt")
            expected = model(**full).logits[:, start:]
            new = full["input_ids"][:, start:]
            mask = None if family in RECURRENT_TEXT_MODEL_TYPES else full["attention_mask"]
            found = model(input_ids=new, attention_mask=mask,
                          cache=copy.deepcopy(cache), use_cache=True).logits
            torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_prefill_of_many_images_gives_the_logits_and_cache_of_one_forward(family):
    processor = make_processor()
    model = make_model(family, processor).eval()
    if family == "mamba":
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                layer.mixer.A_log -= 3
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)) for _ in range(5)]
    texts = ["<image>first<image>then a second image<image>end", "short <image>x<image>"]  # blocks of 7 tokens
    inputs = processor(images=[images[:3], images[3:]], text=texts, return_tensors="pt", padding=True,
                       padding_side="left")
    following = torch.tensor([[5, 9], [6, 2]])
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(following)], dim=1)
    # Pythia-VL's positions count real tokens, as generate() numbers a left-padded prompt.
    positions = {} if family in RECURRENT_TEXT_MODEL_TYPES else {
        "position_ids": (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)}
    with torch.no_grad():
        full = model(**inputs, use_cache=True, **positions)
        after = {} if family in RECURRENT_TEXT_MODEL_TYPES else {"attention_mask": mask,
                                               "position_ids": positions["position_ids"][:, -1:] + torch.tensor([1, 2])}
        expected = model(input_ids=following, cache=full.cache, **after).logits
        encoded = []
        original = model.model.get_image_features
        model.model.get_image_features = lambda pixels: encoded.append(len(pixels)) or original(pixels)
        for chunk_size in (None, 1, 3, 8, 100):
            encoded.clear()
            out = model.prefill(inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"],
                                chunk_size=chunk_size)
            torch.testing.assert_close(out.logits[:, -1], full.logits[:, -1], rtol=1e-5, atol=1e-5)
            found = model(input_ids=following, cache=out.cache, **after).logits
            torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)
            assert encoded == [1] * 5, "each image encoded once, one at a time"
        model.model.get_image_features = original
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        model.prefill(inputs["input_ids"], inputs["pixel_values"], chunk_size=0)
    with pytest.raises(ValueError, match="4 image\\(s\\)"):
        model.prefill(inputs["input_ids"], inputs["pixel_values"][:4])


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_continues_a_cached_prompt_as_if_fed_whole(family):
    # transformers' convention: the cached prompt followed by the new tokens, with a copy of the prompt's cache.
    processor = make_processor()
    torch.manual_seed(3)
    model = make_model(family, processor).eval()
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)) for _ in range(3)]
    texts = ["<image>what colour is the circle?", "<image>how many squares?"]
    full = processor(images=images[:2], text=texts, return_tensors="pt", padding=True, padding_side="left")
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True)
    cut = full["input_ids"].shape[1] - 4  # the image blocks and the start of the questions
    with torch.no_grad():
        expected = model.generate(**full, **kwargs)
        prompt = model.prefill(full["input_ids"][:, :cut], full["pixel_values"], full["attention_mask"][:, :cut]).cache
        prefilled = model.prefill(full["input_ids"][:, :cut], full["pixel_values"], full["attention_mask"][:, :cut],
                                  chunk_size=3).cache
        for cache in (copy.deepcopy(prompt), prefilled):
            found = model.generate(**full, cache=cache, **kwargs)
            assert found.sequences.tolist() == expected.sequences.tolist()
            for step_found, step_expected in zip(found.logits, expected.logits):
                torch.testing.assert_close(step_found, step_expected, rtol=1e-5, atol=1e-5)
        # A later turn with an image of its own: only that image is encoded on top of the cache.
        turn = processor(images=[[images[0], images[2]], [images[1], images[2]]],
                         text=[text + " and<image>this one?" for text in texts], return_tensors="pt", padding=True,
                         padding_side="left")
        whole = model.generate(**turn, **kwargs)
        reused = model.generate(**turn, cache=copy.deepcopy(prompt), **kwargs)
        assert reused.sequences.tolist() == whole.sequences.tolist()
    if family in RECURRENT_TEXT_MODEL_TYPES:
        with pytest.raises(ValueError, match="do not continue it"):
            model.generate(input_ids=full["input_ids"][:, cut:], cache=copy.deepcopy(prompt), **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_lookup_decoding_is_exact_or_refused(family):
    processor = make_processor()
    torch.manual_seed(5)
    model = make_model(family, processor).eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    inputs = processor(images=[image], text=["<image>red red red circle red circle red"], return_tensors="pt")
    kwargs = dict(max_new_tokens=12, do_sample=False)
    if model._is_stateful:  # a recurrent cache cannot be rolled back to the accepted tokens
        with pytest.raises(ValueError, match="not supported with stateful models"):
            model.generate(**inputs, prompt_lookup_num_tokens=3, **kwargs)
        return
    greedy = model.generate(**inputs, **kwargs)
    assisted = model.generate(**inputs, prompt_lookup_num_tokens=3, **kwargs)
    assert assisted.tolist() == greedy.tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_second_chat_turn_reuses_the_first_turns_cache(family):
    # Turn 1 from the chat template; turn 2 appends the follow-up question (no second image block) to what turn 1
    # generated and continues turn 1's returned cache: the answer is that of encoding everything again.
    processor = make_processor()
    torch.manual_seed(7)
    model = make_model(family, processor).eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "what is in the image?"}]}]
    first = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        turn = model.generate(**first, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                              return_dict_in_generate=True)
        follow_up = processor.tokenizer("What colour is it?\n", add_special_tokens=False, return_tensors="pt")
        ids = torch.cat([turn.sequences, follow_up["input_ids"]], dim=1)
        second = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": first["pixel_values"]}
        kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, output_logits=True,
                      return_dict_in_generate=True)
        again = model.generate(**second, **kwargs)
        reused = model.generate(**second, cache=copy.deepcopy(turn.cache), **kwargs)
    assert reused.sequences.tolist() == again.sequences.tolist()
    for step_reused, step_again in zip(reused.logits, again.logits):
        torch.testing.assert_close(step_reused, step_again, rtol=1e-5, atol=1e-5)


def test_every_split_point_continues_exactly():
    model = slow_decay_mamba(2)
    ids = torch.randint(0, 100, (2, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids).logits
        for split in range(1, ids.shape[1]):
            cache = model(ids[:, :split], use_cache=True).cache
            rest = model(ids[:, split:], cache=cache, use_cache=True).logits
            torch.testing.assert_close(rest, full[:, split:], rtol=1e-5, atol=1e-5, msg=f"split at {split}")
