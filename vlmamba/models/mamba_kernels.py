# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Which selective-scan implementation transformers' Mamba mixer runs, per device and per kernel entry point.

transformers binds its five Mamba kernel entry points once, at import, each on its own: a hub kernel (the `kernels`
package, for a model loaded with `use_kernels=True`), else the mamba-ssm / causal-conv1d function when that package
imports, else a PyTorch path whose selective scan is a per-token Python loop (superlinear to train).
`install_device_dispatch` rewraps the entry points of `transformers.models.mamba.modeling_mamba` and
`transformers.models.falcon_mamba.modeling_falcon_mamba` (`MIXER_MODULES`) without changing the mixers' code, so
`state-spaces/mamba-*-hf` and FalconMamba checkpoints load unchanged (FalconMamba's norms on B, C and dt keep its
training step off vlmamba's fused mixer, on its own code with vlmamba's scan):

| tensors | kernel bound and working | a forward without a cache | prefill filling a cache | decode step, convolution |
|---|---|---|---|---|
| CUDA | hub kernels (`use_kernels=True`) | hub `mamba_inner_fn` | hub scan | hub kernels |
| CUDA | mamba-ssm, causal-conv1d | mamba-ssm's `mamba_inner_fn` | mamba-ssm's scan | mamba-ssm, causal-conv1d kernels |
| CUDA | causal-conv1d only | `mamba_inner` (fused mixer) | `selective_scan` | causal-conv1d's convolutions |
| CUDA | none, or broken | `mamba_inner` (fused mixer) | `selective_scan` | transformers' PyTorch path |
| CPU, MPS | any | `mamba_inner` (fused mixer) | `selective_scan` | transformers' PyTorch path |

"Working" is decided per entry point from what transformers bound (the implementation inside its wrapper, found
through the `kernels` module the wrapper may sit in) and whether the compiled extension that kernel calls loads
(`selective_scan_cuda`, `causal_conv1d_cuda`, triton): a package can import without them and fail at its first call.
A kernel that still fails with an install-type error (an `ImportError`, or the "not available" / "not installed"
errors mamba-ssm and causal-conv1d raise when an extension is missing) is replaced, for the rest of the process, by
the path of the row "none" above, with one log line saying which path runs and why; any other error, CUDA
out-of-memory included, propagates. `kernel_report()` and `env_report()` tell which path runs on this machine.
CPU tensors never reach a kernel: they take transformers' PyTorch implementation, unwrapped from its kernel wrappers.

In training, transformers' mixer calls `mamba_inner_fn` first and runs its own code when that returns None; the fused
mixer needs the padding mask and the mixer's layers, which that interface does not carry, so `MambaMixer.forward` is
wrapped to record them (its code is not changed). In eval mode without a cache (scoring, evaluation, a forward with
`use_cache=False`) the wrapper makes the same `mamba_inner_fn` call itself (`_inference_forward`), since the
mixer's own eval path alternates memory layouts around every layer; a forward that fills a cache runs the mixer's code.
Packed sequences (`packed_sequences`) take vlmamba's paths only, which restart at each sequence. A mixer whose
layers are wrapped or hooked (PEFT adapters, quantization, offloading) or whose activation is not silu runs its own
code on every device, the fused kernels included (they would read the raw weights too); its convolution and scan
still go to the kernels on CUDA.

A scan over several tokens on top of a cache (a second chat turn, a question after a cached image prefix) starts from
the cache's recurrent state on every path, where transformers' mixer starts from zeros: vlmamba's scan takes it as
`initial_state`, and the output of the scans that take none (the kernels, transformers' path) gets the state's
contribution added (`_continued`).

`scan_implementation("reference")` (or `set_scan_implementation`) switches back to transformers' own PyTorch path
(mixer, scan, decode step and convolution), which honours `MambaConfig.use_mambapy`; "fast" forces vlmamba's paths
even for CUDA tensors (transformers' PyTorch code for the decode step and the convolution). Under the default "auto",
transformers' path also runs while `torch.compile` traces (its `use_associative_scan` option is built for that) and
when a config sets `use_mambapy=True` with the `mambapy` package installed.
"""

import contextlib
import contextvars
import functools
import importlib.util
import inspect

import torch
from transformers.models.falcon_mamba import modeling_falcon_mamba
from transformers.models.mamba import modeling_mamba
from transformers.utils import logging

from . import cpu_kernel
from .mamba_inner import causal_conv1d_silu, mamba_inner
from .selective_scan import selective_scan


logger = logging.get_logger(__name__)

# transformers' modules whose Mamba (v1) mixer and kernel entry points are routed, and the mixer class of each:
# Mamba's and FalconMamba's (the same mixer with RMS norms on B, C and dt).
MIXER_MODULES = ((modeling_mamba, "MambaMixer"), (modeling_falcon_mamba, "FalconMambaMixer"))
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
# The packed-sequence index of every token of the running forward (`packed_sequences`), or None.
_packed_seq_idx = contextvars.ContextVar("vlmamba_packed_seq_idx", default=None)
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


# Where transformers finds each entry point's kernel (the package, the module that defines it, the function) and the
# compiled extensions that kernel calls: mamba-ssm and causal-conv1d import without some of them and fail at the call.
_KERNEL_SOURCES = {
    "mamba_inner_fn": (
        "mamba_ssm", "mamba_ssm.ops.selective_scan_interface", "mamba_inner_fn",
        ("selective_scan_cuda", "causal_conv1d_cuda"),
    ),
    "mamba_selective_scan": (
        "mamba_ssm", "mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", ("selective_scan_cuda",)
    ),
    "mamba_selective_state_update": (
        "mamba_ssm", "mamba_ssm.ops.triton.selective_state_update", "selective_state_update", ("triton",)
    ),
    "causal_conv1d_fn": ("causal_conv1d", "causal_conv1d", "causal_conv1d_fn", ("causal_conv1d_cuda",)),
    "causal_conv1d_update": ("causal_conv1d", "causal_conv1d", "causal_conv1d_update", ("causal_conv1d_cuda",)),
}
_DISTRIBUTIONS = {"mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d"}
_INSTALL_HINTS = {
    # mamba-ssm's source tree after 2.3.2 builds its Mamba-1 scan only on request.
    "selective_scan_cuda": "reinstall with `MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation`",
    "causal_conv1d_cuda": "install it with `pip install causal-conv1d --no-build-isolation`",
    "triton": "install triton (it comes with CUDA builds of torch)",
}
# What a kernel's error says when the kernel is not (properly) installed: mamba-ssm's "selective_scan_cuda is not
# installed", its "causal_conv1d_cuda is not available" assertions, and CUDA's error for a build without this GPU's
# architecture (raised at launch, before anything is computed).
_INSTALL_MARKERS = ("not available", "not installed", "no kernel image is available")
_FALLBACKS = {
    "mamba_inner_fn": "vlmamba's fused mixer (`mamba_inner`)",
    "mamba_selective_scan": "vlmamba's chunked scan (`selective_scan`)",
}
# Devices transformers maps hub kernels for (a model's hub kernel is chosen for the device it was loaded on).
_HUB_DEVICES = ("cuda", "xpu")
_UNSET = object()
# Returned by `_EntryPoint.call` when no kernel takes the call.
_NO_KERNEL = object()


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
def _mambapy_installed() -> bool:
    return importlib.util.find_spec("mambapy") is not None


class _EntryPoint:
    """One of transformers' kernel entry points as transformers bound it at import, and what it can run.

    `bound` is what transformers left in `modeling_mamba`: its wrapper function (made by
    `use_kernel_func_from_hub_with_fallback`) or, with the `kernels` package, a module whose forward calls that
    wrapper unless the running model selected a hub kernel. `wrapper` is that function (None if it cannot be found),
    `torch_path` transformers' PyTorch implementation inside it and `kernel` the package implementation it calls, None
    when transformers bound its PyTorch path.
    """

    def __init__(self, name: str, bound, module=modeling_mamba):
        package, module_name, function, extensions = _KERNEL_SOURCES[name]
        self.name, self.bound, self.package, self.function, self.extensions = name, bound, package, function, extensions
        self.wrapper = _transformers_wrapper(bound)
        self.torch_path = _torch_path(self.wrapper, module)
        self.kernel = _bound_kernel(self.wrapper, module_name, function)
        self.hub_layer = getattr(type(bound), "kernel_layer_name", function) if _is_module(bound) else None
        # Why a kernel ("package" or "hub") failed at call time; it is not called again in this process.
        self.failures: dict[str, str] = {}
        self._problem = _UNSET
        self._reported = False

    @property
    def distribution(self) -> str:
        return _DISTRIBUTIONS[self.package]

    @property
    def fallback(self) -> str:
        """What runs for CUDA tensors without a working kernel (and for CPU tensors)."""
        return _FALLBACKS.get(self.name, "transformers' PyTorch path")

    def problem(self) -> str | None:
        """Why the package kernel cannot take CUDA calls, or None when it can."""
        if "package" in self.failures:
            return self.failures["package"]
        if self._problem is _UNSET:
            self._problem = _kernel_problem(self)
        return self._problem

    def kernel_for(self, args, kwargs):
        """`(source, callable)` of the kernel that takes this call, or None: the tensors are not on CUDA, the scan
        implementation is not "auto", or no working kernel is bound (logged once, with the reason)."""
        if _scan_implementation != "auto":
            return None
        device = _device_type(args, kwargs)
        if device in _HUB_DEVICES and "hub" not in self.failures and self.hub_kernel_selected():
            # The module routes the call to the running model's hub kernel.
            return "hub", self.bound
        if device != "cuda":
            return None
        problem = self.problem()
        if problem is None:
            return "package", self.wrapper
        self._report(f"`{self.name}` on CUDA runs {self.fallback}: {problem}.", problem)
        return None

    def hub_kernel_selected(self) -> bool:
        """Whether the running mixer's model selected a hub kernel for this entry point (`use_kernels=True`): the
        `kernels` package keeps one wrapper per model in `_kernel_funcs` and `kernelize` replaces its forward."""
        if self.hub_layer is None:
            return False
        mixer = (_current_mixer.get() or (None,))[0]
        private = (getattr(mixer, "__dict__", {}).get("_kernel_funcs") or {}).get(self.hub_layer)
        if private is None:
            return False
        forward = private.__dict__.get("forward")
        return "_kernel_repo" in private.__dict__ or (
            forward is not None and getattr(forward, "__func__", None) is not type(private).forward
        )

    def call(self, args, kwargs):
        """The result of the kernel that takes this call, or `_NO_KERNEL` when none does. A kernel that fails with an
        install-type error is logged once and not tried again in this process; the next one in line takes the call."""
        kernel = self.kernel_for(args, kwargs)
        while kernel is not None:
            source, function = kernel
            if torch.compiler.is_compiling():
                return function(*args, **kwargs)
            try:
                return function(*args, **kwargs)
            except (ImportError, AssertionError, RuntimeError) as error:
                if not _install_failure(error):
                    raise
                if source == "hub":
                    what = f"the hub kernel `{self.hub_layer}`"
                else:
                    what = f"{self.distribution}'s `{self.function}`"
                self.failures[source] = f"{what} failed with {_describe(error)}"
                self._reported = True
                kernel = self.kernel_for(args, kwargs)
                then = f"{self.distribution}'s kernel" if kernel is not None else self.fallback
                logger.warning(
                    f"vlmamba: {self.failures[source]}; `{self.name}` runs {then} on CUDA for the rest of the process."
                )
        return _NO_KERNEL

    def _report(self, message: str, problem: str) -> None:
        if self._reported:
            return
        self._reported = True
        # A package that is simply absent is the plain install; anything else is a broken one.
        if problem == f"{self.distribution} is not installed":
            logger.info(f"vlmamba: {message}")
        else:
            logger.warning(f"vlmamba: {message}")


def _is_module(value) -> bool:
    return isinstance(value, torch.nn.Module)


def _closure(function) -> dict:
    try:
        return dict(inspect.getclosurevars(function).nonlocals)
    except (TypeError, ValueError):
        return {}


def _transformers_wrapper(bound):
    """transformers' wrapper function of an entry point: `bound` itself, or, when the `kernels` package made it a
    module, the function that module's forward calls (the wrapper it was made from)."""
    if not _is_module(bound):
        return bound
    nonlocals = _closure(type(bound).forward)
    candidates = [nonlocals.get("func"), *nonlocals.values()]
    return next((value for value in candidates if inspect.isfunction(value) and hasattr(value, "__wrapped__")), None)


def _torch_path(wrapper, module=modeling_mamba):
    """transformers' PyTorch implementation inside its wrapper (`functools.wraps` keeps it under `__wrapped__`), or
    None when what is found is not code of `modeling_mamba` (a kernel bound without a wrapper, say)."""
    if wrapper is None:
        return None
    path = inspect.unwrap(wrapper)
    return path if inspect.isfunction(path) and path.__module__ == module.__name__ else None


def _bound_kernel(wrapper, module_name: str, function: str):
    """The package implementation transformers' wrapper calls, None when it calls its PyTorch path. Read from the
    wrapper's closure; should its names change, the kernel is looked up where transformers finds it."""
    nonlocals = _closure(wrapper) if wrapper is not None else {}
    if "implementation" in nonlocals and "torch_function" in nonlocals:
        implementation = nonlocals["implementation"]
        return None if implementation is nonlocals["torch_function"] else implementation
    try:
        return getattr(importlib.import_module(module_name), function, None)
    except Exception:  # what transformers does too: any failure to import means its PyTorch path
        return None


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # in `sys.modules` without a spec
        return True


def _kernel_problem(entry: _EntryPoint) -> str | None:
    """Why `entry`'s package kernel cannot run, or None: transformers bound it and the extensions it calls load."""
    distribution = entry.distribution
    if entry.kernel is None:
        if not _installed(entry.package):
            return f"{distribution} is not installed"
        try:
            importlib.import_module(entry.package)
        except Exception as error:
            return (
                f"{distribution} is installed but does not import ({_describe(error)}), so transformers bound its "
                "PyTorch path"
            )
        return f"transformers bound its PyTorch path, not {distribution}'s `{entry.function}`"
    if entry.wrapper is None:
        return "the `kernels` module around it holds no transformers wrapper to call"
    for extension in entry.extensions:
        try:
            importlib.import_module(extension)
        except Exception as error:
            return (
                f"{distribution}'s `{entry.function}` needs `{extension}`, which does not load ({_describe(error)}); "
                f"{_INSTALL_HINTS[extension]}"
            )
    return None


def _install_failure(error: BaseException) -> bool:
    """Whether a kernel's error says the kernel is not (properly) installed, rather than anything about the call."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return False
    if isinstance(error, ImportError):
        return True
    message = str(error).lower()
    return isinstance(error, (AssertionError, RuntimeError)) and any(marker in message for marker in _INSTALL_MARKERS)


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _device_type(args, kwargs) -> str | None:
    """The device type of the call's first tensor (what decides between a kernel and a PyTorch path)."""
    tensor = next((value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)), None)
    return None if tensor is None else tensor.device.type


def _declines(*args, **kwargs):
    """transformers' PyTorch `mamba_inner_fn`: None, which makes the mixer run its own code."""
    return None


@contextlib.contextmanager
def packed_sequences(seq_idx: torch.Tensor | None):
    """Within this context, every Mamba (v1) mixer treats its input as packed sequences: `seq_idx` `(batch, length)`
    holds the index of the sequence each token belongs to, and the convolution and the scan restart where it changes,
    so that each sequence is computed as if it were alone in its row (padding-free training).

    Packed sequences run on vlmamba's paths on every device (mamba-ssm's fused kernel and transformers' PyTorch path
    have no sequence boundaries): the fused training mixer, or, for a mixer that runs its own code (eval mode, PEFT
    adapters, FalconMamba), vlmamba's convolution and scan inside it. A cache, the decode step and
    `scan_implementation("reference")` cannot honour the boundaries and raise. `None` is a no-op.
    """
    if seq_idx is not None and _scan_implementation == "reference":
        raise ValueError(
            'Packed sequences run on vlmamba\'s paths; scan_implementation("reference") (transformers\' own code) '
            "would let every sequence see the one before it."
        )
    token = _packed_seq_idx.set(seq_idx)
    try:
        yield
    finally:
        _packed_seq_idx.reset(token)


def _packed_without_cache(name: str) -> torch.Tensor | None:
    """The packed-sequence index of the running forward, or None; raises if the running mixer has a cache."""
    seq_idx = _packed_seq_idx.get()
    if seq_idx is not None and (_current_mixer.get() or (None, None, None))[2] is not None:
        raise ValueError(f"Packed sequences cannot be used with a cache (`{name}` was called with one).")
    return seq_idx


def _packed_convolution(seq_idx, hidden_states, weight, bias=None, activation=None, **kwargs):
    """transformers' `causal_conv1d_fn` call, `(batch, channels, length)`, with the taps stopped at each boundary."""
    if activation not in ("silu", "swish"):
        raise ValueError(f"Packed sequences need the mixer's activation to be silu, got {activation!r}.")
    out = causal_conv1d_silu(hidden_states.transpose(1, 2), weight, bias, seq_idx=seq_idx)
    return out.transpose(1, 2).to(hidden_states.dtype)


def _dispatching(entry: _EntryPoint):
    """The decode step and the convolutions: a working kernel for CUDA tensors, transformers' PyTorch path otherwise."""
    if entry.torch_path is None:
        logger.warning(
            f"vlmamba: transformers' PyTorch implementation of `{entry.name}` was not found; every call goes to the "
            "entry point transformers bound."
        )
        entry.torch_path = entry.bound

    @functools.wraps(entry.wrapper or entry.torch_path)
    def dispatch(*args, **kwargs):
        seq_idx = _packed_without_cache(entry.name)
        if seq_idx is not None:
            if entry.name != "causal_conv1d_fn":
                raise ValueError(f"Packed sequences have no decode step (`{entry.name}` was called).")
            return _packed_convolution(seq_idx, *args, **kwargs)
        result = entry.call(args, kwargs)
        if result is not _NO_KERNEL:
            return result
        return entry.torch_path(*args, **kwargs)

    return _marked(dispatch, entry)


def _scan_dispatching(entry: _EntryPoint):
    @functools.wraps(entry.wrapper or entry.torch_path or selective_scan)
    def dispatch(*args, **kwargs):
        seq_idx = _packed_without_cache(entry.name)
        if seq_idx is not None:
            return selective_scan(*args, seq_idx=seq_idx, **kwargs)
        state = _cached_state()
        result = entry.call(args, kwargs)
        if result is not _NO_KERNEL:
            return _continued(result, state, args, kwargs)
        if entry.torch_path is not None and _use_pytorch_path(bool(kwargs.get("use_mambapy"))):
            return _continued(entry.torch_path(*args, **kwargs), state, args, kwargs)
        return selective_scan(*args, initial_state=state, **kwargs)

    return _marked(dispatch, entry)


def _marked(dispatch, entry: _EntryPoint):
    dispatch._vlmamba_dispatch = True
    dispatch._vlmamba_entry = entry
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


def _inner_dispatching(entry: _EntryPoint):
    entry.torch_path = entry.torch_path or _declines

    @functools.wraps(entry.wrapper or entry.torch_path)
    def dispatch(*args, **kwargs):
        mixer, mask, _ = _current_mixer.get() or (None, None, None)
        # Any fused path (the kernels too) reads the raw weights of the mixer's layers: a mixer with wrapped or hooked
        # layers runs its own code, whose convolution and scan still take the kernels. transformers' PyTorch entry
        # point returns None, which makes the mixer do so.
        if not _fusable(mixer):
            return entry.torch_path(*args, **kwargs)
        seq_idx = _packed_seq_idx.get()
        if seq_idx is not None:
            # No kernel takes sequence boundaries; FalconMamba's normed mixer runs its own code (packed there too).
            if any(kwargs.get(name) is not None for name in _RMS_WEIGHTS) or mask is _UNKNOWN_MASK:
                return entry.torch_path(*args, **kwargs)
            return mamba_inner(*args, mask=mask, seq_idx=seq_idx, **kwargs)
        result = entry.call(args, kwargs)
        if result is not _NO_KERNEL:
            return result
        if _use_pytorch_path(mixer is not None and mixer.use_mambapy) or mask is _UNKNOWN_MASK:
            return entry.torch_path(*args, **kwargs)
        if any(kwargs.get(name) is not None for name in _RMS_WEIGHTS):
            # FalconMamba's norms on B, C and dt, which vlmamba's fused mixer does not apply: the mixer's own code
            # runs, its scan on vlmamba's path.
            return entry.torch_path(*args, **kwargs)
        return mamba_inner(*args, mask=mask, **kwargs)

    return _marked(dispatch, entry)


# The fused entry point's arguments for FalconMamba's RMS norms of B, C and dt (mamba-ssm's kernel applies them).
_RMS_WEIGHTS = ("b_rms_weight", "c_rms_weight", "dt_rms_weight")


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


def _inference_forward(mixer, hidden_states, mask):
    """Mamba's mixer without a cache in eval mode (scoring, evaluation, a forward with `use_cache=False`) through the
    fused entry point, as transformers' mixer calls it in training: its own eval path alternates between memory
    layouts around every layer. None when the entry point declines."""
    hidden_states = modeling_mamba.apply_mask_to_padding_states(hidden_states, mask)
    projected_states = mixer.in_proj(hidden_states).transpose(1, 2)
    return modeling_mamba.mamba_inner_fn(
        projected_states,
        mixer.conv1d.weight,
        mixer.conv1d.bias if mixer.use_conv_bias else None,
        mixer.x_proj.weight,
        mixer.dt_proj.weight,
        mixer.out_proj.weight,
        mixer.out_proj.bias.float() if mixer.use_bias else None,
        -torch.exp(mixer.A_log.float()),
        None,
        None,
        mixer.D.float(),
        delta_bias=mixer.dt_proj.bias.float(),
        delta_softplus=True,
    )


def _fused_inference(mixer, mask, cache) -> bool:
    """Whether a mixer call takes `_inference_forward`: eval mode, no cache, and the fused path would run."""
    return (
        not mixer.training
        and cache is None
        and mask is not _UNKNOWN_MASK
        and _fusable(mixer)
        and not _use_pytorch_path(mixer.use_mambapy)
    )


def _recording_mixer(forward, fused_inference: bool = False):
    """Wraps `MambaMixer.forward` to record the mixer and its padding mask; every argument passes through unchanged.
    The mask is found by name in the wrapped signature, so a renamed cache argument cannot break the wrapper; should
    the mask itself be renamed, the mixer is recorded with an unknown mask and runs its own code. With
    `fused_inference` (Mamba's mixer), an eval-mode call without a cache goes to `_inference_forward`."""
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
            if fused_inference and _fused_inference(self, mask, cache):
                hidden_states = args[0] if args else kwargs["hidden_states"]
                result = _inference_forward(self, hidden_states, mask)
                if result is not None:
                    return result
            return forward(self, *args, **kwargs)
        finally:
            _current_mixer.reset(token)

    mixer_forward._vlmamba_dispatch = True
    return mixer_forward


def install_device_dispatch() -> None:
    """Routes transformers' Mamba entry points as in the module's table. Idempotent."""
    wrappers = {"mamba_selective_scan": _scan_dispatching, "mamba_inner_fn": _inner_dispatching}
    for module, mixer in MIXER_MODULES:
        for name in KERNEL_ENTRY_POINTS:
            bound = getattr(module, name, None)
            if bound is None or getattr(bound, "_vlmamba_dispatch", False):
                continue
            setattr(module, name, wrappers.get(name, _dispatching)(_EntryPoint(name, bound, module)))
        mixer = getattr(module, mixer)
        if not getattr(mixer.forward, "_vlmamba_dispatch", False):
            mixer.forward = _recording_mixer(mixer.forward, fused_inference=module is modeling_mamba)


# What CPU tensors run when the fused CPU scan is built (`cpu_kernel`).
_CPU_KERNEL_PATHS = {
    "mamba_inner_fn": "vlmamba's fused mixer (`mamba_inner`) with the fused CPU scan",
    "mamba_selective_scan": "vlmamba's fused CPU scan (`cpu_kernel`)",
}


def kernel_report() -> list[dict[str, str]]:
    """What runs in this process for each of transformers' Mamba entry points, under the current scan implementation.

    Returns:
        One dict per entry point: `entry_point`, `cuda` (the path of CUDA tensors), `cpu` (that of CPU tensors; other
        devices take the CUDA path of a machine without kernels) and `why` (what decided the CUDA path). A hub
        kernel runs only for a model loaded with `use_kernels=True`, which `cuda` says when the `kernels` package
        is in use.
    """
    install_device_dispatch()
    rows = []
    for name in KERNEL_ENTRY_POINTS:
        entry = getattr(getattr(modeling_mamba, name, None), "_vlmamba_entry", None)
        if entry is None:
            continue
        reference = _scan_implementation == "reference"
        # What runs without a kernel; CPU tensors take the fused CPU scan where it is built.
        fallback = "transformers' PyTorch path" if reference else entry.fallback
        if name == "mamba_inner_fn" and reference:
            fallback = "transformers' PyTorch path (the mixer's own code)"
        cpu = fallback
        if not reference and name in _CPU_KERNEL_PATHS and cpu_kernel.available():
            cpu = _CPU_KERNEL_PATHS[name]
        problem = entry.problem()
        if _scan_implementation != "auto":
            cuda, why = fallback, f'scan_implementation("{_scan_implementation}")'
        elif problem is None:
            cuda, why = f"{entry.distribution}'s `{entry.function}`", "bound by transformers, its extensions load"
        else:
            cuda, why = fallback, problem
        if entry.hub_layer is not None and _scan_implementation == "auto":
            cuda = f"hub kernel `{entry.hub_layer}` with use_kernels=True, else {cuda}"
        rows.append({"entry_point": name, "cuda": cuda, "cpu": cpu, "why": why})
    return rows


def env_report() -> str:
    """A table of which Mamba path runs on this machine, with the versions and settings that decide it (what
    `vlmamba env` prints)."""
    from importlib import metadata

    def version(distribution: str) -> str:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    from transformers.utils.import_utils import KERNELS_MAX_VERSION, KERNELS_MIN_VERSION, is_kernels_available

    if torch.cuda.is_available():
        device = ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count()))
    else:
        device = "none"
    hub = version("kernels")
    if hub != "not installed" and not is_kernels_available():
        hub += f" (not used: transformers takes {KERNELS_MIN_VERSION} <= version < {KERNELS_MAX_VERSION})"
    elif hub != "not installed":
        hub += " (a model loaded with use_kernels=True runs the hub kernels on CUDA)"
    tf32 = torch.get_float32_matmul_precision() != "highest" or torch.backends.cuda.matmul.allow_tf32
    lines = [
        f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}), CUDA devices: {device}",
        f"transformers {version('transformers')}, mamba-ssm {version('mamba-ssm')}, causal-conv1d "
        f"{version('causal-conv1d')}, triton {version('triton')}",
        f"kernels (hub kernels): {hub}",
        f"scan implementation: {_scan_implementation}",
        f"fused CPU scan: {cpu_kernel.describe()}",
        "fp32 matmuls on CUDA: "
        + (
            "TF32 (vlmamba's scan is then not exact to 1e-5; torch.set_float32_matmul_precision('highest') and "
            "torch.backends.cuda.matmul.allow_tf32 = False turn it off)"
            if tf32
            else "full fp32"
        ),
        "",
    ]
    rows = kernel_report()
    header = {"entry_point": "entry point", "cuda": "CUDA tensors", "cpu": "CPU tensors"}
    widths = {key: max(len(row[key]) for row in [header, *rows]) for key in header}
    for row in [header, *rows]:
        lines.append("  ".join(row[key].ljust(widths[key]) for key in header).rstrip())
    lines.append("")
    lines.extend(f"{row['entry_point']}: {row['why']}" for row in rows)
    return "\n".join(lines)


__all__ = [
    "DT_PROJ_ADAPTER_WARNING",
    "KERNEL_ENTRY_POINTS",
    "SCAN_IMPLEMENTATIONS",
    "env_report",
    "get_scan_implementation",
    "install_device_dispatch",
    "kernel_report",
    "packed_sequences",
    "scan_implementation",
    "set_scan_implementation",
]
