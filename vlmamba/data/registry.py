# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The registry of sources: `SOURCES` maps each source name of the package docstring's table to its loader
(`llava_pretrain`, `refcoco+` and `refcocog` are loaders with other defaults), and `load_source` loads a source by
name, as a training mixture's spec does."""

from collections.abc import Callable

from datasets import Dataset

from .captions import load_coco_captions, load_llava, load_nocaps, load_textcaps
from .choice import load_ai2d, load_aokvqa, load_visual7w, load_vsr
from .referring import load_refcoco
from .regions import load_grit, load_visual_genome
from .vl_benchmarks import load_mmbench, load_mme, load_scienceqa
from .vqa import load_docvqa, load_gqa, load_infovqa, load_ocrvqa, load_pope, load_textvqa, load_vqav2


def _preset(loader: Callable, **defaults) -> Callable:
    def load(*args, **kwargs):
        return loader(*args, **{**defaults, **kwargs})

    load.__name__ = loader.__name__
    load.__doc__ = f"`{loader.__name__}` with the defaults {defaults}."
    return load


SOURCES = {
    "llava": load_llava,
    "llava_pretrain": _preset(load_llava, as_captioning=True),
    "coco_captions": load_coco_captions,
    "nocaps": load_nocaps,
    "textcaps": load_textcaps,
    "vqav2": load_vqav2,
    "gqa": load_gqa,
    "refcoco": load_refcoco,
    "refcoco+": _preset(load_refcoco, source="refcoco+"),
    "refcocog": _preset(load_refcoco, source="refcocog"),
    "textvqa": load_textvqa,
    "vsr": load_vsr,
    "pope": load_pope,
    "ai2d": load_ai2d,
    "visual7w": load_visual7w,
    "aokvqa": load_aokvqa,
    "ocrvqa": load_ocrvqa,
    "docvqa": load_docvqa,
    "infovqa": load_infovqa,
    "visual_genome": load_visual_genome,
    "grit": load_grit,
    "scienceqa": load_scienceqa,
    "mme": load_mme,
    "mmbench": load_mmbench,
}


def load_source(name: str, **kwargs) -> Dataset:
    """Loads the source `name` of `SOURCES` with its loader's keyword arguments (paths included)."""
    if name not in SOURCES:
        raise ValueError(f"Unknown source {name!r}; known sources: {sorted(SOURCES)}.")
    return SOURCES[name](**kwargs)


__all__ = [
    "SOURCES",
    "load_source",
]
