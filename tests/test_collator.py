"""The training collator: task template -> processor -> padded batch, labels only on answers; the two loss modes."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.loss.loss_utils import ForCausalLMLoss

from tests.tiny import make_model, make_processor
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.models.tasks import build_prompt


def picture(seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


ROWS = [
    {"task": "grounding", "image": picture(0), "expression": "the red circle", "box": [4, 3, 20, 15]},
    {"task": "vqa", "image": picture(1), "question": ["what colour?", "how many?"], "answer": ["red", "two"]},
    {"task": "captioning", "caption": "a blue square"},  # text only
]


@pytest.fixture(scope="module")
def processor():
    return make_processor()


def test_labels_cover_exactly_the_answers(processor):
    batch = VLMambaDataCollator(processor)(ROWS)
    tokenizer = processor.tokenizer
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape[0] == 2
    for row, example in enumerate(ROWS):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        length = int(mask.sum())
        assert mask[:length].all() and not mask[length:].any()  # right padding
        assert (ids[length:] == tokenizer.pad_token_id).all() and (labels[length:] == -100).all()
        prompt = build_prompt(example, eos_token=tokenizer.eos_token)
        supervised = labels[labels != -100]
        assert (ids[labels != -100] == supervised).all()
        assert tokenizer.decode(supervised) == prompt.target
        # Never on the image block, its markers or the prompt.
        image_positions = ids == processor.image_token_id
        assert not (labels[image_positions] != -100).any()
        assert int(image_positions.sum()) == (processor.patches_per_side**2 if "image" in example else 0)
    assert (
        tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100])
        == "[0.10,0.10,0.50,0.50]." + tokenizer.eos_token
    )


def test_images_given_as_paths_are_opened_and_missing_ones_named(processor, tmp_path):
    path = tmp_path / "scene.png"
    picture(0).save(path)
    by_path = VLMambaDataCollator(processor)([{**ROWS[0], "image": str(path)}])
    by_image = VLMambaDataCollator(processor)([ROWS[0]])
    assert torch.equal(by_path["input_ids"], by_image["input_ids"])
    torch.testing.assert_close(by_path["pixel_values"], by_image["pixel_values"])
    with pytest.raises(Exception, match="missing.png"):
        VLMambaDataCollator(processor)([{**ROWS[0], "image": str(tmp_path / "missing.png"), "id": "row-7"}])


def test_max_length_cuts_the_answer_but_never_the_image_block(processor):
    full = VLMambaDataCollator(processor)([ROWS[0]])
    length = int(full["attention_mask"].sum())
    cut = VLMambaDataCollator(processor, max_length=length - 2)([ROWS[0]])
    assert cut["input_ids"].shape[1] == length - 2
    assert torch.equal(cut["input_ids"][0], full["input_ids"][0, : length - 2])
    with pytest.raises(ValueError, match="image block"):
        VLMambaDataCollator(processor, max_length=3)([ROWS[0]])


@pytest.mark.parametrize("max_length", [0, -3])
def test_max_length_must_be_a_positive_number_of_tokens(processor, max_length):
    with pytest.raises(ValueError, match=f"max_length must be a positive number of tokens.*got {max_length}"):
        VLMambaDataCollator(processor, max_length=max_length)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        VLMambaDataCollator(processor, pad_to_multiple_of=max_length)


def test_bad_examples_name_the_example_and_field(processor):
    with pytest.raises(ValueError, match="Example 1 .*'answer'"):
        VLMambaDataCollator(processor)([ROWS[2], {"task": "vqa", "image": picture(), "question": "what?"}])
    # An example with an id is named by it, not by its position in the batch (which says nothing about the dataset).
    with pytest.raises(ValueError, match="Example q7 .*'answer'"):
        VLMambaDataCollator(processor)([ROWS[2], {"id": "q7", "task": "vqa", "image": picture(), "question": "what?"}])


def _first_supervised(processor, example):
    labels = VLMambaDataCollator(processor).encode(example)["labels"]
    return next(position for position, label in enumerate(labels) if label != -100)


def test_samples_without_a_supervised_token_are_warned_about_by_id(processor, caplog):
    grounding, caption = {**ROWS[0], "id": "g1"}, ROWS[2]
    cut = _first_supervised(processor, grounding)  # every answer token of the grounding example is cut
    assert _first_supervised(processor, caption) < cut  # while the caption keeps some of its answer
    with caplog.at_level("WARNING", logger="vlmamba.data.collator"):
        batch = VLMambaDataCollator(processor, max_length=cut)([grounding, caption])
    assert (batch["labels"][0] == -100).all() and (batch["labels"][1] != -100).any()
    assert len(caplog.records) == 1
    assert (
        "No supervised token in 1 of 2" in caplog.text
        and "(id 'g1')" in caplog.text
        and f"max_length={cut}" in caplog.text
    )

    caplog.clear()
    with caplog.at_level("WARNING", logger="vlmamba.data.collator"):
        VLMambaDataCollator(processor, max_length=cut)([grounding, {**ROWS[0]}])
    assert "No supervised token in every sample" in caplog.text and "(id 'g1', batch position 1)" in caplog.text
    assert "loss 0" in caplog.text

    caplog.clear()
    with caplog.at_level("WARNING", logger="vlmamba.data.collator"):
        VLMambaDataCollator(processor)(ROWS)
    assert not caplog.records


@pytest.mark.parametrize("family", ["mamba", "pythia"])
def test_loss_reductions(processor, family):
    batch = VLMambaDataCollator(processor)(ROWS)
    model = make_model(family, processor)
    with torch.no_grad():
        token = model(**batch).loss
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    expected_token = ForCausalLMLoss(logits, batch["labels"], vocab_size=logits.shape[-1])
    torch.testing.assert_close(token, expected_token)
    per_sample = []
    for row in range(len(ROWS)):
        targets = batch["labels"][row, 1:]
        keep = targets != -100
        per_sample.append(torch.nn.functional.cross_entropy(logits[row, :-1][keep], targets[keep]))
    model.config.loss_reduction = "sample"
    assert not model.accepts_loss_kwargs
    with torch.no_grad():
        sample = model(**batch).loss
    torch.testing.assert_close(sample, torch.stack(per_sample).mean())
    assert not torch.allclose(sample, token)  # the answers differ in length, so the modes differ


def test_sample_loss_counts_a_sample_without_supervised_tokens_as_zero(processor):
    batch = VLMambaDataCollator(processor)(ROWS[:2])
    batch["labels"][1] = -100
    model = make_model("mamba", processor)
    model.config.loss_reduction = "sample"
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    targets = batch["labels"][0, 1:]
    keep = targets != -100
    first = torch.nn.functional.cross_entropy(logits[0, :-1][keep], targets[keep])
    torch.testing.assert_close(loss, first / 2)  # the mean over both samples, the second at 0
