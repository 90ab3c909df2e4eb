# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Mamba-VL and Pythia-VL for Hugging Face Transformers. Importing the package registers them with the Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .builder import PRESETS, build_from_components, build_from_preset, resize_vision_tower
from .models import (
    MambaVLConfig,
    MambaVLForConditionalGeneration,
    MambaVLModel,
    PythiaVLConfig,
    PythiaVLForConditionalGeneration,
    PythiaVLModel,
    VLMambaConfig,
    VLMambaForConditionalGeneration,
    VLMambaImageProcessor,
    VLMambaImageProcessorPil,
    VLMambaModel,
    VLMambaPreTrainedModel,
    VLMambaProcessor,
    generate_answers,
    open_image,
)


__version__ = "0.1.0"


def _register() -> None:
    for config_class, base_class, head_class in (
        (MambaVLConfig, MambaVLModel, MambaVLForConditionalGeneration),
        (PythiaVLConfig, PythiaVLModel, PythiaVLForConditionalGeneration),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, base_class, exist_ok=True)
        AutoModelForImageTextToText.register(config_class, head_class, exist_ok=True)
        # As transformers' own VLMs with a language-model head: text-only use through the causal-LM Auto class.
        AutoModelForCausalLM.register(config_class, head_class, exist_ok=True)
        AutoProcessor.register(config_class, VLMambaProcessor, exist_ok=True)
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={"torchvision": VLMambaImageProcessor, "pil": VLMambaImageProcessorPil},
            exist_ok=True,
        )
        # `save_pretrained` then writes `auto_map` and copies the code files next to the weights.
        config_class.register_for_auto_class()
        head_class.register_for_auto_class("AutoModelForImageTextToText")
        # A headless model saved on its own ships the modeling code too.
        base_class.register_for_auto_class("AutoModel")
    VLMambaProcessor.register_for_auto_class()
    VLMambaImageProcessor.register_for_auto_class()
    VLMambaImageProcessorPil.register_for_auto_class()


_register()

__all__ = [
    "VLMambaConfig",
    "MambaVLConfig",
    "PythiaVLConfig",
    "VLMambaPreTrainedModel",
    "VLMambaModel",
    "VLMambaForConditionalGeneration",
    "MambaVLModel",
    "MambaVLForConditionalGeneration",
    "PythiaVLModel",
    "PythiaVLForConditionalGeneration",
    "VLMambaProcessor",
    "VLMambaImageProcessor",
    "VLMambaImageProcessorPil",
    "PRESETS",
    "build_from_components",
    "build_from_preset",
    "resize_vision_tower",
    "generate_answers",
    "open_image",
]
