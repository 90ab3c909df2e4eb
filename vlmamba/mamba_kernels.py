# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Which selective-scan implementation transformers' Mamba mixer runs, per device.

transformers resolves its Mamba kernel entry points once, at import: mamba-ssm / causal-conv1d kernels when the
packages are installed, otherwise a PyTorch path whose selective scan is a per-token Python loop (superlinear to
train). `install_device_dispatch` rewraps the entry points of `transformers.models.mamba.modeling_mamba` without
touching the mixer itself, so `state-spaces/mamba-*-hf` checkpoints load unchanged:

| tensors | mamba-ssm installed | selective scan (prefill, training) | decode step, convolution |
|---|---|---|---|
| CUDA | yes | mamba-ssm's CUDA kernels | CUDA kernels |
| CUDA | no | `vlmamba.selective_scan` (chunked PyTorch) | transformers' PyTorch path |
| CPU, MPS, other | either | `vlmamba.selective_scan` (chunked PyTorch) | transformers' PyTorch path |

`scan_implementation("reference")` (or `set_scan_implementation`) switches back to transformers' own PyTorch scan,
which honours `MambaConfig.use_mambapy`; "fast" forces the chunked scan even for CUDA tensors. Under the default
"auto", transformers' path also runs while `torch.compile` traces (its `use_associative_scan` option is built for
that) and when a config sets `use_mambapy=True` with the `mambapy` package installed.
"""

import contextlib
import functools
import importlib.util

import torch
from transformers.models.mamba import modeling_mamba

from .selective_scan import selective_scan


KERNEL_ENTRY_POINTS = (
    "mamba_inner_fn",
    "mamba_selective_scan",
    "mamba_selective_state_update",
    "causal_conv1d_fn",
    "causal_conv1d_update",
)
SCAN_IMPLEMENTATIONS = ("auto", "fast", "reference")
_scan_implementation = "auto"


def set_scan_implementation(name: str) -> None:
    """Selects the selective scan for non-kernel calls: "auto" (default), "fast" or "reference"."""
    global _scan_implementation
    if name not in SCAN_IMPLEMENTATIONS:
        raise ValueError(f"Unknown scan implementation {name!r}; choose one of {SCAN_IMPLEMENTATIONS}.")
    _scan_implementation = name


def get_scan_implementation() -> str:
    return _scan_implementation


@contextlib.contextmanager
def scan_implementation(name: str):
    """Context manager form of `set_scan_implementation`."""
    previous = _scan_implementation
    set_scan_implementation(name)
    try:
        yield
    finally:
        set_scan_implementation(previous)


@functools.cache
def _kernels_installed() -> bool:
    return importlib.util.find_spec("mamba_ssm") is not None


@functools.cache
def _mambapy_installed() -> bool:
    return importlib.util.find_spec("mambapy") is not None


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _dispatching(entry_point):
    # `functools.wraps` in transformers' decorator leaves the PyTorch implementation under `__wrapped__`.
    torch_path = getattr(entry_point, "__wrapped__", entry_point)

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        tensor = _first_tensor(args, kwargs)
        if tensor is not None and tensor.is_cuda and _kernels_installed():
            return entry_point(*args, **kwargs)
        return torch_path(*args, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def _scan_dispatching(entry_point):
    torch_path = getattr(entry_point, "__wrapped__", entry_point)

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        choice = _scan_implementation
        if choice == "auto":
            tensor = _first_tensor(args, kwargs)
            if tensor is not None and tensor.is_cuda and _kernels_installed():
                return entry_point(*args, **kwargs)
            if torch.compiler.is_compiling() or (kwargs.get("use_mambapy") and _mambapy_installed()):
                choice = "reference"
        if choice == "reference":
            return torch_path(*args, **kwargs)
        return selective_scan(*args, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def install_device_dispatch() -> None:
    """Routes transformers' Mamba entry points as in the module's table. Idempotent."""
    for name in KERNEL_ENTRY_POINTS:
        entry_point = getattr(modeling_mamba, name, None)
        if entry_point is None or getattr(entry_point, "_vlmamba_dispatch", False):
            continue
        wrap = _scan_dispatching if name == "mamba_selective_scan" else _dispatching
        setattr(modeling_mamba, name, wrap(entry_point))


__all__ = [
    "KERNEL_ENTRY_POINTS",
    "SCAN_IMPLEMENTATIONS",
    "get_scan_implementation",
    "install_device_dispatch",
    "scan_implementation",
    "set_scan_implementation",
]
