# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Training and evaluation data as structured examples: public annotation files on local disk -> `datasets.Dataset`s.

The package's modules: the source loaders by family (`captions`: LLaVA, COCO captions, NoCaps, TextCaps; `vqa`:
VQAv2, GQA, TextVQA, POPE, OCR-VQA, DocVQA, InfographicVQA; `referring`: RefCOCO, RefCOCO+, RefCOCOg; `choice`: VSR,
AI2D, Visual7W, A-OKVQA; `regions`: Visual Genome, GRIT; `vl_benchmarks`: ScienceQA, MME, MMBench, the benchmarks
VL-Mamba reports), the record checks they share (`records`), the registry of sources (`registry`), mixtures
(`mixture`), the one image-reading path (`images`), the synthetic shapes scenes (`shapes`) and the training collator
(`collator`). The public names of the
loaders, the registry, mixtures and `open_image` are importable from `vlmamba.data` itself.

Every row is a structured example as `vlmamba.models.tasks` defines it (`build_prompt` takes it as it is), plus:

- `id`: the record's id in its source (a string), `source`: the source's name (e.g. `"refcoco"`);
- `image`: the image file's path as a string (joined to `image_root`; `None` for LLaVA's text-only rows). Images are
  not opened when loading, only by `open_image` later (the training collator), unless `check_images=True`.

Nothing is downloaded. Boxes are pixel XYXY of the original image and `image_size` is `(height, width)`.

| name | loader | task | rows | split |
|---|---|---|---|---|
| `llava` | `load_llava` | chat | one per record | the file |
| `llava_pretrain` | `load_llava(as_captioning=True)` | captioning, `prompt` = human turn | one per record | the file |
| `coco_captions` | `load_coco_captions` | captioning | train: one per caption; val/test: one per image | `split` |
| `nocaps` | `load_nocaps` | captioning | one per image | the file |
| `textcaps` | `load_textcaps` | captioning | train: one per caption; val/test: one per image | the file |
| `vqav2` | `load_vqav2` | vqa | one per question | the files |
| `gqa` | `load_gqa` | vqa | one per question | the file |
| `refcoco`, `refcoco+`, `refcocog` | `load_refcoco` | grounding | one per sentence | `split` |
| `textvqa` | `load_textvqa` | vqa | one per question | the file |
| `vsr` | `load_vsr` | image_text_match | one per line | the file |
| `pope` | `load_pope` | vqa (yes/no) | one per line | the file (one per subset) |
| `ai2d` | `load_ai2d` | multiple_choice with `ocr` | one per question | `ids` / `exclude_ids` |
| `visual7w` | `load_visual7w` | multiple_choice (pointing: box options) | one per question | `split` |
| `aokvqa` | `load_aokvqa` | multiple_choice | one per question | the file |
| `ocrvqa` | `load_ocrvqa` | vqa | one per question | `split` |
| `docvqa`, `infovqa` | `load_docvqa`, `load_infovqa` | vqa, `keep_case` | one per question | the file |
| `visual_genome` | `load_visual_genome` | grounding, dense_captioning or vqa | up to 10 turns per image | the file |
| `grit` | `load_grit` | grounded_captioning | one per record | the folder or file |
| `scienceqa` | `load_scienceqa` | multiple_choice, hint as context | one per question with an image | `split` |
| `mme` | `load_mme` | vqa (yes/no), `group`: the image | one per question | the folder (14 subtasks) |
| `mmbench` | `load_mmbench` | multiple_choice, `group`: the question | one per CircularEval pass | the file |

Files expected (image file names relative to `image_root`):

- LLaVA: a JSON list of `{"id", "image", "conversations"}`: `llava_v1_5_mix665k.json`, `llava_instruct_150k.json`,
  or LLaVA-Pretrain's `blip_laion_cc_sbu_558k.json`. Images: the records' `image`.
- COCO captions: Karpathy's `dataset_coco.json`; `split` is its `split` field, `"train"` with `restval`. Images:
  `{filepath}/{filename}`. Val/test rows hold all captions in `references`.
- NoCaps: `nocaps_val_4500_captions.json` (or any COCO-format caption file: `images` and `annotations`). Images:
  `file_name`.
- TextCaps: `TextCaps_0.1_{split}.json`. Images: `{image_id}.jpg`.
- VQAv2: `v2_OpenEnded_mscoco_{subtype}_questions.json` and `v2_mscoco_{subtype}_annotations.json` (none for test).
  Images: `COCO_{data_subtype}_{image_id:012d}.jpg`.
- GQA: `{split}_balanced_questions.json`. Images: `{imageId}.jpg`.
- RefCOCO, RefCOCO+, RefCOCOg: `refs(unc).p`, `refs(umd).p` or `refs(google).p` and the `instances.json` next to
  it; `split` is the refs' `split` field (`train`, `val`, `testA`, `testB`, `test`). Images: the instances'
  `file_name`.
- TextVQA: `TextVQA_0.5.1_{split}.json`, optionally a Rosetta OCR JSON. Images: `{image_id}.jpg`.
- VSR: a JSON Lines split file (`image`, `caption`, `label`). Images: `image`.
- POPE: a JSON Lines subset file (`question_id`, `image`, `text`, `label`). Images: `image`.
- AI2D: the folder holding `questions/` and `annotations/` (one `{n}.png.json` per diagram each). Images:
  `imageName`.
- Visual7W: `dataset_v7w_telling.json` or `dataset_v7w_pointing.json` (with a `boxes` list, or
  `v7w_pointing_answers.json`); `split` is the images' `split` field. Images: `filename`.
- A-OKVQA: `aokvqa_v1p0_{split}.json`. Images: `{image_id:012d}.jpg` (COCO 2017).
- OCR-VQA: `dataset.json`; `split` is its `split` field (1, 2, 3 = train, val, test). Images: the last part of
  `imageURL`, or `{id}.jpg`.
- DocVQA: the RRC `{split}_v1.0_withQT.json` / `test_v1.0.json`. Images: `image` (`documents/...`).
  InfographicVQA: `infographicsVQA_{split}_v1.0.json`. Images: `image_local_name`.
- Visual Genome: `region_descriptions.json` or `question_answers.json`, with `image_data.json`. Images: the last
  two parts of the image's `url` (`VG_100K/1.jpg`).
- GRIT: img2dataset's output folder (`{key}.json` next to `{key}.jpg`), or a JSON Lines or parquet file of the same
  records. Images: `{key}.jpg`.
- ScienceQA, MME, MMBench: see `vlmamba.data.vl_benchmarks` (`problems.json` and `pid_splits.json`; the
  `MME_Benchmark_release_version/` folder; a TSV with base64 images, which are written under `image_root`).

Split and row choices where the reference differs or is silent:

- RefCOCO evaluation: one row per sentence, every expression a sample (the standard protocol). The reference evaluates
  one sentence per object (the last); `per_object=True` reproduces that.
- COCO val/test rows also carry the first reference as `caption`, so that they work as loss examples too.
- VQAv2 and TextVQA: `answer` is the most frequent of the annotators' answers (the first one seen among ties).
- Visual7W and AI2D: one question per row, no augmentation (the reference puts the answer at every position for
  training). Visual7W's options are the answer and the wrong choices, shuffled per question by `shuffle_seed`.
  `load_visual7w(pack=True)` and `load_aokvqa(augment=True)` write the reference's augmented training rows.
- Packing (the reference's training rows, several turns about one image in one row, in the multi-turn form of
  `vlmamba.models.tasks`): `pack=True` of `load_vqav2` and `load_gqa` (up to `max_per_row=20` QA pairs),
  `load_refcoco` (every object of the image with its last sentence), `load_visual7w` (3 questions, every answer
  position), `load_ocrvqa`, `load_docvqa` and `load_infovqa` (all questions of the image); Visual Genome rows hold up
  to `max_per_row=10` regions or questions. By default every loader writes one turn per row.
- AI2D, DocVQA and InfographicVQA rows carry `keep_case`: the collator writes them without lower-casing, as the
  reference did.
- Reference boxes: `reference_boxes=True` of `load_visual7w` (pointing) and `load_visual_genome` computes boxes as
  the reference did (corner clamped to 0, far corner not clipped); the box text itself follows the processor's box
  format (`BoxFormat.reference_size`, see `vlmamba.models.boxes`).

Bad input: a malformed record (missing field, wrong type, a box with a negative size, an image or box the other files
do not know, with `check_images=True` a missing or unreadable image) raises a `ValueError` naming the file, the row
(0-based position of the record in its file, the line for JSON Lines), the id and the field. With `skip_bad=True`
the record is skipped instead (all its rows), recorded in `report` as `{"file", "row", "reason"}` and counted in one
logged warning. Only the records of the requested split are checked.
"""

from .captions import KARPATHY_SPLITS, load_coco_captions, load_llava, load_nocaps, load_textcaps
from .choice import VISUAL7W_KINDS, load_ai2d, load_aokvqa, load_visual7w, load_vsr
from .images import open_image
from .mixture import mix_sources
from .records import FIELD_FEATURES
from .referring import load_refcoco
from .regions import VISUAL_GENOME_TASKS, load_grit, load_visual_genome
from .registry import SOURCES, load_source
from .vl_benchmarks import load_mmbench, load_mme, load_scienceqa
from .vqa import load_docvqa, load_gqa, load_infovqa, load_ocrvqa, load_pope, load_textvqa, load_vqav2


__all__ = [
    "FIELD_FEATURES",
    "KARPATHY_SPLITS",
    "VISUAL7W_KINDS",
    "load_llava",
    "load_coco_captions",
    "load_nocaps",
    "load_textcaps",
    "load_vqav2",
    "load_gqa",
    "load_refcoco",
    "load_textvqa",
    "load_vsr",
    "load_pope",
    "load_ai2d",
    "load_visual7w",
    "load_aokvqa",
    "load_ocrvqa",
    "load_docvqa",
    "load_infovqa",
    "load_visual_genome",
    "load_grit",
    "VISUAL_GENOME_TASKS",
    "load_scienceqa",
    "load_mme",
    "load_mmbench",
    "SOURCES",
    "load_source",
    "open_image",
    "mix_sources",
]
