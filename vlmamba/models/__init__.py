# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""What ships with the weights. `save_pretrained` copies these modules next to a checkpoint as its remote code, so
they import each other with single-dot relative imports only and nothing else from vlmamba: configuration,
modeling, processing and image processing (with `generate_answers`, the one inference path, and `open_image`, the one
way image files are read), the task templates (`tasks`), the box text format (`boxes`) and the Mamba kernel dispatch
(`mamba_kernels`, `mamba_inner`, `selective_scan`)."""

from .configuration_vlmamba import MambaVLConfig, PythiaVLConfig, VLMambaConfig
from .image_processing_vlmamba import VLMambaImageProcessor, VLMambaImageProcessorPil, open_image
from .modeling_vlmamba import (
    MambaVLForConditionalGeneration,
    MambaVLModel,
    PythiaVLForConditionalGeneration,
    PythiaVLModel,
    VLMambaForConditionalGeneration,
    VLMambaModel,
    VLMambaPreTrainedModel,
)
from .processing_vlmamba import VLMambaProcessor, generate_answers


__all__ = [
    "MambaVLConfig",
    "PythiaVLConfig",
    "VLMambaConfig",
    "VLMambaImageProcessor",
    "VLMambaImageProcessorPil",
    "MambaVLForConditionalGeneration",
    "MambaVLModel",
    "PythiaVLForConditionalGeneration",
    "PythiaVLModel",
    "VLMambaForConditionalGeneration",
    "VLMambaModel",
    "VLMambaPreTrainedModel",
    "VLMambaProcessor",
    "generate_answers",
    "open_image",
]
