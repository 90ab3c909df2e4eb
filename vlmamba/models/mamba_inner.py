# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Mamba's whole mixer (convolution, projections, selective scan, gate, output projection) for training, in plain
PyTorch, in the (batch, length, channels) memory layout throughout.

transformers' Mamba mixer, in training mode without a cache, first offers its work to `mamba_inner_fn` (mamba-ssm's
fused kernel) and runs its own step-by-step path only when that returns None. That path alternates between
(batch, channels, length) memory (the convolution) and (batch, length, channels) memory (the projections, the scan),
so every layer copies its largest tensors across layouts several times in the forward and again in the backward.
`mamba_inner` implements the kernel's interface on any device: the depthwise causal convolution runs along the time
axis of (batch, length, channels) memory (a few shifted multiply-adds, no transposes), and the projections and the
chunked scan take the result where it lies. It computes what the mixer's own path computes, including the padding
mask the mixer applies after the convolution (passed as `mask`).
"""

import torch
import torch.nn.functional as F

from .selective_scan import selective_scan


class _CausalConvSilu(torch.autograd.Function):
    """silu(depthwise causal convolution of `x` along time + bias) * mask, in (batch, length, channels) memory.

    x: (b, L, d), any strides with contiguous channels   taps: (k, d), contiguous (tap k sees the input k - k_last
    steps back)   bias: (d,) or None   mask: (b, L, 1) or None   same: None, or per tap k < k_last a (b, L - shift, 1)
    tensor, 1 where the input `shift` steps back belongs to the same packed sequence (0 drops it)
    """

    @staticmethod
    def forward(ctx, x, taps, bias, mask, same):
        length, width = x.shape[1], taps.shape[0]
        pre = torch.mul(x, taps[width - 1])
        for k in range(width - 1):
            shift = width - 1 - k
            if shift < length:
                earlier = x[:, : length - shift]
                if same is not None:
                    earlier = earlier * same[k]
                pre[:, shift:].addcmul_(earlier, taps[k])
        if bias is not None:
            pre += bias
        out = F.silu(pre)
        if mask is not None:
            out *= mask
        ctx.save_for_backward(x, taps, pre, mask, *(same or ()))
        ctx.has_bias, ctx.packed = bias is not None, same is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, taps, pre, mask, *same = ctx.saved_tensors
        length, width = x.shape[1], taps.shape[0]
        # d silu(p) / dp = sigmoid(p) + silu(p) * (1 - sigmoid(p)), in place on the two fresh buffers.
        sig = torch.sigmoid(pre)
        grad_pre = torch.mul(pre, sig)
        grad_pre.addcmul_(sig, grad_pre, value=-1).add_(sig).mul_(grad_out)
        if mask is not None:
            grad_pre *= mask
        grad_x = torch.mul(grad_pre, taps[width - 1])
        grad_taps = torch.zeros_like(taps)
        products = sig  # reused: a fresh buffer per product would cost a page fault per 4 KiB
        for k in range(width):
            shift = width - 1 - k
            if shift >= length:
                continue
            later = grad_pre[:, shift:]
            if shift and ctx.packed:
                later = later * same[k]
            if shift:
                grad_x[:, : length - shift].addcmul_(later, taps[k])
            product = torch.mul(later, x[:, : length - shift], out=products[:, : length - shift])
            # Over time, then over the batch: a single reduction over both axes of a slice is many times slower.
            grad_taps[k] = product.sum(1).sum(0)
        grad_bias = grad_pre.sum(1).sum(0) if ctx.has_bias else None
        return grad_x, grad_taps, grad_bias, None, None


class _Halves(torch.autograd.Function):
    """The two halves of the last axis, as views. Sliced under autograd instead, each half's backward would fill a
    full-size gradient with zeros and the two would then be added."""

    @staticmethod
    def forward(ctx, value, split):
        ctx.shapes = (value[..., :split].shape, value[..., split:].shape)
        return value[..., :split], value[..., split:]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        like = grads[0] if grads[0] is not None else grads[1]
        halves = [grad if grad is not None else like.new_zeros(shape) for grad, shape in zip(grads, ctx.shapes)]
        return torch.cat(halves, dim=-1), None


def causal_conv1d_silu(x, weight, bias=None, mask=None, seq_idx=None):
    """Depthwise causal convolution along time, then silu, then the padding mask.

    Args:
        x: `(batch, length, channels)` with contiguous channels.
        weight: `(channels, width)` or `(channels, 1, width)` (an `nn.Conv1d` weight).
        bias: `(channels,)` or None.
        mask: `(batch, length)` or None; masked positions output 0.
        seq_idx: `(batch, length)` integers, the packed sequence of each token, or None: a tap never reads a token of
            another sequence (as if each sequence were convolved alone, with its own zero left padding).
    Returns `(batch, length, channels)`.
    """
    if weight.dim() == 3:
        weight = weight.squeeze(1)
    if mask is not None:
        mask = mask.to(x.dtype).unsqueeze(-1)
    same = None
    if seq_idx is not None:
        if seq_idx.shape != x.shape[:2]:
            raise ValueError(f"`seq_idx` must be (batch, length) = {tuple(x.shape[:2])}, got {tuple(seq_idx.shape)}.")
        width, length = weight.shape[-1], x.shape[1]
        same = tuple(
            (seq_idx[:, width - 1 - k :] == seq_idx[:, : length - (width - 1 - k)]).to(x.dtype).unsqueeze(-1)
            for k in range(width - 1)
        )
    # One contiguous row per tap: broadcasting a strided column along the channels is several times slower.
    return _CausalConvSilu.apply(x, weight.t().contiguous(), bias, mask, same)


def mamba_inner(
    xz: torch.Tensor,
    conv1d_weight: torch.Tensor,
    conv1d_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    delta_proj_weight: torch.Tensor,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor | None = None,
    C: torch.Tensor | None = None,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    B_proj_bias: torch.Tensor | None = None,
    C_proj_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    mask: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    **unused,
) -> torch.Tensor:
    """The interface of mamba-ssm's `mamba_inner_fn`, in plain PyTorch.

    Args:
        xz: `(batch, 2 * channels, length)`, the input projection (transformers' mixer passes a transposed view of
            `(batch, length, 2 * channels)` memory, which is the layout worked in here).
        conv1d_weight: `(channels, 1, width)`; conv1d_bias: `(channels,)` or None.
        x_proj_weight: `(rank + 2 * state, channels)`; delta_proj_weight: `(channels, rank)`.
        out_proj_weight: `(hidden, channels)`; out_proj_bias: `(hidden,)` or None.
        A: `(channels, state)`. B, C: None (input-dependent, from `x_proj`), as transformers' mixer passes them.
        D, delta_bias: `(channels,)`.
        mask: `(batch, length)` padding mask, applied after the convolution as transformers' mixer does (mamba-ssm's
            kernel takes none).
        seq_idx: `(batch, length)` packed-sequence index of each token (see `selective_scan`): the convolution and the
            scan restart at each sequence.
    Returns the mixer's output, `(batch, length, hidden)`.
    """
    if B is not None or C is not None:
        raise ValueError("`mamba_inner` takes input-dependent B and C only (pass B=None and C=None).")
    normed = [name for name in ("b_rms_weight", "c_rms_weight", "dt_rms_weight") if unused.get(name) is not None]
    if normed:
        # FalconMamba's norms on B, C and dt: dropped here, they would change what the mixer computes.
        raise ValueError(f"`mamba_inner` does not apply {', '.join(normed)}; run the mixer's own code instead.")
    channels = xz.shape[1] // 2
    rank, state = delta_proj_weight.shape[1], A.shape[1]
    xz = xz.transpose(1, 2)
    if xz.stride(-1) != 1:
        xz = xz.contiguous()
    x, z = _Halves.apply(xz, channels)
    u = causal_conv1d_silu(x, conv1d_weight, conv1d_bias, mask, seq_idx)
    x_dbl = F.linear(u, x_proj_weight)
    delta = F.linear(x_dbl[..., :rank], delta_proj_weight)
    B = x_dbl[..., rank : rank + state]
    C = x_dbl[..., rank + state :]
    if B_proj_bias is not None:
        B = B + B_proj_bias
    if C_proj_bias is not None:
        C = C + C_proj_bias
    y = selective_scan(
        u.transpose(1, 2),
        delta.transpose(1, 2),
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D=D,
        z=z.transpose(1, 2),
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        seq_idx=seq_idx,
    )
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)


__all__ = ["causal_conv1d_silu", "mamba_inner"]
