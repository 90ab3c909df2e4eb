# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Captioning and chat loaders: LLaVA conversations (`load_llava`, also LLaVA-Pretrain as captioning), COCO captions in
Karpathy's splits (`load_coco_captions`), and the captioning evaluation sets NoCaps (`load_nocaps`, any COCO-format
caption file) and TextCaps (`load_textcaps`). `skip_bad`, `report` and `check_images` ("see the module docstring" in
the loaders) work as the package docstring, `vlmamba.data`, describes under "Bad input"."""

import os
from collections import Counter
from collections.abc import Mapping

from datasets import Dataset, Value

from .records import _Collector, _columns, _read_json, _read_json_lines, _Record, _top_list


KARPATHY_SPLITS = ("train", "restval", "val", "test")


# LLaVA


def load_llava(
    json_path,
    image_root,
    *,
    as_captioning: bool = False,
    source: str | None = None,
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """LLaVA-format conversations: a JSON list of `{"id", "image" (optional), "conversations": [{"from", "value"}]}`.

    Args:
        json_path: the JSON file (a JSON Lines file is read too).
        image_root: the folder the `image` paths are relative to.
        as_captioning: LLaVA-Pretrain (558K): every record is one human prompt and one gpt caption and becomes a
            `captioning` row with the human text as `prompt` (its `<image>` tag is removed by `build_prompt`).
            Otherwise (665K, 150K) every record is a `chat` row.
        source: the `source` column; `"llava_pretrain"` with `as_captioning`, else `"llava"`.
        skip_bad, report, check_images: see the module docstring.

    Returns:
        A `Dataset` with `id`, `source`, `task`, `image` (`None` for text-only records) and `prompt`, `caption`
        (captioning) or `conversations` (chat). A record without `id` gets its row number.
    """
    if not isinstance(as_captioning, bool):
        raise ValueError(f"as_captioning must be a bool, got {as_captioning!r}.")
    source = source if source is not None else ("llava_pretrain" if as_captioning else "llava")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    if str(json_path).endswith(".jsonl"):
        records = _read_json_lines(json_path)
    else:
        records = list(enumerate(_read_json(json_path, list, "a JSON list of conversations")))

    def parse(record: _Record) -> list[dict]:
        identifier = record.get("id", "id", required=False)
        record.set_id(record.index if identifier is None else identifier)
        image = record.get("image", "text", required=False)
        turns = record.get("conversations", "list")
        if not turns:
            record.fail("conversations", "is empty")
        conversation = []
        for position, turn in enumerate(turns):
            label = f"conversations[{position}]"
            record.check(label, turn, "mapping")
            role = record.get("from", "text", turn, f"{label}.from")
            if role not in ("human", "gpt"):
                record.fail(f"{label}.from", f"must be 'human' or 'gpt', got {role!r}")
            conversation.append({"from": role, "value": record.get("value", "text", turn, f"{label}.value")})
        if conversation[0]["from"] != "human":
            record.fail("conversations[0].from", "must be 'human': a conversation starts with the human")
        if conversation[-1]["from"] != "gpt":
            record.fail(f"conversations[{len(conversation) - 1}].from", "must be 'gpt': a conversation ends with it")
        row = {"id": record.id, "source": source, "image": None if image is None else record.image(image)}
        if not as_captioning:
            return [{**row, "task": "chat", "conversations": conversation}]
        if len(conversation) != 2:
            record.fail(
                "conversations",
                f"must be one human prompt and one gpt caption (as_captioning=True), got {len(conversation)} turns",
            )
        return [{**row, "task": "captioning", "prompt": conversation[0]["value"], "caption": conversation[1]["value"]}]

    rows = []
    for index, data in records:
        rows.extend(collector.parse(index, data, parse) or [])
    names = ("prompt", "caption") if as_captioning else ("conversations",)
    return collector.finish(rows, _columns("id", "source", "task", "image", *names))


# COCO captions (Karpathy splits)


def load_coco_captions(
    karpathy_json,
    image_root,
    split: str,
    *,
    include_restval: bool = True,
    source: str = "coco_captions",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """COCO captions in Karpathy's splits (`dataset_coco.json`: `images`, each with `filepath`, `filename`,
    `cocoid`, `split` and `sentences` holding `raw` captions).

    Args:
        karpathy_json: the Karpathy JSON file.
        image_root: the folder holding `filepath/filename` (e.g. the folder of `train2014/` and `val2014/`).
        split: `"train"`, `"restval"`, `"val"` or `"test"`.
        include_restval: `"train"` includes the restval images, as the reference trains on train + restval.
        source, skip_bad, report, check_images: see the module docstring.

    Returns:
        For train and restval, one `captioning` row per caption (`id`: the sentence id). For val and test, one row
        per image (`id`: the COCO id) with all captions in `references` and the first in `caption`.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {KARPATHY_SPLITS}, got {split!r}.")
    collector = _Collector(karpathy_json, source, image_root, skip_bad, report, check_images)
    images = _top_list(_read_json(karpathy_json, dict, "a JSON object with an 'images' list"), "images", karpathy_json)
    wanted = {split, "restval"} if split == "train" and include_restval else {split}
    per_caption = split in ("train", "restval")
    seen = set()

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        identifier = record.get("cocoid", "id", required=False)
        record.set_id(identifier if identifier is not None else record.get("imgid", "id"))
        image_split = record.get("split", "text")
        seen.add(image_split)
        if image_split not in wanted:
            return []
        folder = record.get("filepath", "string", required=False) or ""
        path = record.image(os.path.join(folder, record.get("filename", "text")))
        sentences = record.get("sentences", "list")
        if not sentences:
            record.fail("sentences", "is empty")
        captions, sentence_ids = [], []
        for position, sentence in enumerate(sentences):
            label = f"sentences[{position}]"
            record.check(label, sentence, "mapping")
            captions.append(record.get("raw", "text", sentence, f"{label}.raw"))
            sentence_id = record.get("sentid", "id", sentence, f"{label}.sentid", required=False)
            sentence_ids.append(f"{record.id}-{position}" if sentence_id is None else str(sentence_id))
        row = {"source": source, "task": "captioning", "image": path}
        if per_caption:
            return [{**row, "id": key, "caption": caption} for key, caption in zip(sentence_ids, captions)]
        return [{**row, "id": record.id, "caption": captions[0], "references": captions}]

    rows = []
    for index, data in enumerate(images):
        rows.extend(collector.parse(index, data, parse) or [])
    if not seen & wanted:
        raise ValueError(f"{karpathy_json}: no image is in split {split!r}; the file has {sorted(seen)}.")
    names = ("caption",) if per_caption else ("caption", "references")
    return collector.finish(rows, _columns("id", "source", "task", "image", *names))


# NoCaps and TextCaps (captioning evaluation)


def load_nocaps(
    json_path,
    image_root,
    *,
    source: str = "nocaps",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """NoCaps, or any caption file in the COCO format: `images` (`id`, `file_name`, and optionally `height`,
    `width` and NoCaps' `domain`) and `annotations` (`image_id`, `caption`), e.g. `nocaps_val_4500_captions.json`.

    Args:
        json_path: the COCO-format JSON file. A file without `annotations` (`nocaps_test_image_info.json`) gives rows
            without captions, for generation.
        image_root: the folder of the images' `file_name`.
        source, skip_bad, report, check_images: see the module docstring. The unit of a bad record is an image
            entry (row: its position in `images`) or a caption (row: its position in `annotations`, file named
            `{json_path} annotations`).

    Returns:
        One `captioning` row per image (`id`: the image id) with `references` (its captions in file order),
        `caption` (the first), `image_size` (when the file gives it) and `domain` (NoCaps' `in-domain`,
        `near-domain` or `out-domain`; `None` elsewhere).
    """
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a COCO-format JSON object with 'images' and 'annotations' lists")
    images = _top_list(data, "images", json_path)
    has_captions = data.get("annotations") is not None
    image_ids = {str(image.get("id")) for image in images if isinstance(image, Mapping)}
    captions: dict[str, list[str]] = {}
    if has_captions:
        annotations_file = f"{json_path} annotations"

        def parse_annotation(record: _Record):
            identifier = record.get("id", "id", required=False)
            record.set_id(record.index if identifier is None else identifier)
            image_id = str(record.get("image_id", "id"))
            if image_id not in image_ids:
                record.fail("image_id", f"{image_id} is not the id of an entry of 'images'")
            return image_id, record.get("caption", "text")

        for index, entry in enumerate(_top_list(data, "annotations", json_path)):
            parsed = collector.parse(index, entry, parse_annotation, file=annotations_file)
            if parsed is not None:
                captions.setdefault(parsed[0], []).append(parsed[1])

    def parse(record: _Record) -> list[dict]:
        record.mapping()
        image_id = record.set_id(record.get("id", "id"))
        width = record.get("width", "integer", required=False)
        height = record.get("height", "integer", required=False)
        image_size = [height, width] if width is not None and height is not None else None
        row = {
            "id": image_id,
            "source": source,
            "task": "captioning",
            "image": record.image(record.get("file_name", "text"), field="file_name", expected_size=image_size),
            "image_size": image_size,
            "domain": record.get("domain", "text", required=False),
        }
        if has_captions:
            if image_id not in captions:
                record.fail("id", "has no (readable) caption in 'annotations'")
            row.update(caption=captions[image_id][0], references=captions[image_id])
        return [row]

    rows = []
    for index, entry in enumerate(images):
        rows.extend(collector.parse(index, entry, parse) or [])
    names = ("caption", "references") if has_captions else ()
    columns = _columns("id", "source", "task", "image", "image_size", *names, "domain", domain=Value("string"))
    return collector.finish(rows, columns)


def load_textcaps(
    json_path,
    image_root,
    *,
    per_caption: bool | None = None,
    source: str = "textcaps",
    skip_bad: bool = False,
    report: list | None = None,
    check_images: bool = False,
) -> Dataset:
    """TextCaps: `TextCaps_0.1_{split}.json` (`dataset_type` and `data`, one entry per caption with `image_id`,
    `caption_id`, `caption_str`, `reference_strs` (all captions of the image), `image_width`, `image_height`; the test
    split's entries are images without captions).

    Args:
        json_path: the TextCaps JSON file.
        image_root: the folder of `{image_id}.jpg` (TextVQA's `train_images/` for train and val).
        per_caption: one row per caption (training) rather than per image (evaluation); by default per caption for
            the train split (`dataset_type` `"train"`) only.
        source, skip_bad, report, check_images: see the module docstring. The unit of a bad record is an entry of
            `data`.

    Returns:
        `captioning` rows with `image_size` (when the file gives it). Per caption: `id` the caption id, `caption`.
        Per image: `id` the image id, `references` (the first entry's `reference_strs`, or else the image's
        `caption_str`s in file order) and `caption` (the first reference); no caption in the test split.
    """
    if per_caption is not None and not isinstance(per_caption, bool):
        raise ValueError(f"per_caption must be a bool or None, got {per_caption!r}.")
    collector = _Collector(json_path, source, image_root, skip_bad, report, check_images)
    data = _read_json(json_path, dict, "a JSON object with a 'data' list")
    entries = _top_list(data, "data", json_path)
    if per_caption is None:
        per_caption = data.get("dataset_type") == "train"

    def parse(record: _Record) -> dict:
        record.mapping()
        image_id = str(record.get("image_id", "id"))
        record.set_id(image_id)
        width = record.get("image_width", "integer", required=False)
        height = record.get("image_height", "integer", required=False)
        image_size = [height, width] if width is not None and height is not None else None
        caption = record.get("caption_str", "text", required=per_caption)
        caption_id = record.get("caption_id", "id", required=False)
        references = record.get("reference_strs", "list", required=False)
        if references is not None:
            if not references:
                record.fail("reference_strs", "is empty")
            references = [record.check(f"reference_strs[{n}]", text, "text") for n, text in enumerate(references)]
        return {
            "image_id": image_id,
            "caption_id": None if caption_id is None else str(caption_id),
            "image": record.image(f"{image_id}.jpg", expected_size=image_size),
            "image_size": image_size,
            "caption": caption,
            "references": references,
        }

    parsed = [entry for index, data in enumerate(entries) if (entry := collector.parse(index, data, parse))]
    if per_caption:
        counts = Counter()
        rows = []
        for entry in parsed:
            image_id, caption_id = entry.pop("image_id"), entry.pop("caption_id")
            key = caption_id if caption_id is not None else f"{image_id}-{counts[image_id]}"
            counts[image_id] += 1
            rows.append({"id": key, "source": source, "task": "captioning", **entry})
        return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "caption"))
    by_image: dict[str, list[dict]] = {}
    for entry in parsed:
        by_image.setdefault(entry["image_id"], []).append(entry)
    rows = []
    for image_id, group in by_image.items():
        captions = [entry["caption"] for entry in group if entry["caption"] is not None]
        references = group[0]["references"] or captions or None
        row = {"id": image_id, "source": source, "task": "captioning", "image": group[0]["image"]}
        row.update(image_size=group[0]["image_size"], references=references, caption=references and references[0])
        rows.append(row)
    return collector.finish(rows, _columns("id", "source", "task", "image", "image_size", "caption", "references"))


__all__ = [
    "KARPATHY_SPLITS",
    "load_llava",
    "load_coco_captions",
    "load_nocaps",
    "load_textcaps",
]
