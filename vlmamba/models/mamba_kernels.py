# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Which selective-scan implementation transformers' Mamba mixer runs, per device.

transformers resolves its Mamba kernel entry points once, at import: mamba-ssm / causal-conv1d kernels when the
packages are installed, otherwise a PyTorch path whose selective scan is a per-token Python loop (superlinear to
train). `install_device_dispatch` rewraps the entry points of `transformers.models.mamba.modeling_mamba` without
changing the mixer's code, so `state-spaces/mamba-*-hf` checkpoints load unchanged:

| tensors | mamba-ssm installed | training without a cache | prefill | decode step, convolution |
|---|---|---|---|---|
| CUDA | yes | mamba-ssm's `mamba_inner_fn` | mamba-ssm's scan | CUDA kernels |
| CUDA | no | `mamba_inner` (fused mixer) | `selective_scan` | transformers' PyTorch path |
| CPU, MPS | either | `mamba_inner` (fused mixer) | `selective_scan` | transformers' PyTorch path |

In training, transformers' mixer calls `mamba_inner_fn` first and runs its own code when that returns None; the fused
mixer needs the padding mask and the mixer's layers, which that interface does not carry, so `MambaMixer.forward` is
wrapped to record them (its code is not changed). A mixer whose layers are wrapped or hooked (PEFT adapters,
quantization, offloading) or whose activation is not silu runs its own code on every device, mamba-ssm's fused
kernel included (it would read the raw weights too); its convolution and scan still go to the kernels on CUDA.

A scan over several tokens on top of a cache (a second chat turn, a question after a cached image prefix) starts from
the cache's recurrent state on every path, where transformers' mixer starts from zeros: vlmamba's scan takes it as
`initial_state`, and the output of the scans that take none (mamba-ssm's kernel, transformers' path) gets the state's
contribution added (`_continued`).

`scan_implementation("reference")` (or `set_scan_implementation`) switches back to transformers' own PyTorch path
(mixer and scan), which honours `MambaConfig.use_mambapy`; "fast" forces vlmamba's paths even for CUDA tensors.
Under the default "auto", transformers' path also runs while `torch.compile` traces (its `use_associative_scan`
option is built for that) and when a config sets `use_mambapy=True` with the `mambapy` package installed.
"""

import contextlib
import contextvars
import functools
import importlib.util
import inspect

import torch
from transformers.models.mamba import modeling_mamba
from transformers.utils import logging

from .mamba_inner import mamba_inner
from .selective_scan import selective_scan


logger = logging.get_logger(__name__)

KERNEL_ENTRY_POINTS = (
    "mamba_inner_fn",
    "mamba_selective_scan",
    "mamba_selective_state_update",
    "causal_conv1d_fn",
    "causal_conv1d_update",
)
SCAN_IMPLEMENTATIONS = ("auto", "fast", "reference")
_scan_implementation = "auto"
# The mixer whose forward is running, the attention mask and the cache it was given: `mamba_inner_fn`'s interface
# carries none of them, the fused path needs the mask (applied after the convolution) and the mixer's options, and a
# scan over several tokens on top of a cache starts from the cache's recurrent state.
_current_mixer = contextvars.ContextVar("vlmamba_current_mixer", default=None)
# Time steps per block of the initial-state correction (bounds its `(batch, channels, block, state)` memory).
_CONTINUATION_BLOCK = 256
# Recorded in place of the mask when the mixer's signature names none: the fused path then stays off.
_UNKNOWN_MASK = object()
# transformers' mixer computes the time step as `dt_proj.weight @ ...` on every path, so a PEFT layer wrapping
# `dt_proj` (it keeps the wrapped layer as `base_layer`) is never called.
DT_PROJ_ADAPTER_WARNING = (
    "An adapter wraps Mamba's dt_proj (e.g. LoRA with target_modules='all-linear'): transformers' Mamba mixer reads "
    "dt_proj.weight directly on every device, so this adapter has no effect and gets no gradient, and merging it "
    "would change the model. Leave dt_proj out of target_modules (vlmamba.training.LORA_TARGETS['mamba'] adapts "
    "in_proj only; `exclude_modules=['dt_proj']` with 'all-linear')."
)


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


def _kernels_apply(args, kwargs) -> bool:
    """Whether mamba-ssm's kernels can take this call: the package is installed and the first tensor is on CUDA."""
    tensor = next((value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)), None)
    return tensor is not None and tensor.is_cuda and _kernels_installed()


def _dispatching(entry_point):
    # `functools.wraps` in transformers' decorator leaves the PyTorch implementation under `__wrapped__`.
    torch_path = getattr(entry_point, "__wrapped__", entry_point)

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        return (entry_point if _kernels_apply(args, kwargs) else torch_path)(*args, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def _scan_dispatching(entry_point):
    torch_path = getattr(entry_point, "__wrapped__", entry_point)

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        state = _cached_state()
        if _scan_implementation == "auto" and _kernels_apply(args, kwargs):
            return _continued(entry_point(*args, **kwargs), state, args, kwargs)
        if _use_pytorch_path(bool(kwargs.get("use_mambapy"))):
            return _continued(torch_path(*args, **kwargs), state, args, kwargs)
        return selective_scan(*args, initial_state=state, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def _cached_state() -> torch.Tensor | None:
    """The recurrent state the running mixer's cache holds for its layer: what a scan over several tokens on top of
    that cache starts from (transformers' mixer calls the scan without it). `None` before the cache's first update,
    where the scan starts from zeros anyway."""
    mixer, _, cache = _current_mixer.get() or (None, None, None)
    if mixer is None or cache is None or not hasattr(cache, "get_recurrent_state"):
        return None
    return cache.get_recurrent_state(mixer.layer_idx, state_idx=0)


def _continued(result, state, args, kwargs):
    """A zero-state scan's `result` made the scan from `state`: the recurrence is linear in its state, so starting from
    `state` adds `C_t . (prod_{s <= t} exp(delta_s A)) state` to each output (times the gate's silu(z)) and the decayed
    `state` to the last state. For the scans that take no initial state (mamba-ssm's kernel, transformers' path)."""
    if state is None:
        return result
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus", "return_last_state")
    values = {**dict(zip(names, args)), **kwargs}
    # At least fp32, as the scans compute.
    dtype = torch.promote_types(values["delta"].dtype, torch.float32)
    delta, A, C = (values[name].to(dtype) for name in ("delta", "A", "C"))
    if values.get("delta_bias") is not None:
        delta = delta + values["delta_bias"].to(dtype)[:, None]
    if values.get("delta_softplus"):
        delta = torch.nn.functional.softplus(delta)
    carried = state.to(dtype)  # (batch, channels, state), decayed block by block
    corrections = []
    for start in range(0, delta.shape[-1], _CONTINUATION_BLOCK):
        block = slice(start, start + _CONTINUATION_BLOCK)
        decays = torch.exp(torch.cumsum(delta[:, :, block, None] * A[None, :, None, :], dim=2))
        states = decays * carried[:, :, None, :]  # (batch, channels, block, state)
        corrections.append(torch.einsum("bdln,bnl->bdl", states, C[:, :, block]))
        carried = states[:, :, -1]
    correction = torch.cat(corrections, dim=-1)
    if values.get("z") is not None:
        correction = correction * torch.nn.functional.silu(values["z"].to(dtype))
    if values.get("return_last_state"):
        output, last = result
        return output + correction.to(output.dtype), (last.to(dtype) + carried).to(last.dtype)
    return result + correction.to(result.dtype)


def _use_pytorch_path(use_mambapy: bool) -> bool:
    """Whether transformers' own PyTorch path runs instead of vlmamba's (away from mamba-ssm's kernels)."""
    if _scan_implementation == "auto":
        return torch.compiler.is_compiling() or (use_mambapy and _mambapy_installed())
    return _scan_implementation == "reference"


def _inner_dispatching(entry_point):
    torch_path = getattr(entry_point, "__wrapped__", entry_point)

    @functools.wraps(entry_point)
    def dispatch(*args, **kwargs):
        mixer, mask, _ = _current_mixer.get() or (None, None, None)
        # Any fused path (mamba-ssm's kernel too) reads the raw weights of the mixer's layers: a mixer with wrapped or
        # hooked layers runs its own code, whose convolution and scan still take the kernels. transformers' PyTorch
        # entry point returns None, which makes the mixer do so.
        if not _fusable(mixer):
            return torch_path(*args, **kwargs)
        if _scan_implementation == "auto" and _kernels_apply(args, kwargs):
            return entry_point(*args, **kwargs)
        if _use_pytorch_path(mixer is not None and mixer.use_mambapy) or mask is _UNKNOWN_MASK:
            return torch_path(*args, **kwargs)
        return mamba_inner(*args, mask=mask, **kwargs)

    dispatch._vlmamba_dispatch = True
    return dispatch


def _fusable(mixer) -> bool:
    """Whether the fused path computes what `mixer` computes. It takes the raw weights of `conv1d`, `x_proj`, `dt_proj`
    and `out_proj`, so layers that are wrapped (PEFT adapters, quantized layers) or hooked (forward hooks, accelerate's
    offloading hooks) must run as modules, and it applies silu after the convolution, as mamba-ssm's kernel does."""
    if mixer is None:
        return True
    linear, conv = torch.nn.Linear, torch.nn.Conv1d
    for name, kind in {"conv1d": conv, "x_proj": linear, "dt_proj": linear, "out_proj": linear}.items():
        layer = getattr(mixer, name, None)
        if type(layer) is not kind or layer._forward_hooks or layer._forward_pre_hooks or hasattr(layer, "_hf_hook"):
            return False
    return mixer.activation == "silu"


def _recording_mixer(forward):
    """Wraps `MambaMixer.forward` to record the mixer and its padding mask; every argument passes through unchanged.
    The mask is found by name in the wrapped signature, so a renamed cache argument cannot break the wrapper; should
    the mask itself be renamed, the mixer is recorded with an unknown mask and runs its own code."""
    parameters = list(inspect.signature(forward).parameters)
    mask_position = parameters.index("attention_mask") - 1 if "attention_mask" in parameters else None
    cache_name = next((name for name in ("cache", "cache_params") if name in parameters), None)
    cache_position = parameters.index(cache_name) - 1 if cache_name else None
    if mask_position is None:
        logger.warning_once(
            "transformers' MambaMixer.forward takes no `attention_mask` argument; vlmamba's fused training path is "
            "disabled and the mixer runs its own code."
        )

    @functools.wraps(forward)
    def mixer_forward(self, *args, **kwargs):
        if torch.compiler.is_compiling():
            return forward(self, *args, **kwargs)
        if hasattr(getattr(self, "dt_proj", None), "base_layer"):
            logger.warning_once(DT_PROJ_ADAPTER_WARNING)
        if mask_position is None:
            mask = _UNKNOWN_MASK
        elif "attention_mask" in kwargs:
            mask = kwargs["attention_mask"]
        else:
            mask = args[mask_position] if mask_position < len(args) else None
        if cache_name is None:
            cache = None
        elif cache_name in kwargs or "cache_params" in kwargs:
            cache = kwargs.get(cache_name, kwargs.get("cache_params"))
        else:
            cache = args[cache_position] if cache_position < len(args) else None
        token = _current_mixer.set((self, mask, cache))
        try:
            return forward(self, *args, **kwargs)
        finally:
            _current_mixer.reset(token)

    mixer_forward._vlmamba_dispatch = True
    return mixer_forward


def install_device_dispatch() -> None:
    """Routes transformers' Mamba entry points as in the module's table. Idempotent."""
    wrappers = {"mamba_selective_scan": _scan_dispatching, "mamba_inner_fn": _inner_dispatching}
    for name in KERNEL_ENTRY_POINTS:
        entry_point = getattr(modeling_mamba, name, None)
        if entry_point is None or getattr(entry_point, "_vlmamba_dispatch", False):
            continue
        setattr(modeling_mamba, name, wrappers.get(name, _dispatching)(entry_point))
    mixer = modeling_mamba.MambaMixer
    if not getattr(mixer.forward, "_vlmamba_dispatch", False):
        mixer.forward = _recording_mixer(mixer.forward)


__all__ = [
    "DT_PROJ_ADAPTER_WARNING",
    "KERNEL_ENTRY_POINTS",
    "SCAN_IMPLEMENTATIONS",
    "get_scan_implementation",
    "install_device_dispatch",
    "scan_implementation",
    "set_scan_implementation",
]
