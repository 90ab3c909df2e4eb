# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Offline demo: tiny Mamba-VL and Pythia-VL saved as Hub folders and reloaded as remote code in a fresh process."""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.image_processing_vlmamba import open_image
from ..models.processing_vlmamba import generate_answers
from ..toy import tiny_model, tiny_processor
from .remote_check import generate_without_vlmamba


def generate_in_fresh_process(model_dir, image_path, prompt: str, max_new_tokens: int = 8) -> dict:
    """Loads `model_dir` with `trust_remote_code=True` in a new Python process without vlmamba and generates greedily
    for one image and prompt. Returns the loaded class name and module, the new token ids and their text."""
    image_path = Path(image_path)
    with Image.open(image_path) as image:
        size = [image.height, image.width]
    example = {"image": str(image_path), "prompt": prompt, "image_size": size, "max_new_tokens": max_new_tokens}
    result = generate_without_vlmamba(model_dir, [example], Path(model_dir).parent, batch_size=1,
                                      desc=Path(model_dir).name)
    output = result["outputs"][0]
    return {"class": result["class"], "module": result["module"], "tokens": output["tokens"], "text": output["text"]}


def demo_image(size: int = 96, seed: int = 0) -> Image.Image:
    """A small synthetic picture: a coloured square on a light background."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size, size, 3), 230, dtype=np.uint8)
    x, y = rng.integers(0, size // 2, size=2)
    pixels[y : y + size // 3, x : x + size // 3] = rng.integers(0, 255, size=3, dtype=np.uint8)
    return Image.fromarray(pixels)


def run_demo(output_dir: str | os.PathLike, max_new_tokens: int = 8) -> list[dict]:
    """Builds, saves, reloads and runs a tiny model of each family; returns one result row per family."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    image_path = output_dir / "demo.png"
    demo_image().save(image_path)
    prompt = "<image>Provide a one-sentence caption for the provided image.\n"
    rows = []
    for family in ("mamba", "pythia"):
        torch.manual_seed(0)
        processor = tiny_processor()
        model = tiny_model(family, processor)
        folder = output_dir / f"{family}-vl-tiny"
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        local = generate_answers(model.eval(), processor, [{"image": str(image_path), "prompt": prompt}],
                                 max_new_tokens=max_new_tokens)[0]
        remote = generate_in_fresh_process(folder, image_path, prompt, max_new_tokens)
        rows.append(
            {
                "family": family,
                "folder": str(folder),
                "parameters": sum(p.numel() for p in model.parameters()),
                "prompt_tokens": len(processor(images=[open_image(image_path)], text=[prompt])["input_ids"][0]),
                "remote_class": remote["class"],
                "same_tokens": remote["tokens"] == local["tokens"],
                "text": remote["text"],
            }
        )
    return rows


__all__ = ["run_demo", "generate_in_fresh_process", "demo_image"]
