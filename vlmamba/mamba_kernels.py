# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Device-aware dispatch of transformers' Mamba kernel entry points.

transformers picks `mamba-ssm` / `causal-conv1d` kernels once, at import, when the packages are installed, and then
sends every tensor to them, CPU tensors included, which the CUDA kernels cannot take. `install_device_dispatch`
rewraps the five entry points of `transformers.models.mamba.modeling_mamba` so that the CUDA kernels only see CUDA
tensors and everything else takes transformers' PyTorch path. Without the packages nothing changes.
"""

import functools

import torch
from transformers.models.mamba import modeling_mamba


KERNEL_ENTRY_POINTS = (
    "mamba_inner_fn",
    "mamba_selective_scan",
    "mamba_selective_state_update",
    "causal_conv1d_fn",
    "causal_conv1d_update",
)


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _dispatching(entry_point):
    # `functools.wraps` in transformers' decorator leaves the PyTorch implementation under `__wrapped__`.
    torch_path = getattr(entry_point, "__wrapped__", None)
    if torch_path is None:
        return entry_point

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        tensor = _first_tensor(args, kwargs)
        if tensor is not None and tensor.is_cuda:
            return entry_point(*args, **kwargs)
        return torch_path(*args, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def install_device_dispatch() -> None:
    """Makes transformers' Mamba mixer use CUDA kernels for CUDA tensors only. Idempotent."""
    for name in KERNEL_ENTRY_POINTS:
        entry_point = getattr(modeling_mamba, name, None)
        if entry_point is None or getattr(entry_point, "_vlmamba_dispatch", False):
            continue
        setattr(modeling_mamba, name, _dispatching(entry_point))


__all__ = ["install_device_dispatch", "KERNEL_ENTRY_POINTS"]
