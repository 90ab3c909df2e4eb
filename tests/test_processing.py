import json
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoProcessor

from tests.tiny import make_processor, make_tokenizer
from vlmamba import MambaVLConfig, VLMambaProcessor
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.models.tasks import build_prompt
from vlmamba.toy import tiny_processor


def image(seed=0, size=(30, 20)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processor():
    return make_processor()


def test_image_block_layout_existing_pieces_and_added_tokens():
    tokenizer = make_tokenizer()
    vocab = tokenizer.get_vocab()
    assert "&&" in vocab and "###" in vocab, "the test tokenizer has the markers as single pieces, as GPT-NeoX"
    processor = make_processor()
    # The markers keep their ids; the image placeholder, not a piece, becomes an added special token.
    assert processor.row_separator_token_id == vocab["&&"] and processor.image_begin_token_id == vocab["###"]
    assert processor.image_token_id >= len(vocab) or processor.image_token_id not in vocab.values()
    begin, sep, end, img = (processor.image_begin_token_id, processor.row_separator_token_id,
                            processor.image_end_token_id, processor.image_token_id)
    assert processor.image_block == [begin, img, img, sep, img, img, end]

    tokenizer.add_special_tokens({"additional_special_tokens": ["<image_begin>", "<image_end>", "<image_row>"]})
    special = tiny_processor(tokenizer, image_size=28, patch_size=14, image_begin_token="<image_begin>",
                             image_end_token="<image_end>", row_separator_token="<image_row>")
    ids = [special.image_begin_token_id, special.row_separator_token_id, special.image_end_token_id]
    assert len(set(ids)) == 3 and all(i not in vocab.values() for i in ids)
    assert special.image_block == [ids[0], special.image_token_id, special.image_token_id, ids[1],
                                   special.image_token_id, special.image_token_id, ids[2]]


def test_a_marker_that_is_not_one_token_is_refused_and_user_text_keeps_its_markers():
    # Added to the tokenizer, `@@@` would turn users' own `@@@` into image markers and vanish from decoded text.
    with pytest.raises(ValueError, match=r"image_end_token='@@@' is not one token of this tokenizer"):
        make_processor(image_end_token="@@@")
    processor = make_processor()
    text = "### notes && more ###"
    ids = processor(text=[text])["input_ids"][0]
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == text


def test_block_matches_model_config(processor):
    config_layout = MambaVLConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": 28, "patch_size": 14, "hidden_size": 32,
                       "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4},
        text_config={"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 1, "vocab_size": 512},
        **processor.image_layout(),
    )
    assert config_layout.image_block_ids() == processor.image_block


def test_tokens_around_the_block_are_unchanged(processor):
    text = "the red circle"
    out = processor(images=[image(), image(1)], text=["<image>" + text + "<image>"])
    ids = out["input_ids"][0]
    plain = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    block = processor.image_block
    assert ids == block + plain + block
    assert np.asarray(out["pixel_values"]).shape == (2, 3, 28, 28)


def test_text_only_and_mixed_batches_with_padding_sides(processor):
    prompts = ["<image>what colour is it?", "no image here at all, only words", "<image>a"]
    for side in ("left", "right"):
        out = processor(images=[image(), image(1)], text=prompts, padding=True, padding_side=side,
                        return_tensors="pt")
        ids, mask = out["input_ids"], out["attention_mask"]
        assert out["pixel_values"].shape == (2, 3, 28, 28)
        assert (ids == processor.image_token_id).sum(-1).tolist() == [4, 0, 4]
        lengths = mask.sum(-1)
        for row in range(3):
            real = ids[row][mask[row].bool()]
            alone = processor(images=[image()] if "<image>" in prompts[row] else None, text=[prompts[row]],
                              return_tensors="pt")["input_ids"][0]
            assert real.tolist() == alone.tolist()
            padding = mask[row] == 0
            assert (ids[row][padding] == processor.tokenizer.pad_token_id).all()
            if side == "left":
                assert mask[row, -int(lengths[row]):].all()
            else:
                assert mask[row, : int(lengths[row])].all()


def test_placeholder_count_errors_name_the_sample(processor):
    with pytest.raises(ValueError, match=r"2 <image> placeholder\(s\) \(per sample: \[1, 1\]\) but 1 image"):
        processor(images=[image()], text=["<image>a", "<image>b"])
    with pytest.raises(ValueError, match=r"Sample 1 has 0 <image> placeholder\(s\) but 1 image"):
        processor(images=[[image()], [image(1)]], text=["<image>a", "b"])
    with pytest.raises(ValueError, match=r"but no|0 image"):
        processor(text=["<image>a"])
    with pytest.raises(ValueError, match="Image 1: Image file not found: 'not an image'"):
        processor(images=[image(), "not an image"], text=["<image>a<image>"])


def test_truncation_never_cuts_an_image_block(processor):
    text = ["<image>" + " the red circle" * 10]
    full = processor(images=[image()], text=text)["input_ids"][0]
    out = processor(images=[image()], text=text, truncation=True, max_length=12)
    assert out["input_ids"][0] == full[:12]
    with pytest.raises(ValueError, match=r"Sample 0 has \d+ tokens; truncating it to max_length=5 .* image block 0"):
        processor(images=[image()], text=text, truncation=True, max_length=5)
    processor.tokenizer.model_max_length = 12
    try:
        assert processor(images=[image()], text=text, truncation=True)["input_ids"][0] == full[:12]
    finally:
        processor.tokenizer.model_max_length = int(1e30)
    processor.tokenizer.truncation_side = "left"
    try:
        with pytest.raises(ValueError, match="left side"):
            processor(images=[image()], text=text, truncation=True, max_length=12)
    finally:
        processor.tokenizer.truncation_side = "right"


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = VLMambaProcessor.from_pretrained(tmp_path)
    assert loaded.image_block == processor.image_block
    assert loaded.image_layout() == processor.image_layout()
    kwargs = dict(images=[image(), image(3)], text=["<image>a red", "two <image>"], padding=True, return_tensors="pt")
    a, b = processor(**kwargs), loaded(**kwargs)
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"])


def test_post_process_returns_strings(processor):
    ids = processor(text=["the red circle", "two blue squares"], padding=True, return_tensors="pt")["input_ids"]
    texts = processor.post_process_image_text_to_text(ids, skip_special_tokens=True)
    assert texts == ["the red circle", "two blue squares"]


def test_chat_template_emits_the_placeholder(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what colour?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False)
    assert prompt == "<image>What colour?\n"
    out = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "image": image()}, {"type": "text", "text": "hi"}]}],
        tokenize=True, return_dict=True, return_tensors="pt",
    )
    assert (out["input_ids"] == processor.image_token_id).sum() == 4 and out["pixel_values"].shape[0] == 1


CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the image?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]},
    {"role": "user", "content": "what colour is it?"},
]


@pytest.mark.parametrize("instruction_first", [False, True])
def test_a_conversation_is_written_as_the_chat_task(instruction_first):
    processor = make_processor(instruction_first=instruction_first)
    turns = [{"from": "human", "value": "what is in the image?"}, {"from": "gpt", "value": "a cat"},
             {"from": "human", "value": "what colour is it?"}]
    chat = {"task": "chat", "conversations": turns}
    prompt = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert prompt == processor.build_prompt(chat, for_generation=True).text
    expected = "What is in the image?\n<image>" if instruction_first else "<image>What is in the image?\n"
    assert prompt == expected + "A cat.\nWhat colour is it?\n"
    answered = CONVERSATION + [{"role": "assistant", "content": "black."}]
    full = {"task": "chat", "conversations": turns + [{"from": "gpt", "value": "black."}]}
    assert processor.apply_chat_template(answered) == processor.build_prompt(full).text
    assert processor.apply_chat_template(answered).endswith("Black.\n" + processor.tokenizer.eos_token)
    partial = CONVERSATION + [{"role": "assistant", "content": "It is"}]
    assert processor.apply_chat_template(partial, continue_final_message=True) == prompt + "It is"


def test_conversations_the_models_cannot_read_are_errors(processor):
    with pytest.raises(ValueError, match="role 'system'"):
        processor.apply_chat_template([{"role": "system", "content": "be brief"}] + CONVERSATION)
    two_images = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "hi"}]}]
    with pytest.raises(ValueError, match="2 images"):
        processor.apply_chat_template(two_images)
    with pytest.raises(ValueError, match="conversations\\[0\\]"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}])
    # Found by the fuzzer below: a placeholder in the assistant text to continue is text, not an image.
    with pytest.raises(ValueError, match="assistant text to continue holds the image placeholder"):
        processor.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": "<image>"}],
                                      continue_final_message=True)


NORMALIZE_TEXT_MODES = [True, False, "keep_case"]
SIGN = {"task": "vqa", "question": "What does the SIGN say", "answer": "STOP"}


@pytest.mark.parametrize("normalize_text", NORMALIZE_TEXT_MODES)
@pytest.mark.parametrize("instruction_first", [False, True])
def test_the_processor_writes_prompts_with_its_own_format(normalize_text, instruction_first):
    processor = make_processor(normalize_text=normalize_text, instruction_first=instruction_first, location_bins=8)
    box_example = {"task": "grounding", "expression": "the SIGN", "box": [0.1, 0.2, 0.5, 0.6], "boxes_normalized": True}
    for example in (SIGN, box_example):
        expected = build_prompt(example, normalize_text=normalize_text, instruction_first=instruction_first,
                                box_format=processor.box_format, eos_token=processor.tokenizer.eos_token)
        assert processor.build_prompt(example) == expected
    # The chat template writes task items through the same code, whatever the normalization.
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "task", "task": "vqa",
                                                                  "question": SIGN["question"]}]}]
    assert processor.apply_chat_template(messages) == processor.build_prompt(SIGN, for_generation=True).text
    with pytest.raises(ValueError, match="box_format belong"):
        processor.build_prompt(SIGN, box_format="text")


def test_keep_case_keeps_the_case_in_the_chat_template_too():
    processor = make_processor(normalize_text="keep_case")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "task", "task": "vqa",
                                                                  "question": SIGN["question"]}]}]
    assert processor.apply_chat_template(messages) == "<image>Answer the question using a single word or phrase." \
        "\nQuestion: What does the SIGN say.\nAnswer: "


def test_prompt_format_round_trips_through_save_pretrained(tmp_path):
    processor = make_processor(normalize_text=False, instruction_first=True, location_bins=8)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.prompt_format == processor.prompt_format
    assert (loaded.normalize_text, loaded.instruction_first) == (False, True)
    # The collator, evaluation and predict all write prompts through the loaded processor's format.
    collated = VLMambaDataCollator(loaded)([{**SIGN, "image": image()}])
    encoded = processor.encode_prompt(build_prompt(SIGN, normalize_text=False, instruction_first=True,
                                                   box_format=processor.box_format,
                                                   eos_token=processor.tokenizer.eos_token), image=image())
    assert collated["input_ids"][0].tolist() == encoded["input_ids"]
    assert "What does the SIGN say\n" in loaded.build_prompt(SIGN).text


def test_processors_saved_before_normalize_text_was_saved_load_with_the_default(tmp_path):
    make_processor(instruction_first=True).save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    saved = json.loads(path.read_text())
    del saved["normalize_text"]
    path.write_text(json.dumps(saved))
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.normalize_text is True and loaded.instruction_first is True


def test_a_config_saved_with_a_layout_field_loads_without_it(tmp_path):
    config = MambaVLConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": 28, "patch_size": 14, "hidden_size": 32,
                       "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4},
        text_config={"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 1, "vocab_size": 512},
        **make_processor().image_layout(),
    )
    config.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    saved["instruction_first"] = True  # written by configs before the processor owned the layout
    path.write_text(json.dumps(saved))
    loaded = MambaVLConfig.from_pretrained(tmp_path)
    assert not hasattr(loaded, "instruction_first") and "instruction_first" not in loaded.to_dict()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_prompt_settings_are_refused(value):
    with pytest.raises(ValueError, match="normalize_text must be one of"):
        make_processor(normalize_text=value)


# Images given as paths or URLs: read by `open_image`, the library's one image-reading path


def _png_declaring(path, width: int, height: int):
    """A PNG file whose header declares `width` x `height` (its pixel data is that of a 1x1 image)."""
    import struct
    import zlib

    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    path.write_bytes(bytes(data))
    return path


def test_images_given_as_paths_and_urls_are_the_same_inputs(tmp_path):
    processor = make_processor()
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(path)
    expected = processor(images=[Image.open(path)], text=["<image>What is it?\n"], return_tensors="pt")
    for source in (str(path), path, f"file://{path}"):
        inputs = processor(images=source, text="<image>What is it?\n", return_tensors="pt")
        assert torch.equal(inputs["pixel_values"], expected["pixel_values"]), source
        assert torch.equal(inputs["input_ids"], expected["input_ids"])
    pil_item = {"type": "image", "image": Image.open(path)}
    for item in (pil_item, {"type": "image", "url": str(path)}, {"type": "image", "path": str(path)},
                 {"type": "image", "image": str(path)}):
        messages = [{"role": "user", "content": [item, {"type": "text", "text": "What is it?"}]}]
        inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
        assert torch.equal(inputs["pixel_values"], expected["pixel_values"]), item
        assert torch.equal(inputs["input_ids"], expected["input_ids"]), item


def test_a_bad_image_file_is_an_error_naming_it_never_a_crash(tmp_path):
    processor = make_processor()
    corrupt = tmp_path / "corrupt.png"
    Image.new("RGB", (8, 8)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:40] + b"\x00" * 30)
    bomb = _png_declaring(tmp_path / "bomb.png", 30000, 30000)
    cases = {corrupt: "Cannot read image", bomb: "DecompressionBombError", tmp_path: "a folder, not a file",
             tmp_path / "missing.png": "not found", "http://127.0.0.1:9/x.png": "Cannot download image"}
    for source, message in cases.items():
        # The default (torchvision) image processor, the processor and the training collator all read it one way.
        with pytest.raises(ValueError, match=message) as error:
            processor.image_processor(str(source), return_tensors="pt")
        assert str(source).split("://")[-1] in str(error.value)
        with pytest.raises(ValueError, match=f"Image 0: .*{message}"):
            processor(images=[str(source)], text=["<image>"])
    collator = VLMambaDataCollator(processor)
    with pytest.raises(ValueError, match=r"bomb.png' \(row 'big'\): DecompressionBombError"):
        collator([{"id": "big", "task": "captioning", "caption": "a cat", "image": str(bomb)}])


def test_a_batch_tensor_holds_as_many_images_as_its_first_dimension(processor):
    stacked = torch.rand(2, 3, 28, 28)
    with pytest.raises(ValueError, match="1 <image> placeholder.*but 2 image"):
        processor(images=stacked, text=["<image>one"])
    out = processor(images=stacked, text=["<image>one", "<image>two"], return_tensors="pt")
    separate = processor(images=list(stacked), text=["<image>one", "<image>two"], return_tensors="pt")
    assert torch.equal(out["pixel_values"], separate["pixel_values"]) and out["pixel_values"].shape[0] == 2


def test_an_empty_text_list_is_a_clear_error(processor):
    with pytest.raises(ValueError, match="text is an empty list"):
        processor(text=[])
    with pytest.raises(ValueError, match="text is an empty list"):
        processor(images=[], text=[])


_TEXT = st.lists(st.sampled_from(list("ab ?.!\n#&<>|") + ["<image>", "###", "&&", "<|endoftext|>"]),
                 max_size=12).map("".join)
_ITEM = st.one_of(st.builds(lambda text: {"type": "text", "text": text}, _TEXT), st.just({"type": "image"}),
                  st.just({"type": "video"}), _TEXT)
_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                  "content": st.one_of(_TEXT, st.lists(_ITEM, max_size=3))})


@settings(max_examples=int(os.environ.get('VLMAMBA_FUZZ_EXAMPLES', 120)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_MESSAGE, min_size=1, max_size=4), continue_final=st.booleans())
def test_any_conversation_renders_as_the_chat_task_or_is_a_value_error(processor, messages, continue_final):
    try:
        prompt = processor.apply_chat_template(messages, continue_final_message=continue_final)
    except ValueError:
        return
    # What renders holds the image placeholder once per image item and nowhere else, so it tokenizes as one image.
    images = sum(isinstance(item, dict) and item.get("type") == "image" for message in messages
                 if isinstance(message["content"], list) for item in message["content"])
    assert prompt.count("<image>") == images <= 1
    assert all(message["role"] in ("user", "assistant") for message in messages)
    if messages[-1]["role"] == "user":
        assert prompt.endswith("\n")
