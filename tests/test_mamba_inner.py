"""The fused training path of transformers' Mamba mixer against the mixer's own path and the sequential scan."""

import logging

import pytest
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM
from transformers.models.mamba import modeling_mamba

import vlmamba  # noqa: F401  (installs the dispatch)
import vlmamba.models.mamba_kernels as kernels
from vlmamba.models.mamba_inner import causal_conv1d_silu, mamba_inner
from vlmamba.models.mamba_kernels import scan_implementation


def relative_error(value, reference):
    return ((value.double() - reference.double()).norm() / reference.double().norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 37])
@pytest.mark.parametrize("with_mask", [False, True])
def test_causal_convolution_matches_conv1d(length, with_mask):
    # Lengths below, at and above the kernel width; float64 so that only a wrong formula can fail.
    g = torch.Generator().manual_seed(length)
    x = torch.randn(2, length, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 1, 4, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[0, : length // 2] = 0
    mask = mask if with_mask else None
    weight_out = torch.randn(2, length, 6, generator=g, dtype=torch.float64)

    out = causal_conv1d_silu(x.transpose(1, 2).contiguous().transpose(1, 2), weight, bias, mask)
    expected = F.silu(F.conv1d(x.transpose(1, 2), weight, bias, padding=3, groups=6)[..., :length]).transpose(1, 2)
    if mask is not None:
        expected = expected * mask[..., None]
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((out * weight_out).sum(), (x, weight, bias))
    expected_grads = torch.autograd.grad((expected * weight_out).sum(), (x, weight, bias))
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-12)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_convolution_equals_each_sequence_convolved_alone(dtype):
    g = torch.Generator().manual_seed(9)
    lengths = [1, 2, 9, 5]
    x = torch.randn(1, sum(lengths), 20, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(20, 1, 4, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(20, generator=g, dtype=dtype, requires_grad=True)
    seq_idx = torch.repeat_interleave(torch.arange(4), torch.tensor(lengths))[None]
    packed = causal_conv1d_silu(x, weight, bias, seq_idx=seq_idx)
    alone = torch.cat([causal_conv1d_silu(part, weight, bias) for part in x.split(lengths, dim=1)], dim=1)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(packed, alone, rtol=tolerance, atol=tolerance)
    weight_out = torch.randn(packed.shape, generator=g, dtype=dtype)
    grads = torch.autograd.grad((packed * weight_out).sum(), (x, weight, bias))
    expected = torch.autograd.grad((alone * weight_out).sum(), (x, weight, bias))
    for grad, reference in zip(grads, expected):
        torch.testing.assert_close(grad, reference, rtol=10 * tolerance, atol=10 * tolerance)


def tiny_mamba(seed=0, **overrides):
    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, **overrides)
    model = MambaForCausalLM(config).train()
    # Non-zero convolution biases (initialised to zero): padded positions then produce non-zero convolution outputs,
    # so dropping the padding mask would change the states the real tokens see.
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.conv1d.bias.normal_()
    return model


def loss_and_grads(model, ids, mask=None):
    model.zero_grad()
    out = model(ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def assert_same_results(result, reference, logits_tolerance, grads_tolerance):
    """`result` and `reference` are `loss_and_grads` outputs: logits, then every parameter's gradient."""
    (logits, grads), (logits_ref, grads_ref) = result, reference
    assert relative_error(logits, logits_ref) < logits_tolerance
    assert grads.keys() == grads_ref.keys() and grads
    for name in grads:
        assert relative_error(grads[name], grads_ref[name]) < grads_tolerance, name


@pytest.fixture
def inner_calls(monkeypatch):
    """Counts the calls that reach the fused path."""
    calls = []
    monkeypatch.setattr(kernels, "mamba_inner", lambda *a, **k: calls.append(a[0].shape) or mamba_inner(*a, **k))
    return calls


def without_fused_path(monkeypatch):
    """The mixer's own step-by-step path (with the chunked scan): the entry point declines, as on a plain install."""
    monkeypatch.setattr(kernels, "mamba_inner", lambda *a, **k: None)


@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_fused_mixer_matches_the_mixers_own_path(padding, inner_calls, monkeypatch):
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 45), generator=torch.Generator().manual_seed(1))
    mask = None if padding == "none" else torch.ones_like(ids)
    if padding == "left":
        mask[0, :7] = 0
    elif padding == "right":
        mask[1, 30:] = 0
    result = loss_and_grads(model, ids, mask)
    assert len(inner_calls) == 2 and inner_calls[0] == (2, 128, 45)  # one whole-sequence call per layer
    assert len(result[1]) == len(list(model.parameters()))
    without_fused_path(monkeypatch)
    assert_same_results(result, loss_and_grads(model, ids, mask), 1e-6, 1e-5)


def test_fused_mixer_matches_the_sequential_reference_scan_with_left_padding(inner_calls):
    # Against transformers' own step-by-step scan, the independent reference (the mask reaches the fused path).
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :11] = 0
    result = loss_and_grads(model, ids, mask)
    assert len(inner_calls) == 2
    with scan_implementation("reference"):
        reference = loss_and_grads(model, ids, mask)
    assert len(inner_calls) == 2
    assert_same_results(result, reference, 1e-5, 1e-4)


def test_fused_mixer_runs_without_cache_only(inner_calls):
    # Training, and eval-mode forwards without a cache (scoring, evaluation); a cache (generation) keeps the mixer's
    # own path, which fills it.
    model = tiny_mamba()
    ids = torch.randint(0, 97, (1, 12))
    model.eval()
    with torch.no_grad():
        model(ids, use_cache=True)
        model.generate(ids, max_new_tokens=3, do_sample=False)
    assert inner_calls == []
    with torch.no_grad():
        model(ids, use_cache=False)
    assert len(inner_calls) == 2
    model.train()
    model(ids)
    assert len(inner_calls) == 4


@pytest.mark.parametrize("padding", ["none", "left"])
def test_eval_forward_without_cache_matches_the_reference_path(padding, inner_calls):
    model = tiny_mamba().eval()
    ids = torch.randint(0, 97, (2, 37), generator=torch.Generator().manual_seed(4))
    mask = None if padding == "none" else torch.ones_like(ids)
    if mask is not None:
        mask[0, :9] = 0
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask, use_cache=False).logits
        assert len(inner_calls) == 2
        with scan_implementation("reference"):
            reference = model(ids, attention_mask=mask, use_cache=False).logits
        cached = model(ids, attention_mask=mask, use_cache=True).logits  # the mixer's own path, filling a cache
    assert len(inner_calls) == 2
    assert relative_error(fused, reference) < 1e-5
    assert relative_error(cached, reference) < 1e-5


def test_other_activations_take_the_mixers_own_path(inner_calls):
    # The fused path hard-codes silu after the convolution, as mamba-ssm's kernel does.
    model = tiny_mamba(hidden_act="gelu")
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(3))
    logits, _ = loss_and_grads(model, ids)
    assert inner_calls == []
    with scan_implementation("reference"):
        logits_ref, _ = loss_and_grads(model, ids)
    assert relative_error(logits, logits_ref) < 1e-5


@pytest.mark.parametrize("targets", [["x_proj"], ["in_proj"]])
def test_lora_adapters_are_never_bypassed(targets, inner_calls):
    # The fused path reads the raw weights of x_proj, dt_proj and out_proj: with adapters on them the mixer runs its
    # own path, so the adapters take part; in_proj runs as a module before the fused call, so it keeps the fused path.
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_mamba(), LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(6))
    result = loss_and_grads(model, ids)
    assert len(inner_calls) == (2 if targets == ["in_proj"] else 0)
    assert result[1] and all(".lora_" in name for name in result[1])
    with scan_implementation("reference"):
        assert_same_results(result, loss_and_grads(model, ids), 1e-5, 1e-4)
    # The adapters change the output: they were not bypassed.
    with model.disable_adapter():
        assert relative_error(model(ids).logits.detach(), result[0]) > 1e-3


def test_an_adapter_on_dt_proj_is_named_as_the_no_op_it_is(caplog):
    # transformers' mixer reads dt_proj.weight directly on every path: the adapter gets no gradient and changes nothing.
    from peft import LoraConfig, get_peft_model
    from transformers.utils import logging as hf_logging

    from vlmamba.models.mamba_kernels import DT_PROJ_ADAPTER_WARNING

    model = get_peft_model(tiny_mamba(), LoraConfig(r=4, target_modules=["dt_proj"], init_lora_weights=False))
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(6))
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            logits = model(ids).logits
    finally:
        hf_logging.disable_propagation()
    assert DT_PROJ_ADAPTER_WARNING in caplog.text
    # The adapters (the only trainable parameters) are not in the graph, and the output is the base model's.
    assert not logits.requires_grad
    with model.disable_adapter(), torch.no_grad():
        assert torch.equal(model(ids).logits, logits.detach())


def test_hooked_layers_run_as_modules(inner_calls):
    model = tiny_mamba()
    seen = []
    model.backbone.layers[1].mixer.out_proj.register_forward_hook(lambda *args: seen.append(1))
    ids = torch.randint(0, 97, (2, 10))
    model(ids, labels=ids).loss.backward()
    assert len(inner_calls) == 1 and seen == [1]  # layer 0 fused, layer 1 through its modules


def test_gradient_checkpointing_gives_the_same_gradients(inner_calls):
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    _, grads = loss_and_grads(model, ids, mask)
    model.activation_checkpointing_enable()
    _, grads_checkpointed = loss_and_grads(model, ids, mask)
    assert len(inner_calls) == 2 + 4  # the checkpointed forward runs again in the backward
    for name in grads:
        torch.testing.assert_close(grads_checkpointed[name], grads[name], rtol=1e-5, atol=1e-7)


def test_bfloat16_model_trains_through_the_fused_path(inner_calls):
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 25), generator=torch.Generator().manual_seed(5))
    logits32, _ = loss_and_grads(model, ids)
    model.to(torch.bfloat16)
    logits16, grads16 = loss_and_grads(model, ids)
    assert len(inner_calls) == 4 and all(grad.dtype == torch.bfloat16 for grad in grads16.values())
    assert all(torch.isfinite(grad).all() for grad in grads16.values())
    assert relative_error(logits16, logits32) < 3e-2


def test_autocast_training_through_the_fused_path(inner_calls, monkeypatch):
    # What `Trainer(bf16=True)` does on CPU: bf16 matmuls under autocast, the scan still in fp32.
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0

    def loss():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = model(ids, attention_mask=mask, labels=ids).loss
        value.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        return value.item()

    fused = loss()
    assert len(inner_calls) == 2
    without_fused_path(monkeypatch)
    assert abs(fused - loss()) < 1e-2 * abs(fused)


def test_direct_call_without_a_mixer_has_the_kernel_semantics():
    # Outside a mixer there is no mask: the result is the mixer's on an unpadded batch.
    model = tiny_mamba().eval()
    mixer = model.backbone.layers[0].mixer
    hidden = torch.randn(2, 9, 32)
    xz = mixer.in_proj(hidden).transpose(1, 2)
    A = -torch.exp(mixer.A_log.float())
    out = mamba_inner(
        xz,
        mixer.conv1d.weight,
        mixer.conv1d.bias,
        mixer.x_proj.weight,
        mixer.dt_proj.weight,
        mixer.out_proj.weight,
        None,
        A,
        None,
        None,
        mixer.D.float(),
        delta_bias=mixer.dt_proj.bias,
    )
    with torch.no_grad():
        expected = mixer(hidden)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="input-dependent B and C"):
        mamba_inner(
            xz,
            mixer.conv1d.weight,
            None,
            mixer.x_proj.weight,
            mixer.dt_proj.weight,
            mixer.out_proj.weight,
            None,
            A,
            B=torch.zeros(2, 8, 9),
        )
    with pytest.raises(ValueError, match="does not apply b_rms_weight"):
        mamba_inner(xz, mixer.conv1d.weight, None, mixer.x_proj.weight, mixer.dt_proj.weight, mixer.out_proj.weight,
                    None, A, b_rms_weight=torch.ones(8))


def test_dispatch_is_installed_once_and_wraps_the_mixer():
    kernels.install_device_dispatch()
    assert modeling_mamba.MambaMixer.forward._vlmamba_dispatch
    assert modeling_mamba.mamba_inner_fn._vlmamba_dispatch
    assert not hasattr(modeling_mamba.MambaMixer.forward.__wrapped__, "_vlmamba_dispatch")


def recorded(forward, *args, **kwargs):
    """What the wrapped `forward` records while it runs: the mixer, its mask and its cache."""
    return kernels._recording_mixer(forward)("mixer", *args, **kwargs)


def test_mixer_wrapper_passes_every_argument_through_and_finds_the_mask_and_cache_by_name():
    def forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
        return kernels._current_mixer.get(), (hidden_states, cache, attention_mask, kwargs)

    mask = torch.ones(1, 3)
    assert recorded(forward, "h", "c", mask) == (("mixer", mask, "c"), ("h", "c", mask, {}))
    assert recorded(forward, "h", attention_mask=mask, other=1) == (("mixer", mask, None),
                                                                    ("h", None, mask, {"other": 1}))
    assert recorded(forward, "h", cache="c") == (("mixer", None, "c"), ("h", "c", None, {}))
    assert recorded(forward, "h", cache_params="old name")[0] == ("mixer", None, "old name")
    assert recorded(forward, "h") == (("mixer", None, None), ("h", None, None, {}))
    assert kernels._current_mixer.get() is None


def test_mixer_without_a_mask_argument_never_takes_the_fused_path(inner_calls):
    def forward(self, hidden_states, state=None, padding=None):
        return kernels._current_mixer.get()

    assert recorded(forward, "h", padding=torch.ones(1, 3)) == ("mixer", kernels._UNKNOWN_MASK, None)
    token = kernels._current_mixer.set((None, kernels._UNKNOWN_MASK, None))
    try:
        assert modeling_mamba.mamba_inner_fn(torch.zeros(1, 8, 5), *[None] * 7) is None
    finally:
        kernels._current_mixer.reset(token)
    assert not inner_calls
