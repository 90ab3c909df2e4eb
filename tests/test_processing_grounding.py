"""The processor's grounding side: the chat template's task items, location tokens, and post_process_grounding."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny import make_processor
from vlmamba import VLMambaProcessor
from vlmamba.models.boxes import BoxFormat, format_box, location_tokens
from vlmamba.models.tasks import build_prompt


# One query per task item; boxes already normalized (the chat template has no image size).
TASK_ITEMS = [
    {"task": "captioning"},
    {"task": "vqa", "question": "what COLOUR is the circle"},
    {"task": "vqa", "question": "  is it red?  "},
    {"task": "multiple_choice", "question": "which shape is left", "choices": ["the circle", "A square", "none"]},
    {"task": "multiple_choice", "question": "where is the cat?", "choices": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1, 1]]},
    {"task": "multiple_choice", "question": "which label", "choices": ["a", "b"], "ocr": [["A", "sun"], ["B", "moon"]]},
    {"task": "grounding", "expression": "the Red circle on the left"},
    {"task": "dense_captioning", "box": [0.125, 0.0, 0.5, 0.994]},
    {"task": "grounded_captioning"},
    {"task": "image_text_match", "caption": "A dog next to a cat!"},
]


def _example(item):
    example = dict(item)
    if item["task"] == "dense_captioning":
        example["boxes_normalized"] = True
    if item["task"] == "multiple_choice" and not isinstance(item["choices"][0], str):
        example["boxes_normalized"] = True
    return example


@pytest.fixture(scope="module")
def processor():
    return make_processor()


@pytest.fixture(scope="module")
def location_processor():
    return make_processor(location_bins=100)


def image(seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "item, instruction_first, normalize_text, with_image",
    list(itertools.product(TASK_ITEMS, [False, True], [True, False, "keep_case"], [True, False])),
)
def test_task_items_render_like_build_prompt(processor, item, instruction_first, normalize_text, with_image):
    content = ([{"type": "image"}] if with_image else []) + [{"type": "task", **item}]
    rendered = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        instruction_first=instruction_first,
        normalize_text=normalize_text,
    )
    expected = build_prompt(
        _example(item), for_generation=True, instruction_first=instruction_first, normalize_text=normalize_text
    ).text
    if not with_image:
        expected = expected.replace("<image>", "", 1)
    assert rendered == expected


BOX_ITEMS = [item for item in TASK_ITEMS if item["task"] in ("dense_captioning", "multiple_choice")]


@pytest.mark.parametrize("item", BOX_ITEMS)
def test_task_items_write_location_tokens(location_processor, item):
    rendered = location_processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                                    {"type": "task", **item}]}])
    expected = build_prompt(_example(item), for_generation=True, box_format=location_processor.box_format).text
    assert rendered == expected


def test_chat_template_uses_the_processors_layout(processor):
    item = {"type": "task", "task": "vqa", "question": "what is it?"}
    messages = [{"role": "user", "content": [{"type": "image"}, item]}]
    processor.instruction_first = True
    try:
        assert processor.apply_chat_template(messages).startswith("Answer the question using a single word or "
                                                                  "phrase.<image>\nQuestion: ")
    finally:
        processor.instruction_first = False
    assert processor.apply_chat_template(messages).startswith("<image>Answer the question")


def test_task_item_tokenizes_with_one_image_block(processor):
    messages = [{"role": "user", "content": [{"type": "image", "image": image()},
                                             {"type": "task", "task": "grounding", "expression": "the dog"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "[0.10,0.20,0.30,0.40]."}]}]
    out = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    assert (out["input_ids"] == processor.image_token_id).sum() == processor.patches_per_side ** 2
    assert out["pixel_values"].shape[0] == 1
    text = processor.apply_chat_template(messages)
    assert text.endswith("[0.10,0.20,0.30,0.40]." + processor.tokenizer.eos_token)


def test_unknown_task_item_is_an_error(processor):
    with pytest.raises(Exception, match="Unknown task"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "task", "task": "dance"}]}])


def test_location_tokens_are_single_normal_tokens_that_survive_decoding(location_processor):
    tokenizer = location_processor.tokenizer
    tokens = location_tokens(100)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert len(set(ids)) == 100 and tokenizer.unk_token_id not in ids
    assert not set(ids) & set(tokenizer.all_special_ids)
    text = "the cat " + format_box((0.1, 0.25, 0.5, 0.999), location_processor.box_format)
    encoded = tokenizer(text)["input_ids"]
    assert [i for i in encoded if i in set(ids)] == [ids[10], ids[25], ids[50], ids[99]]
    decoded = tokenizer.decode(encoded + [tokenizer.eos_token_id], skip_special_tokens=True)
    assert "<loc_10><loc_25><loc_50><loc_99>" in decoded.replace(" ", "")
    assert location_processor.box_format == BoxFormat("location", num_bins=100)


def test_location_bins_survive_save_and_load(location_processor, tmp_path):
    location_processor.save_pretrained(tmp_path)
    loaded = VLMambaProcessor.from_pretrained(tmp_path)
    assert loaded.location_bins == 100 and loaded.box_format == location_processor.box_format
    assert len(loaded.tokenizer) == len(location_processor.tokenizer)
    assert loaded.tokenizer.convert_tokens_to_ids("<loc_42>") == location_processor.tokenizer.convert_tokens_to_ids(
        "<loc_42>")


def test_invalid_location_bins_is_an_error():
    with pytest.raises(ValueError, match="num_bins"):
        make_processor(location_bins=1)


def test_post_process_grounding_from_ids_and_text(processor):
    answers = ["[0.10,0.20,0.50,0.60].", "||a red circle [0.00,0.00,0.25,0.50]|| and ||two squares [0.5,0.5,1,1][0.6,"
               "0.6,0.9,0.9]||", "no box here [12,40,96,80]"]
    ids = processor.tokenizer(answers, padding=True, return_tensors="pt")["input_ids"]
    sizes = [(100, 200), (40, 80), (10, 10)]
    for generated in (ids, answers):
        results = processor.post_process_grounding(generated, image_sizes=sizes)
        assert [len(result["boxes"]) for result in results] == [1, 3, 0]
        np.testing.assert_allclose(results[0]["boxes"][0], [20, 20, 100, 60], atol=1e-9)
        np.testing.assert_allclose(results[0]["boxes_normalized"][0], [0.1, 0.2, 0.5, 0.6], atol=1e-9)
        np.testing.assert_allclose(results[1]["boxes"][2], [0.6 * 80, 0.6 * 40, 0.9 * 80, 0.9 * 40], atol=1e-9)
        assert results[1]["phrases"] == ["a red circle", "two squares", "two squares"]
        assert results[2]["phrases"] == [] and results[2]["boxes_normalized"] == []
        assert [result["dropped_boxes"] for result in results] == [0, 0, 1]
    without_sizes = processor.post_process_grounding(answers[0])
    assert without_sizes[0]["boxes"] is None and len(without_sizes[0]["boxes_normalized"]) == 1


def test_post_process_grounding_location_tokens(location_processor):
    text = "<loc_10><loc_20><loc_50><loc_60>"
    ids = location_processor.tokenizer([text], return_tensors="pt")["input_ids"]
    result = location_processor.post_process_grounding(ids, image_sizes=[(100, 100)])[0]
    np.testing.assert_allclose(result["boxes"][0], [10.5, 20.5, 50.5, 60.5], atol=1e-6)


def test_post_process_grounding_bad_arguments_name_the_problem(processor):
    with pytest.raises(ValueError, match="2 image sizes for 1"):
        processor.post_process_grounding(["[0.1,0.1,0.2,0.2]"], image_sizes=[(10, 10), (10, 10)])
    with pytest.raises(ValueError, match="Sample 0"):
        processor.post_process_grounding(["[0.1,0.1,0.2,0.2]"], image_sizes=[(0, 10)])


def test_post_process_grounding_never_raises_on_token_noise(processor):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(processor.tokenizer), (16, 40), generator=generator)
    results = processor.post_process_grounding(ids, image_sizes=[(50, 60)] * 16)
    for result in results:
        for box in result["boxes_normalized"]:
            assert 0 <= box[0] <= box[2] <= 1 and 0 <= box[1] <= box[3] <= 1
