# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Model cards (`README.md` with Hub metadata) for saved Mamba-VL / Pythia-VL folders, through `huggingface_hub`."""

from dataclasses import asdict, is_dataclass
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData


_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

## Architecture

| part | |
|---|---|
| language model | {{ text_type }}, {{ text_layers }} layers, width {{ text_width }} |
| vision tower | {{ vision_type }} |
| connector | {{ connector }} |
| image block | {{ image_tokens }} patch tokens ({{ grid }} grid, a separator after each row, begin/end markers) |
| layout | {{ layout }} |
| boxes | {{ boxes }} |
| parameters | {{ parameters }} |

## Use

```python
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{{ repo }}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{{ repo }}", trust_remote_code=True)
```

With `vlmamba` installed (`import vlmamba`), `trust_remote_code` is not needed. Boxes in generated text are parsed
with `processor.post_process_grounding(generated_ids, image_sizes=[(height, width)])`.
{% if training %}
## Training

{{ training }}
{% endif %}{% if results %}
## Evaluation

{{ results }}
{% endif %}"""


def write_model_card(
    folder,
    model,
    processor,
    title: str,
    description: str | None = None,
    training: dict | None = None,
    config=None,
    scores: dict | None = None,
    blind: dict | None = None,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
) -> Path:
    """Writes `folder/README.md`: Hub metadata, the architecture, how to load it, and training and evaluation facts.

    `training` is `quickstart.train`'s output (seconds, losses) and `config` the run's settings (a dataclass
    or dict); `scores` / `blind` are `quickstart.score` dicts (percentages) with the true and swapped images.
    """
    folder = Path(folder)
    config_dict = asdict(config) if is_dataclass(config) else dict(config or {})
    model_config = model.config
    text_config = model_config.text_config
    family = "mamba-vl" if text_config.model_type == "mamba" else "pythia-vl"
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        license="apache-2.0",
        tags=["vlmamba", family, "vision-language", "custom_code"],
        datasets=datasets,
    )
    layout = processor.image_layout()
    patch = layout["patch_size"]
    side = layout["image_size"]
    grid = f"{side // patch}x{side // patch}"
    training_text = None
    if training is not None:
        settings = ", ".join(
            f"{key} {value}" for key, value in config_dict.items()
            if key in ("steps", "batch_size", "learning_rate", "train_scenes", "seed")
        )
        losses = training.get("losses") or []
        curve = f" Loss {losses[0]} -> {losses[-1]}." if losses else ""
        training_text = (
            f"Trained from scratch with `transformers.Trainer` on synthetic shapes scenes (`vlmamba.data.shapes`): "
            f"{settings}; every parameter trained, {training.get('seconds')} s on CPU.{curve}"
        )
    results_text = None
    if scores is not None:
        lines = ["Held-out scenes; percentages. *Blind*: the same model with every image replaced by another "
                 "scene's image.", "", "| task | score | blind |", "|---|---|---|"]
        for task, label in (("captioning", "captioning (exact match)"), ("captioning_cider", "captioning (CIDEr)"),
                            ("vqa", "VQA accuracy"),
                            ("grounding", "grounding (IoU > 0.5)")):
            blind_value = blind.get(task) if blind else None
            lines.append(f"| {label} | {scores[task]} | {'' if blind_value is None else blind_value} |")
        results_text = "\n".join(lines)
    vision_config = model_config.vision_config
    vision_type = getattr(vision_config, "architecture", None) or vision_config.model_type
    overrides = getattr(vision_config, "model_args", None)
    if overrides:
        vision_type += " (" + ", ".join(f"{key} {value}" for key, value in sorted(overrides.items())) + ")"
    card = ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        title=title,
        description=description
        or f"A {family} vision-language model: vision tower, two-layer MLP connector and a "
        f"{text_config.model_type} language model, in the Hugging Face Transformers format of `vlmamba`.",
        text_type=text_config.model_type,
        text_layers=text_config.num_hidden_layers,
        text_width=text_config.hidden_size,
        vision_type=vision_type,
        connector=getattr(model_config, "connector_type", "mlp"),
        image_tokens=(side // patch) ** 2,
        grid=grid,
        layout="instruction before the image (task-aware)" if processor.instruction_first else "image first",
        boxes=(f"location tokens, {processor.location_bins} bins" if processor.location_bins
               else "text `[x1,y1,x2,y2]`, normalized, 2 decimals"),
        parameters=f"{sum(p.numel() for p in model.parameters()):,}",
        repo=repo_id or f"path/to/{folder.name}",
        training=training_text,
        results=results_text,
    )
    path = folder / "README.md"
    card.save(path)
    return path


__all__ = ["write_model_card"]
