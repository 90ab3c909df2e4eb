"""The reference data mode: box arithmetic, AI2D case, Visual7W boxes, per-image packing, the loaders of the rest of
the paper's stage-2 mixture, and the mixture file."""

import inspect
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as parquet
import pytest
from PIL import Image

import vlmamba.data
from tests.test_data import EOS, refcoco_files, rows, v7w_pointing, v7w_telling, vqav2_files, write_json, write_png
from tests.tiny import make_processor, make_tokenizer
from vlmamba.data import (
    SOURCES,
    load_ai2d,
    load_aokvqa,
    load_docvqa,
    load_gqa,
    load_grit,
    load_infovqa,
    load_ocrvqa,
    load_refcoco,
    load_source,
    load_visual7w,
    load_visual_genome,
    load_vqav2,
    mix_sources,
)
from vlmamba.data.collator import VLMambaDataCollator
from vlmamba.models.boxes import REFERENCE_IMAGE_SIZE, BoxFormat, format_box, normalize_box
from vlmamba.models.tasks import build_prompt
from vlmamba.toy import tiny_processor


REFERENCE = BoxFormat(reference_size=REFERENCE_IMAGE_SIZE)
RECIPES = Path(__file__).resolve().parent.parent / "training" / "recipes"


def reference_text(value: float, size: float) -> str:
    """The reference's arithmetic, written out: scale to the 336 px input, divide by 336, two decimals."""
    return f"{(value * (336 / size)) / 336:.2f}"


# Box text


@pytest.mark.parametrize("width", [640, 480])
def test_reference_box_text_is_the_reference_formula_and_differs_from_the_direct_one(width):
    differing = 0
    for x in range(width + 1):
        box = (x, 0, x, 0)
        written = format_box(normalize_box(box, (width, width), reference_size=336), REFERENCE)
        assert written == "[" + ",".join(reference_text(value, width) for value in box) + "]"
        direct = format_box(normalize_box(box, (width, width)))
        assert direct == "[" + ",".join(f"{value / width:.2f}" for value in box) + "]"
        differing += written != direct
    # The measurement: 0.9% (W = 640) and 1.9% (W = 480) of integer coordinates.
    assert differing / (width + 1) == pytest.approx({640: 0.0094, 480: 0.0187}[width], abs=5e-4)


def test_build_prompt_writes_pixel_boxes_with_the_format_s_arithmetic():
    # 48 / 640 = 0.075 sits on a rounding tie, which the two ways of computing it break differently.
    example = {"task": "grounding", "image_size": (480, 640), "expression": "the cup", "box": [48, 0, 100, 6]}
    direct = build_prompt(example).target
    reference = build_prompt(example, box_format=REFERENCE).target
    assert direct == "[0.07,0.00,0.16,0.01]." + EOS
    assert reference == f"[{reference_text(48, 640)},0.00,{reference_text(100, 640)},{reference_text(6, 480)}]." + EOS
    assert reference == "[0.08,0.00,0.16,0.01]." + EOS
    assert reference != direct


def test_reference_format_writes_boxes_past_the_border_as_they_are():
    example = {"task": "grounding", "image_size": (50, 60), "expression": "car", "box": [50, 40, 70, 50]}
    assert build_prompt(example, box_format=REFERENCE).target == "[0.83,0.80,1.17,1.00]." + EOS
    with pytest.raises(ValueError, match="lies outside the 60x50"):
        build_prompt(example)
    with pytest.raises(ValueError, match="lies outside"):
        normalize_box([-1, 0, 5, 5], (50, 60), reference_size=336)


@pytest.mark.parametrize("size", [0, -3, True, 1.5])
def test_reference_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match="reference_size must be a positive image size"):
        BoxFormat(reference_size=size)


# AI2D case


def test_collator_keeps_the_case_of_keep_case_rows_only(tmp_path):
    processor = make_processor()
    image = Image.new("RGB", (8, 8))
    row = {
        "task": "multiple_choice",
        "image": image,
        "question": "Which label is B?",
        "choices": ["A", "B"],
        "answer": 1,
    }
    collator = VLMambaDataCollator(processor)
    tokenizer = processor.tokenizer

    def text(example):
        return tokenizer.decode([i for i in collator.encode(example)["input_ids"] if i >= 0], skip_special_tokens=True)

    assert "Question: Which label is B?" in text({**row, "keep_case": True})
    assert "Question: Which label is b?" in text(row)


def test_ai2d_rows_keep_their_case_unless_asked(tmp_path):
    from tests.test_data import ai2d_folder

    root = ai2d_folder(tmp_path)
    assert set(load_ai2d(root, root / "images")["keep_case"]) == {True}
    assert set(load_ai2d(root, root / "images", keep_case=False)["keep_case"]) == {False}


# Visual7W


def pointing_image(tmp_path):
    write_png(tmp_path / "images" / "v7w_5.png", size=(60, 50))


def test_visual7w_reference_boxes_clamp_the_corner_and_never_clip(tmp_path):
    pointing_image(tmp_path)
    path = v7w_pointing(tmp_path, car=(50, 40, 70, 20))
    dataset = load_visual7w(
        path, tmp_path / "images", "pointing", shuffle_seed=None, reference_boxes=True, check_images=True
    )
    # x2 = max(0, x) + min(W, w), y2 = max(0, y) + min(H, h), written out for each box.
    expected = []
    for x, y, w, h in [(-5, 10, 20, 30), (0, 0, 10, 10), (50, 40, 70, 20)]:
        x1, y1 = max(0, x), max(0, y)
        expected.append([x1, y1, x1 + min(60, w), y1 + min(50, h)])
    assert dataset["choices"][0] == expected
    assert expected[2] == [50, 40, 110, 60]
    assert build_prompt(dataset[0], box_format=REFERENCE).text.endswith("C: [0.83,0.80,1.83,1.20].\nAnswer: A." + EOS)
    with pytest.raises(ValueError, match="reference_boxes needs check_images=True"):
        load_visual7w(path, tmp_path / "images", "pointing", reference_boxes=True)


def test_visual7w_docstring_no_longer_says_clipping_is_the_reference():
    assert "clipped to the image, as in the reference" not in load_visual7w.__doc__


def telling_qa(qa_id, question):
    return {"qa_id": qa_id, "question": question, "answer": f"right{qa_id}", "multiple_choices": ["x", "y", "z"]}


def test_visual7w_pack_puts_every_question_at_every_answer_position_three_per_row(tmp_path):
    qa_pairs = [telling_qa(n, f"Question {n}?") for n in range(4)]
    path = v7w_telling(tmp_path, qa_pairs=qa_pairs)
    packed = load_visual7w(path, tmp_path, "telling", pack=True, shuffle_seed=None)
    # 4 positions x (3 + 1 questions): rows of 3 then 1, per position.
    assert [len(row["question"]) for row in rows(packed)] == [3, 1] * 4
    seen = {}
    for row in rows(packed):
        for question, choices, answer in zip(row["question"], row["choices"], row["answer"]):
            number = int(question.split()[1][:-1])
            wrong = ["x", "y", "z"]
            # The reference's options: the answer inserted at position `answer` of the wrong choices.
            assert choices == wrong[:answer] + [f"right{number}"] + wrong[answer:]
            seen.setdefault(number, []).append(answer)
    assert {number: sorted(positions) for number, positions in seen.items()} == {n: [0, 1, 2, 3] for n in range(4)}
    shuffled = load_visual7w(path, tmp_path, "telling", pack=True)
    assert rows(shuffled) == rows(load_visual7w(path, tmp_path, "telling", pack=True))
    assert rows(shuffled) != rows(packed)
    prompt = build_prompt(packed[0])
    assert prompt.text.count(EOS) == 3 and prompt.text.count("\nQuestion: ") == 3


def test_visual7w_pack_needs_as_many_choices_per_question(tmp_path):
    qa_pairs = [telling_qa(1, "One?"), {**telling_qa(2, "Two?"), "multiple_choices": ["x"]}]
    path = v7w_telling(tmp_path, qa_pairs=qa_pairs)
    with pytest.raises(ValueError, match=r"dataset_v7w_telling.json: row 0 .*different numbers of choices"):
        load_visual7w(path, tmp_path, "telling", pack=True)


# Packing


def test_vqav2_pack_groups_an_image_s_questions_in_rows_of_max_per_row(tmp_path):
    questions = [{"question_id": n, "image_id": 1 + n // 5, "question": f"Q{n}?"} for n in range(8)]
    annotations = [{"question_id": n, "answers": [{"answer": f"a{n}"}]} for n in range(8)]
    paths = vqav2_files(tmp_path, questions=questions, annotations=annotations)
    single = load_vqav2(*paths, tmp_path)
    packed = load_vqav2(*paths, tmp_path, pack=True, max_per_row=2)
    assert [row["question"] for row in rows(packed)] == [
        ["Q0?", "Q1?"],
        ["Q2?", "Q3?"],
        ["Q4?"],
        ["Q5?", "Q6?"],
        ["Q7?"],
    ]
    assert packed[0]["answer"] == ["a0", "a1"] and packed[0]["id"].endswith("-0")
    assert "answers" not in packed.column_names
    # A packed row is the single rows' turns after one instruction.
    first, second = build_prompt(single[0]).segments, build_prompt(single[1]).segments
    assert build_prompt(packed[0]).segments == first + second[2:]
    assert len(load_vqav2(*paths, tmp_path, pack=True)) == 2  # up to 20 per row, the reference's
    with pytest.raises(ValueError, match="pack needs annotations_json"):
        load_vqav2(paths[0], None, tmp_path, pack=True)
    with pytest.raises(ValueError, match="max_per_row must be a positive integer"):
        load_vqav2(*paths, tmp_path, pack=True, max_per_row=0)


def test_gqa_pack_groups_by_image_even_when_not_adjacent(tmp_path):
    questions = {
        "q1": {"imageId": "n1", "question": "One?", "answer": "a"},
        "q2": {"imageId": "n2", "question": "Two?", "answer": "b"},
        "q3": {"imageId": "n1", "question": "Three?", "answer": "c"},
    }
    path = write_json(tmp_path / "gqa.json", questions)
    packed = load_gqa(path, tmp_path, pack=True)
    assert [(row["id"], row["question"], row["answer"]) for row in rows(packed)] == [
        ("n1-0", ["One?", "Three?"], ["a", "c"]),
        ("n2-0", ["Two?"], ["b"]),
    ]


def test_refcoco_pack_puts_every_object_of_an_image_with_its_last_sentence_in_one_row(tmp_path):
    def ref(ref_id, ann_id, *sentences, split="train"):
        return {
            "ref_id": ref_id,
            "ann_id": ann_id,
            "image_id": 1,
            "split": split,
            "sentences": [{"raw": text} for text in sentences],
        }

    # Object 100 is named by two refs (the later one's last sentence counts), object 102 by one; ref 3 is testA.
    refs = [
        ref(0, 100, "left dog", "dog"),
        ref(1, 102, "cat"),
        ref(2, 100, "brown dog"),
        ref(3, 102, "x", split="testA"),
    ]
    refs_path, instances = refcoco_files(tmp_path, refs=refs)
    data = json.loads(instances.read_text())
    data["annotations"].append({"id": 102, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 1})
    instances.write_text(json.dumps(data))
    packed = load_refcoco(refs_path, instances, tmp_path, "train", pack=True)
    assert rows(packed) == [
        {
            "id": "COCO_train2014_000000000001-0",
            "source": "refcoco",
            "task": "grounding",
            "image": str(tmp_path / "COCO_train2014_000000000001.jpg"),
            "image_size": [80, 100],
            "expressions": ["brown dog", "cat"],
            "boxes": [[10.0, 20.0, 40.0, 60.0], [1.0, 2.0, 4.0, 6.0]],
        }
    ]
    prompt = build_prompt(packed[0])
    assert prompt.text.count(EOS) == 2 and "\nBrown dog.\n" in prompt.text and "\nCat.\n" in prompt.text


# A-OKVQA


def aokvqa_file(tmp_path, **changes):
    record = {
        "question_id": "q1",
        "image_id": 42,
        "question": "What is the man holding?",
        "choices": ["bat", "ball", "glove", "cap"],
        "correct_choice_idx": 2,
        **changes,
    }
    return write_json(tmp_path / "aokvqa_v1p0_train.json", [record])


def test_aokvqa_rows_and_the_reference_s_swap_augmentation(tmp_path):
    path = aokvqa_file(tmp_path)
    assert rows(load_aokvqa(path, tmp_path)) == [
        {
            "id": "q1",
            "source": "aokvqa",
            "task": "multiple_choice",
            "image": str(tmp_path / "000000000042.jpg"),
            "question": "What is the man holding?",
            "choices": ["bat", "ball", "glove", "cap"],
            "answer": 2,
        }
    ]
    augmented = load_aokvqa(path, tmp_path, augment=True)
    assert augmented["choices"] == [
        ["glove", "ball", "bat", "cap"],
        ["bat", "glove", "ball", "cap"],
        ["bat", "ball", "glove", "cap"],
        ["bat", "ball", "cap", "glove"],
    ]
    assert augmented["answer"] == [0, 1, 2, 3]
    assert build_prompt(augmented[1]).target == "B." + EOS


def test_aokvqa_bad_rows_name_file_and_row(tmp_path):
    with pytest.raises(ValueError, match=r"aokvqa_v1p0_train.json: row 0 \(id 'q1'\): field 'correct_choice_idx' is 9"):
        load_aokvqa(aokvqa_file(tmp_path, correct_choice_idx=9), tmp_path)
    with pytest.raises(ValueError, match=r"row 0 \(id 'q1'\): field 'correct_choice_idx' is missing"):
        load_aokvqa(aokvqa_file(tmp_path, correct_choice_idx=None), tmp_path, augment=True)


# OCR-VQA


def ocrvqa_file(tmp_path):
    def record(url, split, questions):
        return {"imageURL": url, "questions": questions, "answers": [f"A {q}" for q in questions], "split": split}

    data = {
        "b1": record("http://x/images/I/b1.jpg", 1, ["Who wrote it?", "Title?"]),
        "b2": record("http://x/images/I/shared.jpg", 1, ["Genre?"]),
        "b3": record("http://x/images/I/shared.jpg", 1, ["Year?"]),
        "b4": record("http://x/images/I/b4.jpg", 3, ["Test?"]),
    }
    return write_json(tmp_path / "dataset.json", data)


def test_ocrvqa_rows_split_names_and_the_reference_s_filters(tmp_path, caplog):
    path = ocrvqa_file(tmp_path)
    single = load_ocrvqa(path, tmp_path)
    assert single["id"] == ["b1-0", "b1-1", "b2-0", "b3-0"]
    assert single["image"][0] == str(tmp_path / "b1.jpg")
    assert load_ocrvqa(path, tmp_path, image_names="id")["image"][0] == str(tmp_path / "b1.jpg")
    assert load_ocrvqa(path, tmp_path, image_names="id")["image"][2] == str(tmp_path / "b2.jpg")
    assert load_ocrvqa(path, tmp_path, "test")["id"] == ["b4-0"]
    packed = load_ocrvqa(path, tmp_path, pack=True, drop_shared_images=True)
    assert rows(packed) == [
        {
            "id": "b1",
            "source": "ocrvqa",
            "task": "vqa",
            "image": str(tmp_path / "b1.jpg"),
            "question": ["Who wrote it?", "Title?"],
            "answer": ["A Who wrote it?", "A Title?"],
        }
    ]
    keep = write_json(tmp_path / "keep.json", {"http://x/images/I/b1.jpg": False, "http://x/images/I/shared.jpg": True})
    assert load_ocrvqa(path, tmp_path, keep_images_json=keep)["id"] == ["b2-0", "b3-0"]
    partial = write_json(tmp_path / "partial.json", {"http://x/images/I/b1.jpg": True})
    with pytest.raises(ValueError, match=r"dataset.json: row 1 \(id 'b2'\): field 'imageURL'.* is not in"):
        load_ocrvqa(path, tmp_path, keep_images_json=partial)
    with pytest.raises(ValueError, match="split must be one of"):
        load_ocrvqa(path, tmp_path, "dev")


# DocVQA, InfographicVQA


def docvqa_file(tmp_path, name="train_v1.0_withQT.json", image_field="image", **changes):
    data = [
        {
            "questionId": 1,
            "question": "what is the date?",
            image_field: "documents/p1.png",
            "answers": ["1 May", "1 May", "May"],
        },
        {"questionId": 2, "question": "Who signed?", image_field: "documents/p1.png", "answers": ["J. Smith"]},
        {
            "questionId": 3,
            "question": "What is the Total?",
            image_field: "documents/p2.png",
            "answers": ["$5"],
            **changes,
        },
    ]
    return write_json(tmp_path / name, {"dataset_name": "docvqa", "data": data})


def test_docvqa_rows_keep_case_and_pack_by_page(tmp_path):
    path = docvqa_file(tmp_path)
    single = load_docvqa(path, tmp_path)
    assert rows(single)[0] == {
        "id": "1",
        "source": "docvqa",
        "task": "vqa",
        "image": str(tmp_path / "documents" / "p1.png"),
        "question": "What is the date?",
        "answer": "1 May",
        "answers": ["1 May", "1 May", "May"],
        "keep_case": True,
    }
    packed = load_docvqa(path, tmp_path, pack=True)
    assert [(row["id"], row["question"]) for row in rows(packed)] == [
        ("p1-0", ["What is the date?", "Who signed?"]),
        ("p2-0", ["What is the Total?"]),
    ]
    processor = make_processor()
    text = processor.tokenizer.decode(
        VLMambaDataCollator(processor).encode({**packed[1], "image": Image.new("RGB", (8, 8))})["input_ids"][-40:]
    )
    assert "What is the Total?" in text and "$5." in text


def test_infovqa_keeps_the_question_as_written(tmp_path):
    path = docvqa_file(tmp_path, "infographicsVQA_train_v1.0.json", image_field="image_local_name")
    dataset = load_infovqa(path, tmp_path)
    assert dataset["question"][0] == "what is the date?"
    assert dataset["image"][0] == str(tmp_path / "documents" / "p1.png")
    assert dataset["source"][0] == "infovqa"


def test_docvqa_bad_rows_name_file_and_row(tmp_path):
    with pytest.raises(ValueError, match=r"train_v1.0_withQT.json: row 2 \(id '3'\): field 'answers' is empty"):
        load_docvqa(docvqa_file(tmp_path, answers=[]), tmp_path)


# Visual Genome


def visual_genome_files(tmp_path):
    regions = [
        {
            "id": 1,
            "regions": [
                {"region_id": 10, "image_id": 1, "phrase": "a red kite", "x": -3, "y": 5, "width": 40, "height": 20},
                {"region_id": 11, "image_id": 1, "phrase": "the sky", "x": 0, "y": 0, "width": 200, "height": 100},
                {"region_id": 12, "image_id": 1, "phrase": "a kid", "x": 90, "y": 50, "width": 20, "height": 30},
            ],
        },
        {
            "id": 2,
            "regions": [{"region_id": 20, "image_id": 2, "phrase": "a cat", "x": 1, "y": 1, "width": 5, "height": 5}],
        },
    ]
    qas = [{"id": 1, "qas": [{"qa_id": 5, "image_id": 1, "question": "What flies?", "answer": "A kite."}]}]
    image_data = [
        {"image_id": 1, "width": 100, "height": 60, "url": "https://cs.stanford.edu/VG_100K/1.jpg", "coco_id": None},
        {"image_id": 2, "width": 50, "height": 50, "url": "https://cs.stanford.edu/VG_100K_2/2.jpg", "coco_id": 77},
    ]
    return (
        write_json(tmp_path / "region_descriptions.json", regions),
        write_json(tmp_path / "question_answers.json", qas),
        write_json(tmp_path / "image_data.json", image_data),
    )


def test_visual_genome_regions_filtered_by_area_grouped_and_boxed(tmp_path):
    regions, qas, image_data = visual_genome_files(tmp_path)
    dataset = load_visual_genome(regions, image_data, tmp_path, max_per_row=1)
    # The 200 x 100 sky is over the 16384 px^2 limit; the kite (x = -3) ends at 37 and the kid is clipped to the
    # image.
    assert [(row["id"], row["expressions"], row["boxes"]) for row in rows(dataset)] == [
        ("1-0", ["a red kite"], [[0.0, 5.0, 37.0, 25.0]]),
        ("1-1", ["a kid"], [[90.0, 50.0, 100.0, 60.0]]),
        ("2-0", ["a cat"], [[1.0, 1.0, 6.0, 6.0]]),
    ]
    assert dataset["image"][2] == str(tmp_path / "VG_100K_2" / "2.jpg")
    assert dataset["image_size"][0] == [60, 100]
    reference = load_visual_genome(regions, image_data, tmp_path, reference_boxes=True, max_area=None)
    # x2 = max(0, x) + w, unclipped, as the reference.
    assert reference["boxes"][0] == [[0.0, 5.0, 40.0, 25.0], [0.0, 0.0, 200.0, 100.0], [90.0, 50.0, 110.0, 80.0]]
    held_out = load_visual_genome(regions, image_data, tmp_path, "dense_captioning", exclude_coco_ids=[77])
    assert held_out["id"] == ["1-0"] and held_out["phrases"] == [["a red kite", "a kid"]]
    assert build_prompt(held_out[0]).text.count(EOS) == 1
    questions = load_visual_genome(qas, image_data, tmp_path, "vqa")
    assert rows(questions)[0]["question"] == ["What flies?"] and questions[0]["answer"] == ["A kite."]


def test_visual_genome_excludes_karpathy_val_images(tmp_path):
    regions, _, image_data = visual_genome_files(tmp_path)
    karpathy = write_json(tmp_path / "dataset_coco.json", {"images": [{"cocoid": 77, "split": "val"}]})
    assert load_visual_genome(regions, image_data, tmp_path, exclude_coco_ids=karpathy)["id"] == ["1-0"]


def test_visual_genome_bad_rows_name_file_and_row(tmp_path):
    regions, _, image_data = visual_genome_files(tmp_path)
    data = json.loads(regions.read_text())
    data[1]["regions"][0]["width"] = "wide"
    regions.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"region_descriptions.json: row 1 \(id '2'\): field 'regions\[0\].width'"):
        load_visual_genome(regions, image_data, tmp_path)


# GRIT


def grit_record(key="000000001", **changes):
    return {
        "key": key,
        "caption": "a dog on a red sofa",
        "width": 200,
        "height": 100,
        "noun_chunks": [
            [0, 5, 0.1, 0.2, 0.5, 0.9, 0.8],
            [11, 19, 0.0, 0.5, 1.0, 1.0, 0.7],
            [0, 5, 0.6, 0.2, 0.7, 0.4, 0.5],
        ],
        **changes,
    }


def test_grit_from_sidecars_jsonl_and_parquet_give_the_same_rows(tmp_path):
    folder = tmp_path / "grit" / "00000"
    write_json(folder / "000000001.json", grit_record())
    write_png(folder / "000000001.jpg", size=(200, 100))
    from_folder = load_grit(tmp_path / "grit", check_images=True)
    lines = tmp_path / "grit.jsonl"
    lines.write_text(json.dumps(grit_record()) + "\n")
    from_lines = load_grit(lines, folder)
    table = pa.Table.from_pylist([grit_record()])
    parquet.write_table(table, tmp_path / "grit.parquet")
    from_parquet = load_grit(tmp_path / "grit.parquet", folder)
    assert rows(from_folder) == rows(from_lines) == rows(from_parquet)
    row = rows(from_folder)[0]
    assert row["image"] == str(folder / "000000001.jpg")
    assert row["entities"] == [
        {"span": [0, 5], "boxes": [[20.0, 20.0, 100.0, 90.0], [120.0, 20.0, 140.0, 40.0]]},
        {"span": [11, 19], "boxes": [[0.0, 50.0, 200.0, 100.0]]},
    ]
    assert build_prompt(row).target == (
        # The caption starts with a marker, so the reference's capitalization leaves it lower-case.
        "||a dog [0.10,0.20,0.50,0.90][0.60,0.20,0.70,0.40]|| on a ||red sofa [0.00,0.50,1.00,1.00]||." + EOS
    )


def test_grit_bad_records_name_file_and_row(tmp_path):
    lines = tmp_path / "grit.jsonl"
    overlapping = grit_record(noun_chunks=[[0, 5, 0, 0, 1, 1, 1], [2, 9, 0, 0, 1, 1, 1]])
    lines.write_text(json.dumps(grit_record()) + "\n" + json.dumps(overlapping) + "\n")
    with pytest.raises(ValueError, match=r"grit.jsonl: row 1 \(id '000000001'\): field 'noun_chunks' have overlapping"):
        load_grit(lines, tmp_path)
    report = []
    assert len(load_grit(lines, tmp_path, skip_bad=True, report=report)) == 1 and len(report) == 1
    with pytest.raises(ValueError, match="needs image_root"):
        load_grit(lines)


# The mixture file


def test_the_paper_mixture_file_names_registered_sources_with_their_loaders_arguments():
    spec = json.loads((RECIPES / "data" / "paper_stage2_mixture.json").read_text())
    names = {item["name"] for item in spec["sources"]}
    assert names >= {"aokvqa", "ocrvqa", "docvqa", "infovqa", "visual_genome", "grit", "vqav2", "gqa", "refcoco"}
    assert {item["weight"] for item in spec["sources"]} == {"rows"}
    # The reference adds RefCOCO, RefCOCO+ and RefCOCOg twice.
    assert sum(item["name"] == "refcocog" for item in spec["sources"]) == 2
    for item in spec["sources"]:
        # Presets (`refcoco+`) wrap a public loader of the same name.
        loader = getattr(vlmamba.data, SOURCES[item["name"]].__name__)
        inspect.signature(loader).bind(**item["kwargs"])


def test_the_paper_recipes_use_the_reference_s_loss_and_stage_2_clipping(tmp_path):
    from vlmamba.training import parse_args

    for stage, clipping in ((1, 1.0), (2, 0.0)):
        model_args, data_args, training_args = parse_args(
            ["--config", str(RECIPES / f"stage{stage}.json"), "--output_dir", str(tmp_path)]
        )
        assert model_args.loss_reduction == "sample"
        assert data_args.box_normalization == "reference"
        # ZeRO-2's "auto" clipping is max_grad_norm (1.0); the stage-2 ZeRO-3 config has none (0 turns it off).
        assert training_args.max_grad_norm == clipping


def test_rows_weights_concatenate_every_row_exactly_once():
    from datasets import Dataset

    first = Dataset.from_dict({"id": [f"a{n}" for n in range(5)]})
    second = Dataset.from_dict({"id": [f"b{n}" for n in range(3)]})
    mixture = mix_sources([(first, "rows"), (second, "rows"), (second, "rows")], seed=3)
    assert sorted(mixture["id"]) == sorted(list(first["id"]) + list(second["id"]) * 2)
    assert mixture["id"] != sorted(mixture["id"])
    assert mixture["id"] == mix_sources([(first, "rows"), (second, "rows"), (second, "rows")], seed=3)["id"]
    # Mixed with a numeric weight, "rows" is the dataset's length as a weight.
    assert len(mix_sources([(first, "rows"), (second, 1.0)], seed=0, num_samples=40)) == 40
    with pytest.raises(ValueError, match="must be a finite number >= 0 or 'rows'"):
        mix_sources([(first, "lines")], seed=0)


def test_load_source_reaches_the_new_loaders(tmp_path):
    assert len(load_source("aokvqa", json_path=aokvqa_file(tmp_path), image_root=tmp_path)) == 1


def test_a_processor_with_a_reference_box_format_writes_the_collator_s_targets_the_reference_way(tmp_path):
    # The processor owns the box format: one built for the paper's 336 px models with the reference's arithmetic.
    processor = tiny_processor(make_tokenizer(), image_size=336, patch_size=14, box_normalization="reference")
    assert processor.box_format == REFERENCE
    example = {
        "task": "grounding",
        "image": Image.new("RGB", (640, 480)),
        "expression": "the cup",
        "box": [48, 0, 100, 6],
    }
    labels = [i for i in VLMambaDataCollator(processor).encode(example)["labels"] if i != -100]
    assert processor.tokenizer.decode(labels) == "[0.08,0.00,0.16,0.01]." + EOS


def test_packed_and_single_rows_mix(tmp_path):
    questions = [{"question_id": n, "image_id": 1, "question": f"Q{n}?"} for n in range(3)]
    annotations = [{"question_id": n, "answers": [{"answer": f"a{n}"}]} for n in range(3)]
    paths = vqav2_files(tmp_path, questions=questions, annotations=annotations)
    packed = load_vqav2(*paths, tmp_path, pack=True)
    single = load_gqa(
        write_json(tmp_path / "gqa.json", {"q": {"imageId": "n1", "question": "Q?", "answer": "a"}}), tmp_path
    )
    mixture = mix_sources([(packed, "rows"), (single, "rows")], seed=0)
    assert sorted(json.dumps(row["question"]) for row in mixture) == sorted(['["Q0?", "Q1?", "Q2?"]', '"Q?"'])
    for row in mixture:
        assert build_prompt(row).text.count(EOS) == (3 if isinstance(row["question"], list) else 1)


def test_the_reference_box_normalization_is_saved_with_the_processor(tmp_path):
    from transformers import AutoProcessor

    processor = tiny_processor(make_tokenizer(), image_size=336, patch_size=14, box_normalization="reference")
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.box_normalization == "reference" and loaded.box_format == REFERENCE
    assert tiny_processor(make_tokenizer(), image_size=336, patch_size=14).box_format.reference_size is None
    with pytest.raises(ValueError, match="box_normalization must be one of direct, reference"):
        tiny_processor(make_tokenizer(), box_normalization="pixels")
