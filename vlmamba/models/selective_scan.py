# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""A pure-PyTorch selective scan that is exact, fast and light on memory, for devices without mamba-ssm's kernels.

The Mamba-1 recurrence, per channel `d` and state `n`:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        y_t = C_t . h_t + D * u_t   (then * silu(z_t))

transformers' PyTorch path runs it one token at a time under autograd; every step's backward then allocates a
tensor of the whole sequence, which makes training superlinear in the length. Here the recurrence runs inside one
`torch.autograd.Function` with a hand-written backward:

* Time is cut into chunks sized so that a chunk's (batch, T, state, channels) buffers stay in the CPU cache (on a
  GPU, larger chunks of bounded memory: fewer kernel launches per token); the
  buffers are allocated once per call and reused by every chunk. A chunk builds its decays and inputs with a few
  large vectorised ops along contiguous channels, runs the recurrence in place (one fused multiply-add per step), and
  contracts the states with `C` in one batched row-vector product.
* Only the state entering each chunk is kept for the backward, which recomputes the chunk and runs the adjoint
  recurrence `g_t = C_t * gy_t + exp(delta_{t+1} * A) * g_{t+1}` backwards, in place as well.
* The elementwise work around the recurrence (`delta * u`, the skip connection `D * u`, the gate `silu(z)` and their
  gradients) runs chunk by chunk inside the same function, on slices still in cache, instead of as whole-sequence
  temporaries under autograd; only the bias and softplus of `delta` run once over the whole sequence (the softplus
  is several times dearer than a multiplication, so it is not recomputed).
* The recurrence works in (batch, length, channels) memory. transformers' Mamba mixer produces `z` in that layout
  (as a transposed view) but `u` (the convolution's output) and `delta` in (batch, channels, length) memory: those
  two are transposed once, sample by sample (PyTorch's blocked 2-D transpose), and their gradients are handed back in
  the inputs' own layouts, so that the layers that produced them take them without strided copies.

The arithmetic is the sequential recurrence's: every decay is a single exponential (`exp2` of
the exponent times log2(e), the faster function on CPU) of a non-positive number, so strong
decays (large `delta * |A|`) underflow to zero exactly as in the sequential loop and nothing can overflow. Any length
works, including 1; there is no padding to a chunk multiple.

On CUDA the contractions with `C` and the backward's products with `B` and `C` are fp32 matmuls: with TF32 enabled
(`torch.set_float32_matmul_precision("high")` or `torch.backends.cuda.matmul.allow_tf32 = True`) they round their
inputs to 10 mantissa bits and the scan is no longer exact to 1e-5 (about 1e-3 relative); PyTorch's default,
`torch.set_float32_matmul_precision("highest")`, keeps full fp32.
"""

import torch
import torch.nn.functional as F

from .cpu_kernel import FusedScan, supports
from .cpu_kernel import problem as kernel_problem


# Elements (T * batch * channels * state) per chunk: 2**19 fp32 values are 2 MiB, which keeps a chunk's working
# buffers in a server CPU's cache while amortising per-op overhead over large ops (measured on one thread for one layer
# of the benchmark's model, batch 2, 512 channels, state 16: 2**19 ahead of 2**20 by 10-25% at lengths 128-4096,
# 2**18 and 2**21 slower).
_CHUNK_ELEMENTS = 2**19
_MIN_CHUNK, _MAX_CHUNK = 8, 256
# On a GPU every op is a kernel launch and no cache needs to hold the chunk: besides one launch per step (two in the
# backward) a chunk costs about ten launches in the forward and thirty-five in the backward, so larger chunks launch
# less per token, and the states kept for the backward (one per chunk) shrink with them. Memory bounds the chunk: each
# of the backward's four chunk buffers holds at most 2**24 values (64 MiB in fp32).
_ACCELERATOR_CHUNK_ELEMENTS = 2**24
_ACCELERATOR_MAX_CHUNK = 1024
_LOG2E = 1.4426950408889634
SCAN_BACKENDS = ("fused", "chunked")


def _chunk_size(length: int, state_elements: int, device_type: str = "cpu") -> int:
    """Time steps per chunk, for `state_elements` (batch * channels * state) values per step, on `device_type`."""
    if device_type == "cpu":
        budget, largest = _CHUNK_ELEMENTS, _MAX_CHUNK
    else:
        budget, largest = _ACCELERATOR_CHUNK_ELEMENTS, _ACCELERATOR_MAX_CHUNK
    size = _MIN_CHUNK
    while size < largest and size * 2 * state_elements <= budget:
        size *= 2
    return max(1, min(size, length))


class _ChunkedScan(torch.autograd.Function):
    """The whole scan, time on axis 1 (the layout of transformers' mixer), the state axis before the channel axis so
    that every large elementwise op runs along contiguous channels.

    Shapes (g = groups of channels sharing B and C, e = channels per group):
        u, delta, z: (b, L, g, e), any strides   A: (g, n, e)   B, C: (b, L, g, n)   D, delta_bias: (g, e)
        mask: (b, L, 1, 1)   continues: (b, L, 1, 1, 1), 0 where a packed sequence starts   h0: (b, g, n, e)
    Returns the gated output (b, L, g, e) and the final state (b, g, n, e).

    The elementwise work around the recurrence (`delta * u`, the skip connection `D * u`, the gate `silu(z)`) runs
    chunk by chunk too, on chunk-sized buffers: a (b, L, channels) temporary costs a pass over memory and, when fresh,
    page faults, while a chunk's slices are still in cache. `delta`'s bias, softplus and mask run once, over the whole
    sequence, into the (b, L, g, e) tensor kept for the backward.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, mask, continues, h0, softplus, chunk, recompute):
        batch, length = delta.shape[:2]
        keep = any(ctx.needs_input_grad) and not recompute
        bounds = [(begin, min(begin + chunk, length)) for begin in range(0, length, chunk)]
        out = delta.new_empty(delta.shape)
        shape = (batch, length, *h0.shape[1:])
        # exp2 is about twice as fast as exp on CPU; the decay is still one exponential of a non-positive number.
        A2 = A * _LOG2E
        size = min(chunk, length)
        if keep:
            all_decays, all_states = delta.new_empty(shape), delta.new_empty(shape)
        else:
            work = _Workspace((batch, size, *h0.shape[1:]), delta, ("decay", "states"))
        inputs = _Workspace((batch, size, *delta.shape[2:]), delta, ("dtu", "y"))
        starts = delta.new_empty((len(bounds), *h0.shape))
        # The output before the gate, for the gate's gradient.
        ungated = delta.new_empty(delta.shape) if z is not None and any(ctx.needs_input_grad) else None
        # The memory layouts of `u`, `delta` and `z`, for their gradients.
        channel_major = [value is not None and _channel_major(value) for value in (u, delta, z)]
        delta, pre = _effective_delta(delta, delta_bias, mask, softplus)
        u = _time_major_copy(u) if channel_major[0] else u
        z = _time_major_copy(z) if channel_major[2] else z
        h = h0
        for index, (begin, end) in enumerate(bounds):
            starts[index] = h
            if keep:
                decay, states = all_decays[:, begin:end], all_states[:, begin:end]
                decays, steps = decay.unbind(1), states.unbind(1)
            else:
                decay, states = work.decay[:, : end - begin], work.states[:, : end - begin]
                decays, steps = work.views["decay"], work.views["states"]
            x = u[:, begin:end]
            d, dtu = delta[:, begin:end], torch.mul(delta[:, begin:end], x, out=inputs.dtu[:, : end - begin])
            # The entry state is read from `starts`: `h` may be a row of the buffer this chunk overwrites.
            carried = None if continues is None else continues[:, begin:end]
            _chunk_states(d, dtu, A2, B[:, begin:end], starts[index], decay, states, decays, steps, carried)
            y = inputs.y[:, : end - begin]
            _contract(states, C[:, begin:end], out=y)
            if D is not None:
                y.addcmul_(x, D)
            if ungated is not None:
                ungated[:, begin:end] = y
            if z is not None:
                torch.mul(y, F.silu(z[:, begin:end]), out=out[:, begin:end])
            else:
                out[:, begin:end] = y
            h = steps[end - begin - 1]
        last = h.clone()
        saved = (u, delta, pre, A, B, C, D, z, ungated, mask, continues, starts)
        ctx.save_for_backward(*saved, *((all_decays, all_states) if keep else ()))
        ctx.keep, ctx.bounds, ctx.has_bias = keep, bounds, delta_bias is not None
        ctx.channel_major = channel_major
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_last):
        u, delta, pre, A, B, C, D, z, ungated, mask, continues, starts, *kept = ctx.saved_tensors
        bounds = ctx.bounds
        A2 = A * _LOG2E
        grad_u = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        grad_delta = torch.empty(delta.shape, dtype=delta.dtype, device=delta.device)
        grad_z = torch.empty(z.shape, dtype=z.dtype, device=z.device) if z is not None else None
        grad_A = torch.zeros_like(A)
        grad_B = torch.empty_like(B)
        grad_C = torch.empty_like(C)
        grad_D = torch.zeros_like(D) if D is not None else None
        grad_bias = delta.new_zeros(delta.shape[2:]) if ctx.has_bias else None
        if grad_out is None:
            grad_out = torch.zeros_like(grad_u)
        # The gradient reaching the last state of a chunk from everything after it.
        carry = grad_last.clone() if grad_last is not None else torch.zeros_like(starts[0])
        batch, size = starts.shape[1], bounds[0][1] - bounds[0][0]
        work = _Workspace(
            (batch, size, *starts.shape[2:]), delta, ("grads", "scratch") + (() if kept else ("decay", "states"))
        )
        names = ("dtu", "gate", "gy", "grad_dtu", "grad_delta")
        inputs = _Workspace((batch, size, *delta.shape[2:]), delta, names)

        for index in reversed(range(len(bounds))):
            begin, end = bounds[index]
            size = end - begin
            x, b, c, previous = u[:, begin:end], B[:, begin:end], C[:, begin:end], starts[index]
            d, dtu = delta[:, begin:end], torch.mul(delta[:, begin:end], x, out=inputs.dtu[:, :size])
            if kept:
                decay, states = kept[0][:, begin:end], kept[1][:, begin:end]
                decays = decay.unbind(1)
            else:
                decay, states = work.decay[:, :size], work.states[:, :size]
                decays = work.views["decay"]
                carried = None if continues is None else continues[:, begin:end]
                _chunk_states(d, dtu, A2, b, previous, decay, states, decays, work.views["states"], carried)
            grads, scratch = work.grads[:, :size], work.scratch[:, :size]

            # The gate: out = y * silu(z), with y = C . h + D * u.
            go = grad_out[:, begin:end]
            if z is not None:
                zc, gate, gy = z[:, begin:end], inputs.gate[:, :size], inputs.gy[:, :size]
                torch.sigmoid(zc, out=gate)
                # d silu(z) / dz = sigmoid(z) * (1 + z * (1 - sigmoid(z)))
                torch.mul(zc, gate, out=gy)
                gate.addcmul_(gate, gy, value=-1).add_(gy).mul_(go)
                torch.mul(gate, ungated[:, begin:end], out=grad_z[:, begin:end])
                gy.mul_(go)
            else:
                gy = go
            if D is not None:
                grad_D += (gy * x).sum(dim=(0, 1))

            # dL/dC_t[n] = sum_e gy_t[e] * h_t[n, e]
            torch.matmul(gy.unsqueeze(-2), states.transpose(-1, -2), out=grad_C[:, begin:end].unsqueeze(-2))

            # Adjoint recurrence, in place: g_t = C_t * gy_t + decay_{t+1} * g_{t+1}.
            torch.mul(c.unsqueeze(-1), gy.unsqueeze(-2), out=grads)
            steps = work.views["grads"]
            steps[size - 1].add_(carry)
            for t in range(size - 2, -1, -1):
                steps[t].addcmul_(decays[t + 1], steps[t + 1])
            torch.mul(decays[0], steps[0], out=carry)

            # Inputs of the step: delta_t * u_t * B_t.
            grad_dtu = inputs.grad_dtu[:, :size]
            torch.matmul(b.unsqueeze(-2), grads, out=grad_dtu.unsqueeze(-2))
            torch.matmul(dtu.unsqueeze(-2), grads.transpose(-1, -2), out=grad_B[:, begin:end].unsqueeze(-2))
            if D is not None:
                torch.mul(gy, D, out=grad_u[:, begin:end]).addcmul_(grad_dtu, d)
            else:
                torch.mul(grad_dtu, d, out=grad_u[:, begin:end])

            # Decays: dL/d(delta_t * A) = g_t * h_{t-1} * decay_t.
            grads[:, 1:] *= states[:, :-1]
            grads[:, 0] *= previous
            grads *= decay
            grad_d = inputs.grad_delta[:, :size]
            torch.mul(grads, A, out=scratch)
            torch.sum(scratch, dim=-2, out=grad_d)
            torch.mul(grads, d.unsqueeze(-2), out=scratch)
            grad_A += scratch.sum(dim=(0, 1))

            # delta = softplus(delta + bias) * mask
            grad_d.addcmul_(grad_dtu, x)
            if mask is not None:
                grad_d.mul_(mask[:, begin:end])
            if pre is not None:
                # d softplus(p) / dp = sigmoid(p)
                grad_d.mul_(torch.sigmoid(pre[:, begin:end], out=inputs.gate[:, :size]))
            if grad_bias is not None:
                grad_bias += grad_d.sum(dim=(0, 1))
            grad_delta[:, begin:end] = grad_d

        grad_h0 = carry if ctx.needs_input_grad[10] else None
        grad_u, grad_delta, grad_z = (
            _like(grad, flag) for grad, flag in zip((grad_u, grad_delta, grad_z), ctx.channel_major)
        )
        return (grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_bias, None, None, grad_h0, None, None,
                None)


def _fused(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state, h0, mask, reset, dtype, groups):
    """`selective_scan` through the compiled CPU kernel (`cpu_kernel.FusedScan`), from its (b, channels, L) inputs."""
    batch, channels, length = u.shape
    per_group, state = channels // groups, A.shape[1]

    def time_major(value):
        # (b, channels, L) -> (b, L, channels); copied, with its gradient handed back in the input's layout, when the
        # channels are not contiguous.
        value = value.to(dtype).transpose(1, 2)
        return value if value.stride(-1) == 1 else _TimeMajor.apply(value)

    def flat(value):
        return None if value is None else value.to(dtype).contiguous()

    y, last = FusedScan.apply(
        time_major(u),
        time_major(delta),
        A.to(dtype).reshape(groups, per_group, state).transpose(-1, -2).contiguous(),
        B.to(dtype).permute(0, 3, 1, 2).contiguous(),
        C.to(dtype).permute(0, 3, 1, 2).contiguous(),
        flat(D),
        None if z is None else time_major(z),
        flat(delta_bias),
        flat(mask),
        flat(reset),
        h0,
        softplus,
    )
    scan = y.to(u.dtype).transpose(1, 2)
    if return_last_state:
        return scan, last.transpose(-1, -2).reshape(batch, channels, state)
    return scan


class _TimeMajor(torch.autograd.Function):
    """A contiguous copy of a (b, L, channels) view of (b, channels, L) memory; its gradient returns in that memory."""

    @staticmethod
    def forward(ctx, value):
        view = value.unsqueeze(2)
        return _time_major_copy(view).squeeze(2)

    @staticmethod
    def backward(ctx, grad):
        return _like(grad.contiguous().unsqueeze(2), True).squeeze(2)


def _effective_delta(delta, delta_bias, mask, softplus):
    """softplus(delta + delta_bias) * mask as a contiguous (b, L, g, e) tensor, and delta + delta_bias (the softplus's
    input, for its gradient; None without softplus)."""
    value = _time_major_copy(delta)
    if delta_bias is not None:
        value += delta_bias
    pre = None
    if softplus:
        pre, value = value, F.softplus(value)
    if mask is not None:
        value *= mask
    return value, pre


def _channel_major(value: torch.Tensor) -> bool:
    """Whether a (b, L, g, e) view has (b, channels, L) memory, as the mixer's convolution output and `delta` do."""
    flat = value.flatten(2) if value.shape[2] == 1 or value.stride(2) == value.shape[3] * value.stride(3) else None
    return flat is not None and flat.shape[1] > 1 and flat.stride(1) == 1 and flat.stride(2) == flat.shape[1]


def _time_major_copy(value: torch.Tensor) -> torch.Tensor:
    """A contiguous (b, L, g, e) copy of a (b, L, g, e) view. From (b, channels, L) memory, a 2-D transpose per sample
    takes PyTorch's blocked copy, several times faster than a strided 3-D copy."""
    copy = torch.empty(value.shape, dtype=value.dtype, device=value.device)
    if _channel_major(value):
        for target, source in zip(copy.flatten(2).unbind(0), value.flatten(2).unbind(0)):
            target.copy_(source)
    else:
        copy.copy_(value)
    return copy


def _like(grad: torch.Tensor | None, channel_major: bool) -> torch.Tensor | None:
    """`grad`, a contiguous (b, L, g, e) tensor, in (b, channels, L) memory if `channel_major` (the memory of the
    input it is the gradient of): the layers that produced that input then take it without a strided copy."""
    if grad is None or not channel_major:
        return grad
    batch, length = grad.shape[:2]
    copy = grad.new_empty((batch, grad.shape[2] * grad.shape[3], length))
    for target, source in zip(copy.unbind(0), grad.flatten(2).unbind(0)):
        target.copy_(source.t())
    return copy.transpose(1, 2).unflatten(2, grad.shape[2:])


class _Workspace:
    """Chunk-sized buffers reused by every chunk, with their per-step views made once."""

    def __init__(self, shape, like, names):
        self.views = {}
        for name in names:
            buffer = like.new_empty(shape)
            setattr(self, name, buffer)
            self.views[name] = buffer.unbind(1)


def _chunk_states(delta, dtu, A2, B, h0, decay, states, decays, steps, continues=None):
    """Fills `decay` with exp(delta * A) (`A2` is A * log2(e)), times `continues` (0 where a sequence starts, which
    drops the state before it), and `states` with the chunk's states, from `h0`.

    `decays` and `steps` are the per-step views of `decay` and `states` (or of buffers they are the start of).
    """
    torch.mul(delta.unsqueeze(-2), A2, out=decay)
    torch.exp2(decay, out=decay)
    if continues is not None:
        decay *= continues
    torch.mul(B.unsqueeze(-1), dtu.unsqueeze(-2), out=states)
    steps[0].addcmul_(decays[0], h0)
    for t in range(1, states.shape[1]):
        steps[t].addcmul_(decays[t], steps[t - 1])


def _contract(states, C, out):
    """y_t[e] = sum_n C_t[n] * states_t[n, e], as a row-vector product (much faster than a matrix-vector one)."""
    torch.matmul(C.unsqueeze(-2), states, out=out.unsqueeze(-2))


def _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask, seq_idx=None):
    if u.dim() != 3:
        raise ValueError(f"`u` must be (batch, channels, length), got shape {tuple(u.shape)}.")
    batch, channels, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"`delta` must have the shape of `u` {tuple(u.shape)}, got {tuple(delta.shape)}.")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"`A` must be (channels={channels}, state), got shape {tuple(A.shape)}.")
    if A.is_complex():
        raise ValueError("`A` must be real; complex state matrices are not supported by this scan.")
    state = A.shape[1]
    for name, value in (("B", B), ("C", C)):
        if value.dim() == 3:
            value = value.unsqueeze(1)
        if value.dim() != 4 or value.shape[0] != batch or value.shape[2] != state or value.shape[3] != length:
            raise ValueError(
                f"`{name}` must be (batch={batch}, state={state}, length={length}) or (batch, groups, state, length), "
                f"got shape {tuple(value.shape)}."
            )
        if channels % value.shape[1]:
            raise ValueError(f"`{name}` has {value.shape[1]} groups, which do not divide the {channels} channels.")
    if B.dim() != C.dim() or (B.dim() == 4 and B.shape[1] != C.shape[1]):
        raise ValueError(f"`B` {tuple(B.shape)} and `C` {tuple(C.shape)} must have the same groups.")
    for name, value in (("D", D), ("delta_bias", delta_bias)):
        if value is not None and value.shape != (channels,):
            raise ValueError(f"`{name}` must be (channels={channels},), got shape {tuple(value.shape)}.")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"`z` must have the shape of `u` {tuple(u.shape)}, got {tuple(z.shape)}.")
    if initial_state is not None and initial_state.shape != (batch, channels, state):
        raise ValueError(
            f"`initial_state` must be (batch={batch}, channels={channels}, state={state}), "
            f"got shape {tuple(initial_state.shape)}."
        )
    if mask is not None and mask.shape != (batch, length):
        raise ValueError(f"`mask` must be (batch={batch}, length={length}), got shape {tuple(mask.shape)}.")
    if seq_idx is not None:
        if seq_idx.shape != (batch, length):
            raise ValueError(f"`seq_idx` must be (batch={batch}, length={length}), got shape {tuple(seq_idx.shape)}.")
        if seq_idx.is_floating_point() or seq_idx.is_complex():
            raise ValueError(f"`seq_idx` must hold integer sequence indices, got dtype {seq_idx.dtype}.")


def sequence_starts(seq_idx: torch.Tensor) -> torch.Tensor:
    """`(batch, length)` booleans, True where a packed sequence starts after another one: where `seq_idx` (the index
    of the sequence each token belongs to, as in mamba-ssm's kernels and transformers' `DataCollatorWithFlattening`)
    differs from the previous token's. The first token is not a start: a scan begins there from its initial state."""
    starts = torch.zeros(seq_idx.shape, dtype=torch.bool, device=seq_idx.device)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return starts


def positions_in_sequences(seq_idx: torch.Tensor) -> torch.Tensor:
    """The position of every token within its packed sequence, from `seq_idx` `(batch, length)`."""
    length = seq_idx.shape[-1]
    index = torch.arange(length, device=seq_idx.device).expand_as(seq_idx)
    starts = sequence_starts(seq_idx)
    starts[:, 0] = True
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - first


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    recompute: bool = True,
    seq_idx: torch.Tensor | None = None,
    backend: str | None = None,
    **unused,
):
    """Selective scan with the interface of mamba-ssm's `selective_scan_fn`, for CPU and any other device.

    Args:
        u, delta, z: `(batch, channels, length)`.
        A: `(channels, state)`, real (Mamba-1's `-exp(A_log)`).
        B, C: `(batch, state, length)`, or `(batch, groups, state, length)` where each group of `channels // groups`
            consecutive channels shares its B and C (as in multi-direction vision scans).
        D, delta_bias: `(channels,)`.
        delta_softplus: applies softplus to `delta + delta_bias`.
        return_last_state: also returns the state after the last step, `(batch, channels, state)`, in fp32 (or
            float64 for float64 inputs).
        initial_state: `(batch, channels, state)`; zeros when omitted. Gradients flow into it.
        mask: `(batch, length)`; a step where the mask is 0 leaves the state unchanged (its `delta` is zeroed after
            the softplus), so right-padded batches end with the state of their last real token.
        seq_idx: `(batch, length)` integers, the index of the packed sequence each token belongs to: the state is
            reset to zero where the index changes (`sequence_starts`), so each packed sequence is scanned as if alone.
        backend: "fused" (the compiled CPU kernel, `cpu_kernel`), "chunked" (the PyTorch chunked scan) or None:
            the fused kernel for CPU tensors when it is built and no `chunk_size` or `recompute=False` asks for the
            chunked scan, the chunked scan otherwise. Both compute the same recurrence, exact to 1e-5 in fp32.
        chunk_size: time steps per chunk; chosen from the tensor sizes when omitted. It changes speed, not results.
        recompute: for training, keep only the state entering each chunk and recompute the chunk in the backward
            (the default: the chunk's tensors are then still in cache, which on CPU is as fast as reading them back,
            and memory does not grow with batch * channels * state * length). `False` keeps the forward's decays and
            states instead, 2 * batch * channels * state * length values per call.

    The recurrence runs in fp32 (float64 for float64 inputs) whatever the input dtype; the output has `u`'s dtype.
    Extra keyword arguments of other scan implementations (`use_mambapy`, ...) are accepted and ignored.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask, seq_idx)
    batch, channels, length = u.shape
    state = A.shape[1]
    reset = None if seq_idx is None else sequence_starts(seq_idx)
    compute_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    groups = B.shape[1]
    per_group = channels // groups

    if initial_state is None:
        h0 = torch.zeros(batch, groups, state, per_group, dtype=compute_dtype, device=u.device)
    else:
        h0 = initial_state.to(compute_dtype).reshape(batch, groups, per_group, state).transpose(-1, -2).contiguous()
    if length == 0:
        scan = u.new_zeros(u.shape)
        last = h0
    else:

        def time_major(value):
            # (b, channels, L) -> a (b, L, g, e) view; the scan copies it to (b, L, channels) memory if it is not.
            return value.to(compute_dtype).transpose(1, 2).unflatten(2, (groups, per_group))

        def per_channel(value):
            return None if value is None else value.to(compute_dtype).reshape(groups, per_group)

        if backend is not None and backend not in SCAN_BACKENDS:
            raise ValueError(f"Unknown scan backend {backend!r}; choose one of {SCAN_BACKENDS} or None.")
        if backend is None and (chunk_size is not None or not recompute):
            backend = "chunked"
        fused = supports(u.device, compute_dtype)
        if backend == "fused" and not fused:
            why = kernel_problem() or f"it takes float32 or float64 CPU tensors, got {u.dtype} on {u.device}"
            raise RuntimeError(f"The fused CPU scan cannot run here: {why}.")
        if backend != "chunked" and fused:
            return _fused(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, h0, mask, reset,
                          compute_dtype, groups)
        chunk = chunk_size or _chunk_size(length, batch * channels * state, u.device.type)
        y, last = _ChunkedScan.apply(
            time_major(u),
            time_major(delta),
            A.to(compute_dtype).reshape(groups, per_group, state).transpose(-1, -2).contiguous(),
            B.to(compute_dtype).permute(0, 3, 1, 2).contiguous(),
            C.to(compute_dtype).permute(0, 3, 1, 2).contiguous(),
            per_channel(D),
            None if z is None else time_major(z),
            per_channel(delta_bias),
            None if mask is None else mask.to(compute_dtype).reshape(batch, length, 1, 1),
            None if reset is None else (~reset).to(compute_dtype).reshape(batch, length, 1, 1, 1),
            h0,
            delta_softplus,
            chunk,
            recompute,
        )
        # The output is (b, L, channels) in memory, where transformers' mixer consumes it.
        scan = y.flatten(2).to(u.dtype).transpose(1, 2)
    if return_last_state:
        return scan, last.transpose(-1, -2).reshape(batch, channels, state)
    return scan


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    **unused,
):
    """The same computation one step at a time under autograd: slow, simple, the reference `selective_scan` is
    tested against. Runs in the inputs' dtype (use float64 for a high-precision reference)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask, seq_idx)
    batch, channels, length = u.shape
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    repeat = channels // B.shape[1]
    B = B.repeat_interleave(repeat, dim=1)  # (b, d, n, L)
    C = C.repeat_interleave(repeat, dim=1)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if mask is not None:
        delta = delta * mask.to(delta.dtype)[:, None, :]
    h = initial_state if initial_state is not None else u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for t in range(length):
        if seq_idx is not None and t > 0:
            # A packed sequence starts here: it sees nothing of the one before.
            h = h * (seq_idx[:, t] == seq_idx[:, t - 1]).to(h.dtype)[:, None, None]
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        outputs.append((h * C[..., t]).sum(-1))
    y = torch.stack(outputs, dim=-1) if outputs else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y


__all__ = ["SCAN_BACKENDS", "positions_in_sequences", "selective_scan", "selective_scan_sequential", "sequence_starts"]
