import json
import logging
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.tiny import make_processor
from vlmamba.data import (
    SOURCES,
    load_ai2d,
    load_coco_captions,
    load_gqa,
    load_llava,
    load_pope,
    load_refcoco,
    load_source,
    load_textvqa,
    load_visual7w,
    load_vqav2,
    load_vsr,
    mix_sources,
    open_image,
)
from vlmamba.data.records import _read_json_lines
from vlmamba.models.tasks import build_prompt


EOS = "<|endoftext|>"


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_png(path: Path, size=(8, 6), mode="RGB") -> Path:
    """A small PNG of `size` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path, format="PNG")
    return path


def rows(dataset: Dataset) -> list[dict]:
    return [dataset[index] for index in range(len(dataset))]


def assert_names(message: str, *parts: str):
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# Fixtures in each format


def llava_records():
    return [
        {
            "id": "a1",
            "image": "coco/1.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is it?"},
                {"from": "gpt", "value": "A cat."},
                {"from": "human", "value": "Color?"},
                {"from": "gpt", "value": "Black."},
            ],
        },
        {"id": 7, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]


def pretrain_records():
    return [
        {
            "id": "004539375",
            "image": "00453/004539375.jpg",
            "conversations": [
                {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
                {"from": "gpt", "value": "select luxury furniture"},
            ],
        }
    ]


def karpathy(tmp_path):
    images = [
        {
            "filepath": "train2014",
            "filename": "COCO_train2014_000000000009.jpg",
            "cocoid": 9,
            "imgid": 0,
            "split": "train",
            "sentences": [{"raw": "A plate of food.", "sentid": 1}, {"raw": "Some food on a table.", "sentid": 2}],
        },
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000000042.jpg",
            "cocoid": 42,
            "imgid": 1,
            "split": "restval",
            "sentences": [{"raw": "A dog running.", "sentid": 3}],
        },
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000000073.jpg",
            "cocoid": 73,
            "imgid": 2,
            "split": "test",
            "sentences": [{"raw": "Two birds.", "sentid": 4}, {"raw": "Birds on a wire.", "sentid": 5}],
        },
    ]
    return write_json(tmp_path / "dataset_coco.json", {"images": images, "dataset": "coco"})


def vqav2_files(tmp_path, questions=None, annotations=None):
    questions = questions or [
        {"image_id": 42, "question": "What is on the plate?", "question_id": 42000},
        {"image_id": 73, "question": "How many birds?", "question_id": 73001},
    ]
    annotations = annotations or [
        {
            "question_id": 42000,
            "image_id": 42,
            "multiple_choice_answer": "food",
            "answers": [
                {"answer": a, "answer_id": n + 1} for n, a in enumerate(["cake"] * 3 + ["food"] * 4 + ["pie"] * 3)
            ],
        },
        {
            "question_id": 73001,
            "image_id": 73,
            "multiple_choice_answer": "2",
            # A tie between "2" and "two": the first one seen wins.
            "answers": [{"answer": a, "answer_id": n + 1} for n, a in enumerate(["two", "2"] * 5)],
        },
    ]
    questions_path = write_json(
        tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", {"data_subtype": "val2014", "questions": questions}
    )
    annotations_path = write_json(tmp_path / "v2_mscoco_val2014_annotations.json", {"annotations": annotations})
    return questions_path, annotations_path


def refcoco_files(tmp_path, refs=None, bbox=(10, 20, 30, 40)):
    refs = refs or [
        {
            "ref_id": 0,
            "ann_id": 100,
            "image_id": 1,
            "split": "train",
            "file_name": "COCO_train2014_000000000001_100.jpg",
            "category_id": 1,
            "sent_ids": [5, 6],
            "sentences": [{"raw": "Left MAN", "sent": "left man", "sent_id": 5}, {"raw": "man in red", "sent_id": 6}],
        },
        {
            "ref_id": 1,
            "ann_id": 101,
            "image_id": 2,
            "split": "testA",
            "sentences": [{"raw": "the cup", "sent_id": 7}, {"raw": "white cup on right", "sent_id": 8}],
        },
    ]
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 50, "height": 40},
        ],
        "annotations": [
            {"id": 100, "image_id": 1, "bbox": list(bbox), "category_id": 1},
            {"id": 101, "image_id": 2, "bbox": [0.5, 1.5, 49.5, 38.0], "category_id": 3},
        ],
    }
    refs_path = tmp_path / "refcoco" / "refs(unc).p"
    refs_path.parent.mkdir(parents=True, exist_ok=True)
    with open(refs_path, "wb") as file:
        pickle.dump(refs, file)
    return refs_path, write_json(tmp_path / "refcoco" / "instances.json", instances)


def ai2d_folder(tmp_path):
    root = tmp_path / "ai2d"
    write_json(
        root / "questions" / "0.png.json",
        {
            "imageName": "0.png",
            "questions": {
                "Which label is the sun?": {
                    "abcLabel": True,
                    "answerTexts": ["A", "B", "C", "D"],
                    "correctAnswer": 2,
                    "questionId": "0.png-0",
                },
                "What eats grass?": {
                    "abcLabel": False,
                    "answerTexts": ["cow", "lion", "hawk"],
                    "correctAnswer": 0,
                    "questionId": "0.png-1",
                },
            },
        },
    )
    write_json(
        root / "annotations" / "0.png.json",
        {
            "text": {
                "T1": {"id": "T1", "value": "moon", "replacementText": "B", "rectangle": [[0, 0], [1, 1]]},
                "T0": {"id": "T0", "value": "sun", "replacementText": "A", "rectangle": [[0, 0], [1, 1]]},
                "T2": {"id": "T2", "value": "", "replacementText": "C", "rectangle": [[0, 0], [1, 1]]},
            }
        },
    )
    write_json(
        root / "questions" / "10.png.json",
        {
            "imageName": "10.png",
            "questions": {
                "What is shown?": {"answerTexts": ["a leaf", "a root"], "correctAnswer": 1, "questionId": "10.png-0"}
            },
        },
    )
    write_json(root / "annotations" / "10.png.json", {"text": {}})
    return root


def v7w_telling(tmp_path, qa_pairs=None):
    qa_pairs = qa_pairs or [
        {
            "qa_id": 11,
            "image_id": 5,
            "question": "What is on the table?",
            "answer": "A cup.",
            "multiple_choices": ["A dog.", "A car.", "A tree."],
            "type": "what",
        },
        {
            "qa_id": 12,
            "image_id": 5,
            "question": "Where is the cup?",
            "answer": "On the table.",
            "multiple_choices": ["In a box.", "On the floor.", "Outside."],
            "type": "where",
        },
    ]
    images = [
        {"image_id": 5, "filename": "v7w_5.jpg", "split": "train", "qa_pairs": qa_pairs},
        {"image_id": 6, "filename": "v7w_6.jpg", "split": "test", "qa_pairs": []},
    ]
    return write_json(tmp_path / "dataset_v7w_telling.json", {"images": images})


def v7w_pointing(tmp_path, answer=1, car=(50, 40, 20, 20)):
    """Box 1 starts left of the image; box 3 (`car`, XYWH) ends past the 60x50 image by default."""
    images = [
        {
            "image_id": 5,
            "filename": "v7w_5.png",
            "split": "val",
            "qa_pairs": [
                {
                    "qa_id": 21,
                    "image_id": 5,
                    "question": "Which is the cup?",
                    "answer": answer,
                    "multiple_choices": [2, 3],
                    "type": "pointing",
                }
            ],
        }
    ]
    boxes = [
        {"box_id": 1, "x": -5, "y": 10, "width": 20, "height": 30, "name": "cup"},
        {"box_id": 2, "x": 0, "y": 0, "width": 10, "height": 10, "name": "dog"},
        {"box_id": 3, "x": car[0], "y": car[1], "width": car[2], "height": car[3], "name": "car"},
    ]
    return write_json(tmp_path / "dataset_v7w_pointing.json", {"images": images, "boxes": boxes})


# Loaders: exact rows


def test_llava_chat_rows(tmp_path):
    path = write_json(tmp_path / "llava.json", llava_records())
    dataset = load_llava(path, tmp_path / "images")
    assert rows(dataset) == [
        {
            "id": "a1",
            "source": "llava",
            "task": "chat",
            "image": str(tmp_path / "images" / "coco" / "1.png"),
            "conversations": llava_records()[0]["conversations"],
        },
        {
            "id": "7",
            "source": "llava",
            "task": "chat",
            "image": None,
            "conversations": llava_records()[1]["conversations"],
        },
    ]
    prompt = build_prompt(dataset[0])
    assert prompt.target == "A cat.\nBlack.\n" + EOS


def test_llava_pretrain_is_captioning_with_the_human_prompt(tmp_path):
    path = write_json(tmp_path / "blip_laion_cc_sbu_558k.json", pretrain_records())
    dataset = load_llava(path, tmp_path, as_captioning=True)
    assert rows(dataset) == [
        {
            "id": "004539375",
            "source": "llava_pretrain",
            "task": "captioning",
            "image": str(tmp_path / "00453" / "004539375.jpg"),
            "prompt": "Render a clear and concise summary of the photo.\n<image>",
            "caption": "select luxury furniture",
        }
    ]
    assert build_prompt(dataset[0]).segments == [
        ("<image>", False),
        ("Render a clear and concise summary of the photo.\n", False),
        ("Select luxury furniture." + EOS, True),
    ]


def test_llava_as_captioning_needs_two_turns(tmp_path):
    path = write_json(tmp_path / "llava.json", llava_records())
    with pytest.raises(ValueError) as error:
        load_llava(path, tmp_path, as_captioning=True)
    assert_names(str(error.value), str(path), "row 0", "'a1'", "'conversations'", "4 turns")


def test_coco_train_rows_per_caption_with_restval(tmp_path):
    path = karpathy(tmp_path)
    dataset = load_coco_captions(path, tmp_path / "coco", "train")
    assert rows(dataset) == [
        {
            "id": "1",
            "source": "coco_captions",
            "task": "captioning",
            "image": str(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000009.jpg"),
            "caption": "A plate of food.",
        },
        {
            "id": "2",
            "source": "coco_captions",
            "task": "captioning",
            "image": str(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000009.jpg"),
            "caption": "Some food on a table.",
        },
        {
            "id": "3",
            "source": "coco_captions",
            "task": "captioning",
            "image": str(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000042.jpg"),
            "caption": "A dog running.",
        },
    ]
    assert len(load_coco_captions(path, tmp_path, "train", include_restval=False)) == 2


def test_coco_test_rows_per_image_with_references(tmp_path):
    dataset = load_coco_captions(karpathy(tmp_path), tmp_path, "test")
    assert rows(dataset) == [
        {
            "id": "73",
            "source": "coco_captions",
            "task": "captioning",
            "image": str(tmp_path / "val2014" / "COCO_val2014_000000000073.jpg"),
            "caption": "Two birds.",
            "references": ["Two birds.", "Birds on a wire."],
        }
    ]


def test_coco_unknown_split(tmp_path):
    path = karpathy(tmp_path)
    with pytest.raises(ValueError, match="split 'val'"):
        load_coco_captions(path, tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        load_coco_captions(path, tmp_path, "validation")


def test_vqav2_most_common_answer_and_all_answers(tmp_path):
    questions, annotations = vqav2_files(tmp_path)
    dataset = load_vqav2(questions, annotations, tmp_path / "val2014")
    assert rows(dataset) == [
        {
            "id": "42000",
            "source": "vqav2",
            "task": "vqa",
            "image": str(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"),
            "question": "What is on the plate?",
            "answer": "food",
            "answers": ["cake"] * 3 + ["food"] * 4 + ["pie"] * 3,
        },
        {
            "id": "73001",
            "source": "vqav2",
            "task": "vqa",
            "image": str(tmp_path / "val2014" / "COCO_val2014_000000000073.jpg"),
            "question": "How many birds?",
            "answer": "two",
            "answers": ["two", "2"] * 5,
        },
    ]


def test_vqav2_without_annotations_is_for_generation(tmp_path):
    questions, _ = vqav2_files(tmp_path)
    dataset = load_vqav2(questions, None, tmp_path)
    assert dataset.column_names == ["id", "source", "task", "image", "question"]
    assert build_prompt(dataset[1], for_generation=True).text.endswith("Question: How many birds?\nAnswer: ")


def test_gqa_rows(tmp_path):
    path = write_json(
        tmp_path / "testdev_balanced_questions.json",
        {
            "20968379": {"imageId": "n288870", "question": "Is the sky dark?", "answer": "yes", "fullAnswer": "Yes."},
            "201640614": {"imageId": "2354786", "question": "Who wears the hat?", "answer": "man"},
        },
    )
    assert rows(load_gqa(path, tmp_path / "images")) == [
        {
            "id": "20968379",
            "source": "gqa",
            "task": "vqa",
            "image": str(tmp_path / "images" / "n288870.jpg"),
            "question": "Is the sky dark?",
            "answer": "yes",
        },
        {
            "id": "201640614",
            "source": "gqa",
            "task": "vqa",
            "image": str(tmp_path / "images" / "2354786.jpg"),
            "question": "Who wears the hat?",
            "answer": "man",
        },
    ]


def test_refcoco_train_rows_per_sentence_with_xyxy_boxes(tmp_path):
    refs, instances = refcoco_files(tmp_path)
    dataset = load_refcoco(refs, instances, tmp_path / "train2014", "train")
    image = str(tmp_path / "train2014" / "COCO_train2014_000000000001.jpg")
    common = {"source": "refcoco", "task": "grounding", "image": image, "image_size": [80, 100]}
    assert rows(dataset) == [
        {"id": "0-5", **common, "expression": "Left MAN", "box": [10.0, 20.0, 40.0, 60.0]},
        {"id": "0-6", **common, "expression": "man in red", "box": [10.0, 20.0, 40.0, 60.0]},
    ]
    assert build_prompt(dataset[0]).segments[-2:] == [("\nLeft man.\n", False), ("[0.10,0.25,0.40,0.75]." + EOS, True)]


def test_refcoco_eval_rows_per_sentence_or_per_object(tmp_path):
    refs, instances = refcoco_files(tmp_path)
    per_sentence = load_refcoco(refs, instances, tmp_path, "testA")
    assert per_sentence["id"] == ["1-7", "1-8"]
    assert per_sentence["expression"] == ["the cup", "white cup on right"]
    assert per_sentence["box"] == [[0.5, 1.5, 50.0, 39.5]] * 2
    assert per_sentence["image_size"] == [[40, 50]] * 2
    per_object = load_refcoco(refs, instances, tmp_path, "testA", per_object=True)
    assert per_object["id"] == ["1"]
    assert per_object["expression"] == ["white cup on right"]
    with pytest.raises(ValueError, match=r"no ref is in split 'val'; the file has \['testA', 'train'\]"):
        load_refcoco(refs, instances, tmp_path, "val")


def test_refcoco_box_slightly_past_the_border_is_clipped_far_past_is_an_error(tmp_path):
    refs, instances = refcoco_files(tmp_path, bbox=(60, 40, 40.4, 40.6))
    assert load_refcoco(refs, instances, tmp_path, "train")["box"][0] == [60.0, 40.0, 100.0, 80.0]
    refs, instances = refcoco_files(tmp_path, bbox=(60, 40, 45, 40))
    with pytest.raises(ValueError) as error:
        load_refcoco(refs, instances, tmp_path, "train")
    assert_names(str(error.value), str(refs), "row 0", "annotations[id=100].bbox", "outside the 100x80 image")


def test_registry_names_refcoco_variants(tmp_path):
    refs, instances = refcoco_files(tmp_path)
    dataset = load_source("refcoco+", refs_pickle=refs, instances_json=instances, image_root=tmp_path, split="train")
    assert set(dataset["source"]) == {"refcoco+"}
    assert set(SOURCES) >= {"llava", "llava_pretrain", "coco_captions", "vqav2", "gqa", "refcoco", "refcocog"}
    assert set(SOURCES) >= {"textvqa", "vsr", "pope", "ai2d", "visual7w"}
    with pytest.raises(ValueError, match="Unknown source 'refclef'"):
        load_source("refclef")


def test_textvqa_rows_with_ocr_file(tmp_path):
    answers = ["nokia"] * 6 + ["nokia phone"] * 4
    path = write_json(
        tmp_path / "TextVQA_0.5.1_val.json",
        {
            "dataset_type": "val",
            "data": [
                {
                    "question": "what brand is the phone?",
                    "image_id": "003a8ae2ef43b901",
                    "image_width": 1024,
                    "image_height": 664,
                    "answers": answers,
                    "question_id": 34602,
                    "set_name": "val",
                }
            ],
        },
    )
    ocr = write_json(
        tmp_path / "TextVQA_Rosetta_OCR_v0.2_val.json",
        {"data": [{"image_id": "003a8ae2ef43b901", "ocr_tokens": ["NOKIA", "5800"], "ocr_info": []}]},
    )
    assert rows(load_textvqa(path, tmp_path / "train_images", ocr_json=ocr)) == [
        {
            "id": "34602",
            "source": "textvqa",
            "task": "vqa",
            "image": str(tmp_path / "train_images" / "003a8ae2ef43b901.jpg"),
            "image_size": [664, 1024],
            "question": "what brand is the phone?",
            "answer": "nokia",
            "answers": answers,
            "ocr_tokens": ["NOKIA", "5800"],
        }
    ]


def test_textvqa_answers_required_except_in_test(tmp_path):
    record = {"question": "what?", "image_id": "ab", "question_id": 1}
    path = write_json(tmp_path / "val.json", {"dataset_type": "val", "data": [record]})
    with pytest.raises(ValueError) as error:
        load_textvqa(path, tmp_path)
    assert_names(str(error.value), str(path), "row 0", "(id '1')", "'answers' is missing")
    path = write_json(tmp_path / "test.json", {"dataset_type": "test", "data": [record]})
    row = load_textvqa(path, tmp_path)[0]
    assert row["answer"] is None and row["answers"] is None and row["ocr_tokens"] is None


def test_vsr_rows_with_bool_answers(tmp_path):
    path = write_lines(
        tmp_path / "test.jsonl",
        [
            json.dumps(
                {
                    "image": "000000050403.jpg",
                    "caption": "The bear is in front of the person.",
                    "label": 1,
                    "relation": "in front of",
                }
            ),
            "",
            json.dumps(
                {"image": "000000001.jpg", "caption": "The cat is under the table.", "label": 0, "relation": "under"}
            ),
        ],
    )
    dataset = load_vsr(path, tmp_path / "images")
    assert rows(dataset) == [
        {
            "id": "0",
            "source": "vsr",
            "task": "image_text_match",
            "image": str(tmp_path / "images" / "000000050403.jpg"),
            "caption": "The bear is in front of the person.",
            "answer": True,
            "relation": "in front of",
        },
        {
            "id": "2",
            "source": "vsr",
            "task": "image_text_match",
            "image": str(tmp_path / "images" / "000000001.jpg"),
            "caption": "The cat is under the table.",
            "answer": False,
            "relation": "under",
        },
    ]
    assert build_prompt(dataset[1]).target == "False." + EOS


def test_pope_rows(tmp_path):
    path = write_lines(
        tmp_path / "coco_pope_adversarial.json",
        [
            json.dumps(
                {
                    "question_id": 1,
                    "image": "COCO_val2014_000000310196.jpg",
                    "text": "Is there a snowboard in the image?",
                    "label": "yes",
                }
            ),
            json.dumps(
                {
                    "question_id": 2,
                    "image": "COCO_val2014_000000310196.jpg",
                    "text": "Is there a dog in the image?",
                    "label": "No",
                }
            ),
        ],
    )
    dataset = load_pope(path, tmp_path)
    assert rows(dataset)[1] == {
        "id": "2",
        "source": "pope",
        "task": "vqa",
        "image": str(tmp_path / "COCO_val2014_000000310196.jpg"),
        "question": "Is there a dog in the image?",
        "answer": "no",
    }
    assert dataset["answer"] == ["yes", "no"]


def test_ai2d_rows_with_sorted_ocr_and_id_selection(tmp_path):
    root = ai2d_folder(tmp_path)
    dataset = load_ai2d(root, root / "images")
    image = str(root / "images" / "0.png")
    ocr = [["A", "sun"], ["B", "moon"]]  # sorted by label; the entry with empty text is left out
    assert rows(dataset) == [
        {
            "id": "0.png-0",
            "source": "ai2d",
            "task": "multiple_choice",
            "image": image,
            "question": "Which label is the sun?",
            "choices": ["A", "B", "C", "D"],
            "answer": 2,
            "ocr": ocr,
            "keep_case": True,
        },
        {
            "id": "0.png-1",
            "source": "ai2d",
            "task": "multiple_choice",
            "image": image,
            "question": "What eats grass?",
            "choices": ["cow", "lion", "hawk"],
            "answer": 0,
            "ocr": ocr,
            "keep_case": True,
        },
        {
            "id": "10.png-0",
            "source": "ai2d",
            "task": "multiple_choice",
            "image": str(root / "images" / "10.png"),
            "question": "What is shown?",
            "choices": ["a leaf", "a root"],
            "answer": 1,
            "ocr": [],
            "keep_case": True,
        },
    ]
    assert "\nOCR text:\nA: sun\nB: moon" in build_prompt(dataset[0], normalize_text="keep_case").text
    ids_file = tmp_path / "ai2d_test_ids.csv"
    ids_file.write_text("10\n", encoding="utf-8")
    assert load_ai2d(root, root, ids=ids_file)["id"] == ["10.png-0"]
    assert load_ai2d(root, root, exclude_ids=ids_file)["id"] == ["0.png-0", "0.png-1"]
    assert load_ai2d(root, root, ids=[0], with_ocr=False)["ocr"] == [None, None]


def test_visual7w_telling_options_shuffled_deterministically(tmp_path):
    path = v7w_telling(tmp_path)
    unshuffled = load_visual7w(path, tmp_path, "telling", shuffle_seed=None)
    assert rows(unshuffled)[0] == {
        "id": "11",
        "source": "visual7w_telling",
        "task": "multiple_choice",
        "image": str(tmp_path / "v7w_5.jpg"),
        "question": "What is on the table?",
        "choices": ["A cup.", "A dog.", "A car.", "A tree."],
        "answer": 0,
    }
    shuffled = load_visual7w(path, tmp_path, split="train")
    assert rows(shuffled) == rows(load_visual7w(path, tmp_path, split="train"))
    for row, original in zip(rows(shuffled), rows(unshuffled)):
        assert row["choices"][row["answer"]] == original["choices"][0]
        assert sorted(row["choices"]) == sorted(original["choices"])
    assert len(load_visual7w(path, tmp_path, split="test")) == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        load_visual7w(path, tmp_path, "grounding")


def test_visual7w_pointing_boxes_clamped_and_clipped(tmp_path):
    path = v7w_pointing(tmp_path)
    write_png(tmp_path / "images" / "v7w_5.png", size=(60, 50))
    dataset = load_visual7w(path, tmp_path / "images", "pointing", shuffle_seed=None)
    # XYWH -> XYXY; the negative x is clamped to 0 (the reference's quirk); the image size is unknown.
    assert rows(dataset) == [
        {
            "id": "21",
            "source": "visual7w_pointing",
            "task": "multiple_choice",
            "image": str(tmp_path / "images" / "v7w_5.png"),
            "image_size": None,
            "question": "Which is the cup?",
            "choices": [[0.0, 10.0, 15.0, 40.0], [0.0, 0.0, 10.0, 10.0], [50.0, 40.0, 70.0, 60.0]],
            "answer": 0,
        }
    ]
    checked = load_visual7w(path, tmp_path / "images", "pointing", shuffle_seed=None, check_images=True)
    assert checked["image_size"] == [[50, 60]]
    assert checked["choices"][0][2] == [50.0, 40.0, 60.0, 50.0]
    assert build_prompt(checked[0]).text.endswith("C: [0.83,0.80,1.00,1.00].\nAnswer: A." + EOS)


# Every loaded row builds a prompt


def test_build_prompt_accepts_every_loaded_row(tmp_path):
    write_png(tmp_path / "images" / "v7w_5.png", size=(60, 50))
    questions, annotations = vqav2_files(tmp_path)
    refs, instances = refcoco_files(tmp_path)
    vsr = write_lines(
        tmp_path / "vsr.jsonl", [json.dumps({"image": "1.jpg", "caption": "A cat on a mat.", "label": 1})]
    )
    pope = write_lines(
        tmp_path / "pope.json",
        [json.dumps({"question_id": 1, "image": "1.jpg", "text": "Is there a cat?", "label": "yes"})],
    )
    gqa = write_json(tmp_path / "gqa.json", {"1": {"imageId": "n1", "question": "Is it red?", "answer": "no"}})
    textvqa = write_json(
        tmp_path / "textvqa.json",
        {"dataset_type": "val", "data": [{"question": "what?", "image_id": "a", "question_id": 1, "answers": ["x"]}]},
    )
    datasets = [
        load_llava(write_json(tmp_path / "llava.json", llava_records()), tmp_path),
        load_llava(write_json(tmp_path / "pretrain.json", pretrain_records()), tmp_path, as_captioning=True),
        load_coco_captions(karpathy(tmp_path), tmp_path, "train"),
        load_coco_captions(karpathy(tmp_path), tmp_path, "test"),
        load_vqav2(questions, annotations, tmp_path),
        load_gqa(gqa, tmp_path),
        load_refcoco(refs, instances, tmp_path, "train"),
        load_refcoco(refs, instances, tmp_path, "testA"),
        load_textvqa(textvqa, tmp_path),
        load_vsr(vsr, tmp_path),
        load_pope(pope, tmp_path),
        load_ai2d(ai2d_folder(tmp_path), tmp_path),
        load_visual7w(v7w_telling(tmp_path), tmp_path, "telling"),
        load_visual7w(v7w_pointing(tmp_path), tmp_path / "images", "pointing", check_images=True),
    ]
    count = 0
    for dataset in datasets:
        for index, row in enumerate(rows(dataset)):
            prompt = build_prompt(row, index=index)
            assert prompt.target.endswith(EOS)
            assert prompt.text.startswith(build_prompt(row, for_generation=True).text)
            count += 1
    assert count == 23
    # Without check_images, pointing rows get the image size from the image the collator opens; their boxes are not
    # clipped to it (the size is unknown at load time), so a box past the border fails there.
    inside = load_visual7w(v7w_pointing(tmp_path / "inside", car=(50, 40, 10, 10)), tmp_path / "images", "pointing")
    letter = "ABC"[inside[0]["answer"]]
    assert build_prompt({**inside[0], "image": open_image(inside[0]["image"])}).target == f"{letter}." + EOS
    past = load_visual7w(v7w_pointing(tmp_path), tmp_path / "images", "pointing")[0]
    with pytest.raises(ValueError, match="lies outside the 60x50"):
        build_prompt({**past, "image": open_image(past["image"])})


# Malformed rows: errors name the file, the row and the field


def malformed_cases(tmp_path):
    """(load, file, expected parts of the message) per source."""
    llava = llava_records()
    llava[1]["conversations"][1]["value"] = 5
    llava_path = write_json(tmp_path / "llava.json", llava)

    questions, annotations = vqav2_files(
        tmp_path,
        questions=[{"image_id": 1, "question": "Why?", "question_id": 10}, {"image_id": 2, "question_id": 11}],
        annotations=[{"question_id": n, "answers": [{"answer": "yes"}]} for n in (10, 11)],
    )
    orphan_questions, orphan_annotations = vqav2_files(
        tmp_path / "orphan", questions=[{"image_id": 1, "question": "Why?", "question_id": 99}]
    )
    refs, instances = refcoco_files(tmp_path, bbox=(10, 20, -3, 40))
    unknown_refs, unknown_instances = refcoco_files(
        tmp_path / "unknown",
        refs=[{"ref_id": 3, "ann_id": 100, "image_id": 9, "split": "train", "sentences": [{"raw": "a", "sent_id": 1}]}],
    )
    karpathy_path = write_json(
        tmp_path / "karpathy.json",
        {"images": [{"cocoid": 5, "split": "test", "sentences": [{"raw": "A cat."}], "filepath": "val2014"}]},
    )
    gqa = write_json(tmp_path / "gqa.json", {"7": {"imageId": "n1", "question": "Is it?", "answer": 3}})
    vsr = write_lines(tmp_path / "vsr.jsonl", [json.dumps({"image": "a.jpg", "caption": "x", "label": 1}), "{oops"])
    pope = write_lines(
        tmp_path / "pope.jsonl", [json.dumps({"question_id": 4, "image": "a.jpg", "text": "Is it?", "label": "maybe"})]
    )
    ai2d = ai2d_folder(tmp_path)
    question_file = ai2d / "questions" / "10.png.json"
    write_json(
        question_file,
        {"imageName": "10.png", "questions": {"What?": {"answerTexts": ["a"], "correctAnswer": 3, "questionId": "q"}}},
    )
    pointing = v7w_pointing(tmp_path, answer=77)
    telling = v7w_telling(
        tmp_path, qa_pairs=[{"qa_id": 1, "question": "What?", "answer": "A.", "multiple_choices": "B"}]
    )
    return [
        (load_llava, (llava_path, tmp_path), {}, llava_path, ["row 1", "(id '7')", "'conversations[1].value'"]),
        (load_vqav2, (questions, annotations, tmp_path), {}, questions, ["row 1", "(id '11')", "'question'"]),
        (
            load_vqav2,
            (orphan_questions, orphan_annotations, tmp_path),
            {},
            orphan_questions,
            ["row 0", "(id '99')", "'question_id'", str(orphan_annotations)],
        ),
        (
            load_refcoco,
            (refs, instances, tmp_path, "train"),
            {},
            refs,
            ["row 0", "(id '0')", "annotations[id=100].bbox", "negative width or height"],
        ),
        (
            load_refcoco,
            (unknown_refs, unknown_instances, tmp_path, "train"),
            {},
            unknown_refs,
            ["row 0", "(id '3')", "'image_id'", "9 is not an image id"],
        ),
        (
            load_coco_captions,
            (karpathy_path, tmp_path, "test"),
            {},
            karpathy_path,
            ["row 0", "(id '5')", "'filename' is missing"],
        ),
        (load_gqa, (gqa, tmp_path), {}, gqa, ["row 0", "(id '7')", "'answer' must be a non-empty string, got 3"]),
        (load_vsr, (vsr, tmp_path), {}, vsr, ["row 1", "is not valid JSON"]),
        (load_pope, (pope, tmp_path), {}, pope, ["row 0", "(id '4')", "'label' must be 'yes' or 'no'"]),
        (
            load_ai2d,
            (ai2d, tmp_path),
            {},
            question_file,
            ["row 0", "(id 'q')", "correctAnswer", "is 3, but there are 1"],
        ),
        (
            load_visual7w,
            (pointing, tmp_path, "pointing"),
            {},
            pointing,
            ["row 0", "(id '5')", "'qa_pairs[0].answer'", "box 77"],
        ),
        (
            load_visual7w,
            (telling, tmp_path),
            {},
            telling,
            ["row 0", "(id '5')", "'qa_pairs[0].multiple_choices' must be a list"],
        ),
    ]


def test_malformed_rows_raise_naming_file_row_and_field(tmp_path):
    cases = malformed_cases(tmp_path)
    assert len(cases) == 12
    for load, args, kwargs, path, parts in cases:
        with pytest.raises(ValueError) as error:
            load(*args, **kwargs)
        assert_names(str(error.value), str(path), *parts)


def test_skip_bad_on_every_malformed_case(tmp_path, caplog):
    for load, args, kwargs, path, parts in malformed_cases(tmp_path):
        report = []
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vlmamba.data"):
            dataset = load(*args, **kwargs, skip_bad=True, report=report)
        assert isinstance(dataset, Dataset)
        assert len(report) == 1, report
        assert set(report[0]) == {"file", "row", "reason"}
        assert report[0]["file"] == str(path)
        assert_names(report[0]["reason"], *parts)
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1 and "skipped 1 malformed record(s)" in warnings[0], warnings


def test_skip_bad_keeps_the_good_rows(tmp_path, caplog):
    records = llava_records() * 2 + [
        {"id": "x", "conversations": []},
        {"id": "y", "image": 3, "conversations": llava_records()[1]["conversations"]},
        ["not", "a", "dict"],
    ]
    path = write_json(tmp_path / "llava.json", records)
    report = []
    with caplog.at_level(logging.WARNING, logger="vlmamba.data"):
        dataset = load_llava(path, tmp_path, skip_bad=True, report=report)
    assert dataset["id"] == ["a1", "7", "a1", "7"]
    assert [(entry["file"], entry["row"]) for entry in report] == [(str(path), 4), (str(path), 5), (str(path), 6)]
    assert "'conversations' is empty" in report[0]["reason"]
    assert "'image' must be a non-empty string, got 3" in report[1]["reason"]
    assert "must be a dict" in report[2]["reason"]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 malformed record(s)" in warnings[0].getMessage()


def test_skip_bad_counts_vqav2_annotations_and_questions(tmp_path):
    questions, annotations = vqav2_files(
        tmp_path,
        annotations=[
            {"question_id": 42000, "answers": [{"answer": "food"}]},
            {"question_id": 73001, "answers": [{"answer": ""}]},
        ],
    )
    report = []
    dataset = load_vqav2(questions, annotations, tmp_path, skip_bad=True, report=report)
    assert dataset["id"] == ["42000"]
    assert [(entry["file"], entry["row"]) for entry in report] == [(str(annotations), 1), (str(questions), 1)]


# Images


def test_check_images_missing_and_corrupt(tmp_path, caplog):
    write_png(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"this is not a png")
    records = [
        {
            "id": "ok",
            "image": "good.png",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}],
        },
        {"id": "gone", "image": "missing.png", "conversations": llava_records()[1]["conversations"]},
        {"id": "bad", "image": "corrupt.png", "conversations": llava_records()[1]["conversations"]},
    ]
    path = write_json(tmp_path / "llava.json", records)
    assert len(load_llava(path, tmp_path)) == 3  # images are not opened without check_images
    with pytest.raises(ValueError) as error:
        load_llava(path, tmp_path, check_images=True)
    assert_names(str(error.value), str(path), "row 1", "(id 'gone')", "'image'", str(tmp_path / "missing.png"))
    report = []
    with caplog.at_level(logging.WARNING, logger="vlmamba.data"):
        dataset = load_llava(path, tmp_path, check_images=True, skip_bad=True, report=report)
    assert dataset["id"] == ["ok"]
    assert [entry["row"] for entry in report] == [1, 2]
    assert "does not exist" in report[0]["reason"]
    assert_names(report[1]["reason"], "cannot be read", str(tmp_path / "corrupt.png"))
    assert sum(record.levelno == logging.WARNING for record in caplog.records) == 1


def test_check_images_compares_the_annotated_size(tmp_path):
    refs, instances = refcoco_files(tmp_path)
    write_png(tmp_path / "COCO_train2014_000000000001.jpg", size=(100, 80))
    assert len(load_refcoco(refs, instances, tmp_path, "train", check_images=True)) == 2
    write_png(tmp_path / "COCO_train2014_000000000001.jpg", size=(80, 100))
    with pytest.raises(ValueError, match=r"is 80x100 \(width x height\) but the annotations say 100x80"):
        load_refcoco(refs, instances, tmp_path, "train", check_images=True)


def _unnormalized_mean(processor, image) -> float:
    """Mean of the processor's pixel values of `image`, back in [0, 1]."""
    pixels = processor.image_processor([image], return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    return float((pixels * std + mean).mean())


def test_open_image_gives_the_pixels_the_processor_documents(tmp_path):
    processor = make_processor()
    gray = open_image(write_png(tmp_path / "gray.png", size=(5, 4), mode="L"))
    assert gray.size == (5, 4)
    # A 16-bit ramp is scaled to 8 bits (mean 0.5), not clipped to white; a transparent image lies on white.
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("LA", (8, 8), (0, 0)).save(tmp_path / "clear_gray.png")
    expected = {"ramp16.png": 0.5, "clear.png": 1.0, "clear_gray.png": 1.0}
    for name, mean in expected.items():
        path = tmp_path / name
        assert _unnormalized_mean(processor, open_image(path)) == pytest.approx(mean, abs=0.01), name
        opened = processor.image_processor([open_image(path)], return_tensors="pt")["pixel_values"]
        assert torch.equal(opened, processor.image_processor([Image.open(path)], return_tensors="pt")["pixel_values"])
        # The processor given the path reads it the same way.
        assert torch.equal(opened, processor.image_processor([str(path)], return_tensors="pt")["pixel_values"])


def test_open_image_errors_name_path_and_row(tmp_path):
    with pytest.raises(ValueError) as error:
        open_image(tmp_path / "missing.png", row=12)
    assert_names(str(error.value), "not found", str(tmp_path / "missing.png"), "row 12")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError) as error:
        open_image(corrupt, row="a1")
    assert_names(str(error.value), "Cannot read image", str(corrupt), "row 'a1'")
    # A valid header with the pixel data cut off fails when the data is read.
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.png"):
        open_image(truncated)
    with pytest.raises(ValueError, match="must be a string or a path"):
        open_image(None, row=3)


# Mixtures


def two_sources(tmp_path):
    vsr = load_vsr(
        write_lines(
            tmp_path / "vsr.jsonl",
            [json.dumps({"image": f"{n}.jpg", "caption": f"Caption {n}.", "label": n % 2}) for n in range(5)],
        ),
        tmp_path,
    )
    pope = load_pope(
        write_lines(
            tmp_path / "pope.jsonl",
            [
                json.dumps({"question_id": n, "image": "p.jpg", "text": f"Is there {n}?", "label": "yes"})
                for n in range(3)
            ],
        ),
        tmp_path,
    )
    return vsr, pope


def test_mixture_follows_weights_and_cycles_sources_evenly(tmp_path):
    vsr, pope = two_sources(tmp_path)
    mixture = mix_sources([(vsr, 3), (pope, 1)], seed=0, num_samples=4000)
    assert len(mixture) == 4000
    counts = Counter(mixture["source"])
    assert abs(counts["vsr"] - 3000) < 120 and counts["vsr"] + counts["pope"] == 4000
    # Each source's rows are used in reshuffled rounds, so their counts differ by at most one.
    for source in ("vsr", "pope"):
        per_row = Counter(row_id for row_id, name in zip(mixture["id"], mixture["source"]) if name == source)
        assert max(per_row.values()) - min(per_row.values()) <= 1


def test_mixture_is_deterministic_by_seed(tmp_path):
    vsr, pope = two_sources(tmp_path)
    first = mix_sources([(vsr, 1), (pope, 1)], seed=3, num_samples=50)
    again = mix_sources([(vsr, 1), (pope, 1)], seed=3, num_samples=50)
    other = mix_sources([(vsr, 1), (pope, 1)], seed=4, num_samples=50)
    pairs = lambda dataset: list(zip(dataset["source"], dataset["id"]))  # noqa: E731
    assert pairs(first) == pairs(again)
    assert pairs(first) != pairs(other)
    assert len(mix_sources([(vsr, 1), (pope, 1)], seed=0)) == 8  # the sources' total by default


def test_mixture_unifies_columns_and_keeps_each_rows_types(tmp_path):
    vsr, pope = two_sources(tmp_path)
    refs, instances = refcoco_files(tmp_path)
    refcoco = load_refcoco(refs, instances, tmp_path, "train")
    ai2d = load_ai2d(ai2d_folder(tmp_path), tmp_path)
    mixture = mix_sources([(vsr, 1), (pope, 1), (refcoco, 1), (ai2d, 1)], seed=1, num_samples=200)
    expected = set(vsr.column_names) | set(pope.column_names) | set(refcoco.column_names) | set(ai2d.column_names)
    assert set(mixture.column_names) == expected
    seen = set()
    for index, row in enumerate(rows(mixture)):
        seen.add(row["source"])
        if row["source"] == "vsr":
            assert isinstance(row["answer"], bool) and row["question"] is None and row["box"] is None
        elif row["source"] == "pope":
            assert row["answer"] == "yes" and row["relation"] is None and row["choices"] is None
        elif row["source"] == "refcoco":
            assert row["answer"] is None and row["box"] == [10.0, 20.0, 40.0, 60.0] and row["image_size"] == [80, 100]
        else:
            assert isinstance(row["answer"], int) and not isinstance(row["answer"], bool)
            assert row["choices"][row["answer"]] in ("C", "cow", "a root")
        build_prompt(row, index=index)
    assert seen == {"vsr", "pope", "refcoco", "ai2d"}


def test_mixture_of_same_types_keeps_the_types(tmp_path):
    questions, annotations = vqav2_files(tmp_path)
    vqav2 = load_vqav2(questions, annotations, tmp_path)
    _, pope = two_sources(tmp_path)
    mixture = mix_sources([(vqav2, 1), (pope, 1)], seed=0, num_samples=20)
    assert mixture.features["answer"] == vqav2.features["answer"]
    assert {row["answers"] is None for row in rows(mixture) if row["source"] == "pope"} == {True}


def test_mixture_rejects_bad_weights(tmp_path):
    vsr, pope = two_sources(tmp_path)
    assert set(mix_sources([(vsr, 1), (pope, 0)], seed=0, num_samples=30)["source"]) == {"vsr"}
    for pairs, message in (
        ([(vsr, -1)], "finite number >= 0"),
        ([(vsr, 0), (pope, 0)], "All weights are 0"),
        ([vsr], "must be a \\(Dataset, weight\\) pair"),
        ([], "is empty"),
        ([(vsr.select([]), 1)], "Dataset 0 is empty"),
    ):
        with pytest.raises(ValueError, match=message):
            mix_sources(pairs, seed=0, num_samples=10)
    with pytest.raises(ValueError, match="num_samples"):
        mix_sources([(vsr, 1)], seed=0, num_samples=0)


# Bad files: named, nothing dropped


def test_json_lines_keep_records_holding_unicode_line_separators(tmp_path):
    questions = ["Is there a dog\u2028in the image?", "Is there a cat\u2029here?", "A sign\u0085saying?", "Plain?"]
    records = [{"question_id": n, "image": "a.jpg", "text": text, "label": "yes"} for n, text in enumerate(questions)]
    # Written raw, as `json.dumps(ensure_ascii=False)` writes them; one malformed record after them.
    path = write_lines(tmp_path / "pope.json", [json.dumps(r, ensure_ascii=False) for r in records] + ["{broken"])
    report = []
    dataset = load_pope(path, tmp_path, skip_bad=True, report=report)
    assert dataset["id"] == ["0", "1", "2", "3"]
    assert len(dataset["question"]) == 4 and dataset["question"][3] == "Plain?"
    # The bad record is named by its real line: the fifth.
    assert [entry["row"] for entry in report] == [4]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=5), st.one_of(st.text(), st.integers(), st.none()), max_size=3),
                max_size=6))
def test_json_lines_reader_returns_every_record_it_is_given(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("jsonl") / "records.jsonl"
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    assert _read_json_lines(path) == list(enumerate(records))


def test_files_that_are_not_utf8_or_not_pickles_are_named(tmp_path):
    path = tmp_path / "pope.json"
    path.write_bytes(b'{"question_id": 1, "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"pope.json: not UTF-8 text \(byte 31"):
        load_pope(path, tmp_path)
    refs, instances = refcoco_files(tmp_path)
    Path(refs).write_bytes(Path(refs).read_bytes()[:20])
    with pytest.raises(ValueError, match=r"refs.*: not a readable refs pickle"):
        load_refcoco(refs, instances, tmp_path, "train")
