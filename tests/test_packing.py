"""Padding-free packed batches: the collator's rows, and a model that computes on them exactly what it computes on
the padded batch (loss, gradients, each example's logits), on every path Mamba's mixer can take."""

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from tests.tiny import make_model, make_processor
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.models.mamba_kernels import packed_sequences, scan_implementation
from vlmamba.models.selective_scan import positions_in_sequences
from vlmamba.training import LORA_TARGETS


def picture(seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


ROWS = [
    {"id": "g", "task": "grounding", "image": picture(0), "expression": "the red circle", "box": [4, 3, 20, 15]},
    {"id": "v", "task": "vqa", "image": picture(1), "question": ["what colour?", "how many?"],
     "answer": ["red", "two"]},
    {"id": "c", "task": "captioning", "caption": "a blue square on the left"},  # text only
    {"id": "k", "task": "captioning", "image": picture(2), "caption": "two green triangles"},
]


@pytest.fixture(scope="module")
def processor():
    return make_processor()


def lengths(processor):
    return [len(VLMambaDataCollator(processor).encode(row)["input_ids"]) for row in ROWS]


def test_rows_restart_positions_and_keep_every_token(processor):
    sizes = lengths(processor)
    pack_to = sizes[0] + sizes[2] + 1  # room for the first and the third example in one row
    batch = VLMambaDataCollator(processor, pack_to=pack_to)(ROWS)
    padded = VLMambaDataCollator(processor)(ROWS)
    assert "attention_mask" not in batch and batch["input_ids"].shape[1] <= pack_to
    # First fit, in order: row 0 holds examples 0 and 2.
    row0 = torch.cat([padded["input_ids"][0, : sizes[0]], padded["input_ids"][2, : sizes[2]]])
    assert torch.equal(batch["input_ids"][0, : len(row0)], row0)
    positions = batch["position_ids"][0].tolist()
    # The tail's padding continues the row's last example.
    assert positions == list(range(sizes[0])) + list(range(len(positions) - sizes[0]))
    # Every supervised label survives but each example's first one; the images keep the placeholders' order.
    assert (batch["labels"] != -100).sum() == (padded["labels"][:, 1:] != -100).sum()
    assert torch.equal(batch["pixel_values"], padded["pixel_values"][[0, 1, 2]])
    total = sum(sizes)
    assert (batch["input_ids"].shape[0] * batch["input_ids"].shape[1]) < padded["input_ids"].numel()
    assert total <= batch["input_ids"].numel()


def test_an_example_longer_than_a_row_is_named(processor):
    with pytest.raises(ValueError, match="Example 'g' has 49 tokens, more than pack_to=10"):
        VLMambaDataCollator(processor, pack_to=10)(ROWS)
    with pytest.raises(ValueError, match="pack_to must be a positive"):
        VLMambaDataCollator(processor, pack_to=0)


def test_positions_in_sequences():
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    assert positions_in_sequences(seq_idx).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def _check_same_training(model, processor, *, train=True):
    padded = VLMambaDataCollator(processor)(ROWS)
    # The padded batch's labels without each example's first one, as packing writes them.
    padded["labels"][:, 0] = -100
    sizes = lengths(processor)
    packed = VLMambaDataCollator(processor, pack_to=sizes[0] + sizes[2] + 3)(ROWS)
    assert packed["input_ids"].shape[0] < len(ROWS)
    model.train(train)
    out_padded, grads_padded = _loss_and_grads(model, padded)
    out_packed, grads_packed = _loss_and_grads(model, packed)
    torch.testing.assert_close(out_packed.loss, out_padded.loss, rtol=1e-5, atol=1e-6)
    assert grads_packed.keys() == grads_padded.keys()
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # Each example's logits, found in its packed row.
    rows = [[0, 2], [1], [3]] if packed["input_ids"].shape[0] == 3 else None
    if rows is not None:
        for row, members in enumerate(rows):
            start = 0
            for index in members:
                torch.testing.assert_close(
                    out_packed.logits[row, start : start + sizes[index]],
                    out_padded.logits[index, : sizes[index]], rtol=1e-4, atol=1e-5,
                )
                start += sizes[index]


@pytest.mark.parametrize("family", ["mamba", "pythia", "falcon_mamba"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("loss_reduction", ["token", "sample"])
def test_packed_batch_trains_exactly_as_the_padded_one(processor, family, train, loss_reduction):
    # train=True: Mamba's fused training mixer; False: the mixer's own code with vlmamba's convolution and scan.
    model = make_model(family, processor, depth=2, loss_reduction=loss_reduction).float()
    if family == "pythia":
        model.config._attn_implementation = "sdpa"
        model.model.language_model.config._attn_implementation = "sdpa"
    _check_same_training(model, processor, train=train)


def test_packed_batch_with_lora_adapters(processor):
    # Adapters keep the mixer off the fused path: packing then runs through its own code, still exact.
    model = make_model("mamba", processor, depth=2)
    config = LoraConfig(r=4, target_modules=LORA_TARGETS["mamba"], lora_dropout=0.0, init_lora_weights=False)
    _check_same_training(get_peft_model(model, config), processor)


def test_packing_is_refused_where_it_cannot_be_honoured(processor):
    batch = VLMambaDataCollator(processor, pack_to=200)(ROWS)
    mamba2 = make_model("mamba2", processor)
    with pytest.raises(ValueError, match="Packed sequences .* supported for the mamba, falcon_mamba, gpt_neox"):
        mamba2(**batch)
    mamba = make_model("mamba", processor)
    with pytest.raises(ValueError, match="cannot be used with a cache"):
        mamba(**batch, use_cache=True)
    with scan_implementation("reference"), pytest.raises(ValueError, match='scan_implementation\\("reference"\\)'):
        mamba(**batch)
    pythia = make_model("pythia", processor)
    seq_idx = torch.zeros_like(batch["input_ids"])
    seq_idx[:, 5:] = 1
    with pytest.raises(ValueError, match="attention_mask=None"):
        pythia(input_ids=batch["input_ids"], attention_mask=torch.ones_like(seq_idx), seq_idx=seq_idx)


def test_packed_context_has_no_decode_step(processor):
    # transformers' Mamba model called directly inside the context: its cached step is refused, not run unpacked.
    language_model = make_model("mamba", processor).model.language_model
    embeds = torch.randn(1, 6, language_model.config.hidden_size)
    cache = language_model(inputs_embeds=embeds, use_cache=True).cache
    with packed_sequences(torch.zeros(1, 1, dtype=torch.long)), pytest.raises(ValueError, match="with a cache"):
        language_model(inputs_embeds=embeds[:, :1], cache=cache, use_cache=True)


def test_unsupervised_samples_are_counted_per_packed_sample(processor):
    from vlmamba.training import _unsupervised_samples

    unsupervised = {"id": "u", "task": "captioning", "image": picture(4), "caption": "a red circle"}
    labels = VLMambaDataCollator(processor).encode(unsupervised)["labels"]
    cut = next(index for index, label in enumerate(labels) if label != -100)
    collator = VLMambaDataCollator(processor, max_length=cut)  # cuts the caption away, not the text-only sample's
    rows = [ROWS[2], unsupervised, ROWS[2]]
    padded = collator(rows)
    packed = VLMambaDataCollator(processor, max_length=collator.max_length, pack_to=200)(rows)
    assert packed["input_ids"].shape[0] == 1
    assert _unsupervised_samples(padded).item() == 1 == _unsupervised_samples(packed).item()


def test_a_packed_training_run_ends_at_the_padded_runs_weights(tmp_path):
    # `vlmamba train --pack_to`: the same batches, packed, give the same steps (same loss, the same supervised tokens
    # counted), so both runs end at the same weights.
    import vlmamba.training as training
    from tests.test_training import TINY_RUN

    def run(name, *extra):
        args = training.parse_args([*TINY_RUN, "--output_dir", str(tmp_path / name), "--max_steps", "6", *extra])
        trainer = training.train(*args)
        return trainer, {key: value.detach().clone() for key, value in trainer.model.state_dict().items()}

    padded, padded_weights = run("padded")
    packed, packed_weights = run("packed", "--pack_to", "160")
    losses = [[entry["loss"] for entry in t.state.log_history if "loss" in entry] for t in (padded, packed)]
    assert len(losses[1]) == 6
    first = packed.data_collator([packed.train_dataset[index] for index in range(4)])
    assert first["input_ids"].shape[0] < 4 and "attention_mask" not in first  # the run's batches were packed
    for a, b in zip(*losses):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a))
    for key, value in padded_weights.items():
        torch.testing.assert_close(packed_weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
