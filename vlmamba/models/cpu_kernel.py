# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The fused CPU selective scan (C++ in `cpu_kernel_source.py`): built at first use, loaded with ctypes.

The PyTorch chunked scan (`selective_scan.py`) spends most of its time at short lengths and small states on many
small whole-tensor passes (a few per time step and per chunk) over `(batch, chunk, state, channels)` buffers. The
fused kernel makes one pass over time per block of 16 channels (8 in float64), holding the block's state in a local
array, and computes everything around the recurrence (softplus, masks, resets, skip connection, gate and all their
gradients) in that pass. Its backward keeps nothing from the forward but the state entering every 64 steps: it
recomputes each 64-step stretch's states, then runs the adjoint recurrence backwards through them.

Building: the system's C++ compiler (`$CXX`, else `c++`, `g++` or `clang++`) compiles the one source file (no Python
or torch headers; a few seconds) into `$VLMAMBA_CACHE_DIR/cpu_kernel/<key>/` (default `~/.cache/vlmamba`), where
the key hashes the source, the compiler, the flags and the CPU, so a cache shared between machines never loads a
library built for another CPU. It is first tried with `-march=native`, then without. Without a compiler, or when the
build fails, a log line says why once and the PyTorch chunked scan runs: the results are the same (both are exact to
1e-5 against the float64 sequential recurrence). `VLMAMBA_CPU_KERNEL=0` turns the kernel off.

Threads: the work items (sample, group, part of the group's channels) are split into `torch.get_num_threads()`
ranges run on a thread pool; ctypes releases the GIL for the duration of each call.
"""

import concurrent.futures
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from .cpu_kernel_source import CPP_SOURCE


logger = logging.getLogger(__name__)

ABI_VERSION = 2
# Steps between the states the forward keeps for the backward (its recomputation buffer holds this many states).
CHECKPOINT_EVERY = 64
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_WIDTHS = {torch.float32: 16, torch.float64: 8}  # channels per block, as in the source
# Tried in order until one builds and loads. With OpenMP, the library joins the OpenMP runtime torch loaded (same
# soname), so its threads are torch's own: separate threads would compete with torch's, which spin for a while after
# every parallel op.
# -O2 rather than -O3: GCC 12's -O3 build of the backward was measured 1.5x slower (batch 32, 100 tokens, state 8).
_FLAG_SETS = (("-O2", "-march=native", "-fopenmp"), ("-O2", "-march=native"), ("-O2",))
_lock = threading.Lock()
_library = None
_problem: str | None = None
_loaded = False
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """What a `-march=native` build depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _cache_dir() -> Path:
    root = os.environ.get("VLMAMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vlmamba"
    )
    return Path(root) / "cpu_kernel"


def _build(compiler: str):
    """The loaded library, built now unless the cache holds it. Raises RuntimeError with every attempt's error."""
    source = CPP_SOURCE.encode()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"{compiler} --version failed: {error}") from error
    errors = []
    for flags in _FLAG_SETS:
        try:
            library = _open(_compiled(compiler, version, source, flags))
            library.flags = " ".join(flags)
            return library
        except (OSError, RuntimeError, AttributeError) as error:
            errors.append(str(error))
    raise RuntimeError("; ".join(errors))


def _open(path: Path):
    library = ctypes.CDLL(str(path))
    if library.vlmamba_scan_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path} is of another version")
    for name in ("forward_f32", "forward_f64", "backward_f32", "backward_f64"):
        function = getattr(library, f"vlmamba_scan_{name}")
        function.restype = None
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    library.openmp = bool(library.vlmamba_scan_openmp())
    return library


def _compiled(compiler: str, version: str, source: bytes, flags) -> Path:
    """The library built with `flags`, from the cache or built now."""
    key = hashlib.sha256(
        b"\0".join([source, compiler.encode(), version.encode(), " ".join(flags).encode(),
                    _cpu_signature().encode(), platform.machine().encode()])
    ).hexdigest()[:20]
    folder = _cache_dir() / key
    target = folder / "libvlmamba_scan.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    code = folder / "selective_scan_cpu.cpp"
    if not code.exists() or code.read_bytes() != source:
        handle, written = tempfile.mkstemp(dir=folder, suffix=".cpp.partial")
        with os.fdopen(handle, "wb") as file:
            file.write(source)
        os.replace(written, code)
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
    os.close(handle)
    command = [compiler, *flags, "-std=c++11", "-shared", "-fPIC", "-o", partial, str(code)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"{' '.join(command)}: {error}") from error
    if result.returncode != 0:
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}: {result.stderr.strip()[-600:]}")
    os.replace(partial, target)  # atomic: concurrent builds each write their own file
    return target


def _load():
    global _library, _problem, _loaded
    with _lock:
        if _loaded:
            return _library
        _loaded = True
        if os.environ.get("VLMAMBA_CPU_KERNEL", "1").strip().lower() in ("0", "false", "no", "off"):
            _problem = "turned off by VLMAMBA_CPU_KERNEL"
            return None
        compiler = _compiler()
        if compiler is None:
            _problem = "no C++ compiler found (set CXX, or install g++ or clang++)"
        else:
            try:
                _library = _build(compiler)
            except RuntimeError as error:
                _problem = f"building it failed: {error}"
        if _problem:
            logger.info(f"vlmamba: the fused CPU scan is not available ({_problem}); the PyTorch chunked scan runs.")
        return _library


def available() -> bool:
    """Whether the fused CPU scan is built and loaded (building it on the first call)."""
    return _load() is not None


def problem() -> str | None:
    """Why the fused CPU scan is not available, or None when it is."""
    _load()
    return _problem



def describe() -> str:
    """One line on the fused CPU scan: built (with which flags, on how many threads' runtime) or why not."""
    library = _load()
    if library is None:
        return f"not available ({_problem}); the chunked scan runs on CPU"
    threads = "torch's OpenMP threads" if library.openmp else "a thread pool (built without OpenMP)"
    return f"built ({library.flags}, {library._name}), runs on {threads}"


def supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the kernel takes tensors of this device and dtype (CPU; float32 or float64) and is built."""
    return device.type == "cpu" and dtype in _DTYPES and available()


def _run(function, sizes, strides, inputs, softplus, outputs, items: int) -> None:
    """Calls `function` over `items` work items, split across `torch.get_num_threads()` threads."""
    global _pool, _pool_size
    threads = max(1, min(torch.get_num_threads(), items))
    args = (_array(ctypes.c_int64, sizes), _array(ctypes.c_int64, strides), _pointers(inputs), int(softplus),
            _pointers(outputs))
    if threads == 1 or _library.openmp:
        function(*args, 0, items, threads)
        return
    with _lock:
        if _pool is None or _pool_size < threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = concurrent.futures.ThreadPoolExecutor(threads, "vlmamba-scan"), threads
        pool = _pool
    bounds = [items * index // threads for index in range(threads + 1)]
    futures = [pool.submit(function, *args, bounds[index], bounds[index + 1], 1) for index in range(1, threads)]
    function(*args, bounds[0], bounds[1], 1)
    for future in futures:
        future.result()


def _array(kind, values):
    return (kind * len(values))(*values)


def _pointers(tensors):
    return (ctypes.c_void_p * len(tensors))(*[None if t is None else t.data_ptr() for t in tensors])


def _parts(batch: int, groups: int, per_group: int, dtype) -> int:
    """Parts per group's channels: enough work items for every thread, at most one per block of channels."""
    blocks = -(-per_group // _WIDTHS[dtype])
    wanted = -(-torch.get_num_threads() // (batch * groups))
    return max(1, min(blocks, wanted))


def _channel_contiguous(value):
    """`value` (b, L, D) with unit channel stride (a copy if needed), and its batch and time strides."""
    if value.stride(-1) != 1:
        value = value.contiguous()
    return value, value.stride(0), value.stride(1)


class FusedScan(torch.autograd.Function):
    """The scan through the compiled kernel. Shapes (D = groups * per_group):

        u, delta, z: (b, L, D), unit channel stride   A: (g, n, E) contiguous   B, C: (b, L, g, n) contiguous
        D, delta_bias: (D,)   mask, reset: (b, L)   h0: (b, g, n, E) contiguous

    Returns the gated output (b, L, D) and the final state (b, g, n, E). All tensors share one dtype.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, mask, reset, h0, softplus):
        library = _load()
        batch, length, channels = u.shape
        groups, state, per_group = A.shape
        dtype = u.dtype
        u, u_batch, u_time = _channel_contiguous(u)
        delta, delta_batch, delta_time = _channel_contiguous(delta)
        if z is not None:
            z, z_batch, z_time = _channel_contiguous(z)
        else:
            z_batch = z_time = 0
        needs_grad = any(ctx.needs_input_grad)
        parts = _parts(batch, groups, per_group, dtype)
        every = CHECKPOINT_EVERY if needs_grad else 0
        sizes = (batch, length, groups, per_group, state, parts, every)
        strides = (u_batch, u_time, delta_batch, delta_time, z_batch, z_time)
        inputs = (u, delta, A, B, C, D, delta_bias, z, mask, reset, h0)
        out = u.new_empty((batch, length, channels))
        last = u.new_empty((batch, groups, state, per_group))
        checkpoints = u.new_empty((batch, -(-length // every), groups, state, per_group)) if every else None
        _run(getattr(library, f"vlmamba_scan_forward_{_DTYPES[dtype]}"), sizes, strides, inputs, softplus,
             (out, last, checkpoints), batch * groups * parts)
        if needs_grad:
            ctx.save_for_backward(*inputs, checkpoints)
            ctx.sizes, ctx.strides, ctx.softplus = sizes, strides, softplus
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_last):
        library = _load()
        *inputs, checkpoints = ctx.saved_tensors
        u, delta, A, B, C, D, delta_bias, z, mask, reset, h0 = inputs
        batch, length, groups, per_group, state, parts, _ = ctx.sizes
        new = u.new_empty
        grad_out = u.new_zeros(u.shape) if grad_out is None else grad_out.contiguous()
        grad_last = None if grad_last is None else grad_last.contiguous()
        grads = {
            "u": new(u.shape), "delta": new(u.shape), "z": new(u.shape) if z is not None else None,
            "B": u.new_zeros((parts, *B.shape)), "C": u.new_zeros((parts, *C.shape)),
            "A": new((batch, *A.shape)), "D": new((batch, u.shape[-1])) if D is not None else None,
            "bias": new((batch, u.shape[-1])) if delta_bias is not None else None,
            "h0": new((batch, *A.shape)) if ctx.needs_input_grad[10] else None,
        }
        pointers = (grad_out, grad_last, checkpoints, *grads.values())
        _run(getattr(library, f"vlmamba_scan_backward_{_DTYPES[u.dtype]}"), ctx.sizes, ctx.strides, inputs,
             ctx.softplus, pointers, batch * groups * parts)
        return (
            grads["u"], grads["delta"], grads["A"].sum(0), grads["B"].sum(0), grads["C"].sum(0),
            None if grads["D"] is None else grads["D"].sum(0), grads["z"],
            None if grads["bias"] is None else grads["bias"].sum(0), None, None, grads["h0"], None,
        )


__all__ = ["FusedScan", "available", "describe", "problem", "supports"]
