# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""A pure-PyTorch selective scan that is exact, fast and light on memory, for devices without mamba-ssm's kernels.

The Mamba-1 recurrence, per channel `d` and state `n`:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        y_t = C_t . h_t + D * u_t   (then * silu(z_t))

transformers' PyTorch path runs it one token at a time under autograd; every step's backward then allocates a
tensor of the whole sequence, which makes training superlinear in the length. Here the recurrence runs inside one
`torch.autograd.Function` with a hand-written backward:

* Time is cut into chunks sized so that a chunk's (T, batch, channels, state) tensors stay in the CPU cache. A chunk
  builds its decays and inputs with a few large vectorised ops, runs the recurrence in place (one fused
  multiply-add per step on contiguous, time-major memory), and contracts the states with `C` in one batched matmul.
* Only the state entering each chunk is kept for the backward, which recomputes the chunk and runs the adjoint
  recurrence `g_t = C_t * gy_t + exp(delta_{t+1} * A) * g_{t+1}` backwards, in place as well.

The arithmetic is the sequential recurrence's: every decay is a single `exp` of a non-positive number, so strong
decays (large `delta * |A|`) underflow to zero exactly as in the sequential loop and nothing can overflow. Any length
works, including 1; there is no padding to a chunk multiple.
"""

import torch
import torch.nn.functional as F


# Elements (T * batch * channels * state) per chunk: 2**20 fp32 values are 4 MiB, which keeps a chunk's handful of
# working tensors in a server CPU's cache while amortising per-op overhead over large ops.
_CHUNK_ELEMENTS = 2**20
_MIN_CHUNK, _MAX_CHUNK = 8, 256


def _chunk_size(length: int, state_elements: int) -> int:
    size = _MIN_CHUNK
    while size < _MAX_CHUNK and size * 2 * state_elements <= _CHUNK_ELEMENTS:
        size *= 2
    return max(1, min(size, length))


class _ChunkedScan(torch.autograd.Function):
    """Core recurrence on time-major tensors.

    Shapes (g = groups of channels sharing B and C, e = channels per group):
        delta, dtu: (L, b, g, e)   A: (g, e, n)   B, C: (L, b, g, n)   h0: (b, g, e, n)
    Returns y: (L, b, g, e) and the final state (b, g, e, n).
    """

    @staticmethod
    def forward(ctx, delta, dtu, A, B, C, h0, chunk, recompute):
        length = delta.shape[0]
        keep = any(ctx.needs_input_grad) and not recompute
        y = delta.new_empty(delta.shape)
        shape = (*delta.shape, A.shape[-1])
        all_decays = delta.new_empty(shape) if keep else None
        all_states = delta.new_empty(shape) if keep else None
        starts = []
        h = h0
        for begin in range(0, length, chunk):
            end = min(begin + chunk, length)
            starts.append(h)
            decay = all_decays[begin:end] if keep else None
            states = all_states[begin:end] if keep else None
            states = _chunk_states(delta[begin:end], dtu[begin:end], A, B[begin:end], h, decay=decay, out=states)
            _contract(states, C[begin:end], out=y[begin:end])
            h = states[-1] if keep else states[-1].clone()
        if keep:
            ctx.save_for_backward(delta, dtu, A, B, C, h0, all_decays, all_states)
        else:
            ctx.save_for_backward(delta, dtu, A, B, C, torch.stack(starts))
        ctx.keep, ctx.chunk = keep, chunk
        return y, h.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_last):
        if ctx.keep:
            delta, dtu, A, B, C, h0, all_decays, all_states = ctx.saved_tensors
        else:
            delta, dtu, A, B, C, starts = ctx.saved_tensors
            h0 = starts[0]
        chunk = ctx.chunk
        length = delta.shape[0]
        grad_delta = torch.empty_like(delta)
        grad_dtu = torch.empty_like(dtu)
        grad_A = torch.zeros_like(A)
        grad_B = torch.empty_like(B)
        grad_C = torch.empty_like(C)
        grad_y = torch.zeros_like(delta) if grad_y is None else grad_y.contiguous()
        # The gradient reaching the last state of a chunk from everything after it.
        carry = grad_last.clone() if grad_last is not None else torch.zeros_like(h0)
        scratch = None

        for index, begin in reversed(list(enumerate(range(0, length, chunk)))):
            end = min(begin + chunk, length)
            d, x, b, c, gy = delta[begin:end], dtu[begin:end], B[begin:end], C[begin:end], grad_y[begin:end]
            if ctx.keep:
                decay, states = all_decays[begin:end], all_states[begin:end]
                previous = all_states[begin - 1] if begin else h0
            else:
                previous = starts[index]
                decay = torch.exp(d.unsqueeze(-1) * A)
                states = _chunk_states(d, x, A, b, previous, decay=decay, computed=True)
            if scratch is None or scratch.shape != decay.shape:
                scratch = torch.empty_like(decay)

            # dL/dC_t = sum_e gy_t[e] * h_t[e, :]
            torch.matmul(gy.unsqueeze(-2), states, out=grad_C[begin:end].unsqueeze(-2))

            # Adjoint recurrence, in place: g_t = gy_t * C_t + decay_{t+1} * g_{t+1}.
            grads = gy.unsqueeze(-1) * c.unsqueeze(-2)
            grads[-1] += carry
            steps, decays = grads.unbind(0), decay.unbind(0)  # views, cheaper than indexing every step
            for t in range(end - begin - 2, -1, -1):
                steps[t].addcmul_(decays[t + 1], steps[t + 1])
            carry = decay[0] * grads[0]

            # Inputs of the step: u_t = dtu_t * B_t.
            torch.matmul(b.unsqueeze(-2), grads.transpose(-1, -2), out=grad_dtu[begin:end].unsqueeze(-2))
            torch.matmul(x.unsqueeze(-2), grads, out=grad_B[begin:end].unsqueeze(-2))

            # Decays: dL/d(delta_t * A) = g_t * h_{t-1} * decay_t.
            grads[1:] *= states[:-1]
            grads[0] *= previous
            grads *= decay
            torch.mul(grads, A, out=scratch)
            torch.sum(scratch, dim=-1, out=grad_delta[begin:end])
            torch.mul(grads, d.unsqueeze(-1), out=scratch)
            grad_A += scratch.sum(dim=(0, 1))

        grad_h0 = carry if ctx.needs_input_grad[5] else None
        return grad_delta, grad_dtu, grad_A, grad_B, grad_C, grad_h0, None, None


def _chunk_states(delta, dtu, A, B, h0, decay=None, out=None, computed=False):
    """States h_t of one chunk, (T, b, g, e, n), starting from `h0`.

    `decay` is filled with exp(delta * A) unless `computed`; `out` receives the states when given.
    """
    if decay is None:
        decay = torch.exp(delta.unsqueeze(-1) * A)
    elif not computed:
        torch.mul(delta.unsqueeze(-1), A, out=decay)
        decay.exp_()
    if out is None:
        states = dtu.unsqueeze(-1) * B.unsqueeze(-2)
    else:
        states = torch.mul(dtu.unsqueeze(-1), B.unsqueeze(-2), out=out)
    steps, decays = states.unbind(0), decay.unbind(0)
    steps[0].addcmul_(decays[0], h0)
    for t in range(1, len(steps)):
        steps[t].addcmul_(decays[t], steps[t - 1])
    return states


def _contract(states, C, out):
    """y_t[e] = sum_n states_t[e, n] * C_t[n], as a row-vector product (much faster than a matrix-vector one)."""
    torch.matmul(C.unsqueeze(-2), states.transpose(-1, -2), out=out.unsqueeze(-2))


def _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask):
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
    **unused,
):
    """Selective scan with the interface of mamba-ssm's `selective_scan_fn`, in plain PyTorch.

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
        chunk_size: time steps per chunk; chosen from the tensor sizes when omitted. It changes speed, not results.
        recompute: for training, keep only the state entering each chunk and recompute the chunk in the backward
            (the default: the chunk's tensors are then still in cache, which on CPU is as fast as reading them back,
            and memory does not grow with batch * channels * state * length). `False` keeps the forward's decays and
            states instead, 2 * batch * channels * state * length values per call.

    The recurrence runs in fp32 (float64 for float64 inputs) whatever the input dtype; the output has `u`'s dtype.
    Extra keyword arguments of other scan implementations (`use_mambapy`, ...) are accepted and ignored.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask)
    batch, channels, length = u.shape
    state = A.shape[1]
    compute_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    groups = B.shape[1]
    per_group = channels // groups

    delta = delta.to(compute_dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute_dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if mask is not None:
        delta = delta * mask.to(compute_dtype)[:, None, :]
    u_compute = u.to(compute_dtype)

    if initial_state is None:
        h0 = torch.zeros(batch, groups, per_group, state, dtype=compute_dtype, device=u.device)
    else:
        h0 = initial_state.to(compute_dtype).reshape(batch, groups, per_group, state)

    if length == 0:
        scan = u_compute.new_zeros(u.shape)
        last = h0
    else:

        def time_major(value):  # (b, d, L) -> (L, b, g, e)
            return value.permute(2, 0, 1).reshape(length, batch, groups, per_group)

        chunk = chunk_size or _chunk_size(length, batch * channels * state)
        y, last = _ChunkedScan.apply(
            time_major(delta).contiguous(),
            time_major(delta * u_compute).contiguous(),
            A.to(compute_dtype).reshape(groups, per_group, state),
            B.to(compute_dtype).permute(3, 0, 1, 2).contiguous(),
            C.to(compute_dtype).permute(3, 0, 1, 2).contiguous(),
            h0,
            chunk,
            recompute,
        )
        scan = y.reshape(length, batch, channels).permute(1, 2, 0)

    if D is not None:
        scan = scan + u_compute * D.to(compute_dtype)[:, None]
    if z is not None:
        scan = scan * F.silu(z.to(compute_dtype))
    out = scan.to(u.dtype)
    if return_last_state:
        return out, last.reshape(batch, channels, state)
    return out


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
    **unused,
):
    """The same computation one step at a time under autograd: slow, simple, the reference `selective_scan` is
    tested against. Runs in the inputs' dtype (use float64 for a high-precision reference)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state, mask)
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
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        outputs.append((h * C[..., t]).sum(-1))
    y = torch.stack(outputs, dim=-1) if outputs else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y


__all__ = ["selective_scan", "selective_scan_sequential"]
