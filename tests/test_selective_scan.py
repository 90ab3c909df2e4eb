"""The chunked selective scan against the sequential recurrence, and its use inside transformers' Mamba mixer."""

import re

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM
from transformers.models.mamba import modeling_mamba

import vlmamba  # noqa: F401  (installs the dispatch)
from tests.tiny import make_model, make_processor
from vlmamba.models.mamba_kernels import get_scan_implementation, scan_implementation, set_scan_implementation
from vlmamba.models.selective_scan import selective_scan, selective_scan_sequential


NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def inputs(batch=2, channels=6, length=37, state=4, groups=None, decay_scale=1.0, seed=0):
    """Random float64 inputs; `decay_scale` scales delta * |A| (large values make the state forget within a step)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)
    return {
        "u": randn(batch, channels, length),
        "delta": randn(batch, channels, length),
        "A": -torch.exp(randn(channels, state)) * decay_scale,
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(channels),
        "z": randn(batch, channels, length),
        "delta_bias": randn(channels),
        "initial_state": randn(batch, channels, state),
    }


def relative_error(value, reference):
    return ((value.double() - reference).norm() / reference.norm().clamp_min(1e-300)).item()


def check_against_reference(tensors, tolerance=1e-5, **kwargs):
    """fp32 chunked scan vs float64 sequential scan: output, final state and the gradients of every input."""
    reference_inputs = {k: v.clone().requires_grad_() for k, v in tensors.items() if v is not None}
    fast_inputs = {k: v.float().requires_grad_() for k, v in tensors.items() if v is not None}
    y_ref, h_ref = selective_scan_sequential(**reference_inputs, return_last_state=True, **kwargs)
    y, h = selective_scan(**fast_inputs, return_last_state=True, **kwargs)
    assert y.dtype == torch.float32 and h.shape == h_ref.shape
    assert relative_error(y, y_ref) < tolerance
    assert relative_error(h, h_ref) < tolerance
    # A loss that reads both the outputs and the final state, with random weights.
    g = torch.Generator().manual_seed(1)
    weight_y = torch.randn(y_ref.shape, generator=g, dtype=torch.float64)
    weight_h = torch.randn(h_ref.shape, generator=g, dtype=torch.float64)
    loss_ref = (y_ref * weight_y).sum() + (h_ref * weight_h).sum()
    loss = (y * weight_y.float()).sum() + (h * weight_h.float()).sum()
    grads_ref = torch.autograd.grad(loss_ref, list(reference_inputs.values()))
    grads = torch.autograd.grad(loss, list(fast_inputs.values()))
    for name, grad, grad_ref in zip(reference_inputs, grads, grads_ref):
        assert relative_error(grad, grad_ref) < tolerance, name


@pytest.mark.parametrize("length", [1, 2, 7, 37, 100])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 16])
@pytest.mark.parametrize("recompute", [False, True])
def test_matches_sequential_reference_for_any_length_and_chunk(length, chunk_size, recompute):
    check_against_reference(
        inputs(length=length, seed=length), delta_softplus=True, chunk_size=chunk_size, recompute=recompute
    )


def test_backward_twice_with_retained_graph_gives_the_same_gradients():
    tensors = {k: v.float().requires_grad_() for k, v in inputs(length=40).items()}
    y, h = selective_scan(**tensors, delta_softplus=True, return_last_state=True, chunk_size=8)
    loss = y.square().sum() + h.sum()
    first = torch.autograd.grad(loss, list(tensors.values()), retain_graph=True)
    second = torch.autograd.grad(loss, list(tensors.values()))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("decay_scale", [30.0, 1e3])
def test_strong_decays_stay_exact(decay_scale):
    # delta * |A| of tens to thousands: the state forgets within a step; nothing overflows and nothing turns NaN.
    tensors = inputs(length=45, decay_scale=decay_scale)
    tensors["delta"] = tensors["delta"].abs() * 5
    tensors["delta_bias"] = tensors["delta_bias"].abs()
    check_against_reference(tensors, chunk_size=8)
    check_against_reference(tensors, chunk_size=8, recompute=True)


def test_without_optional_inputs_and_without_initial_state():
    tensors = inputs(length=29)
    for name in ("D", "z", "delta_bias", "initial_state"):
        tensors[name] = None
    check_against_reference(tensors, chunk_size=8)


def test_grouped_B_and_C():
    check_against_reference(inputs(channels=8, length=33, groups=4), delta_softplus=True, chunk_size=8)


def test_padding_mask_matches_reference_and_keeps_state_of_last_real_token():
    tensors = inputs(length=20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False  # right padding
    mask[0, :4] = False  # left padding
    check_against_reference(tensors, mask=mask, delta_softplus=True, chunk_size=8)

    # The padded row ends in the state it had after its last real token.
    full = {k: v.float() for k, v in tensors.items()}
    _, h_masked = selective_scan(**full, mask=mask, delta_softplus=True, return_last_state=True)
    trimmed = {k: (v[1:2, ..., :13] if v.dim() == 3 and v.shape[-1] == 20 else v) for k, v in full.items()}
    trimmed["initial_state"] = full["initial_state"][1:2]
    _, h_trimmed = selective_scan(**trimmed, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(h_masked[1:2], h_trimmed, rtol=1e-6, atol=1e-6)


def test_chunks_compose_through_the_initial_state():
    # Scanning a sequence in two calls, the second starting from the first's final state, equals one call.
    tensors = {k: v.float() for k, v in inputs(length=30).items()}
    y, h = selective_scan(**tensors, delta_softplus=True, return_last_state=True)
    first = {k: (v[..., :11] if v.dim() >= 3 and v.shape[-1] == 30 else v) for k, v in tensors.items()}
    second = {k: (v[..., 11:] if v.dim() >= 3 and v.shape[-1] == 30 else v) for k, v in tensors.items()}
    y1, h1 = selective_scan(**first, delta_softplus=True, return_last_state=True)
    y2, h2 = selective_scan(**{**second, "initial_state": h1}, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], dim=-1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h2, h, rtol=1e-5, atol=1e-5)


def test_sequential_reference_agrees_with_transformers_path():
    # The test reference is itself checked against transformers' own PyTorch scan.
    tensors = inputs(length=23)
    kwargs = {k: tensors[k] for k in NAMES[:8]}
    torch_path = modeling_mamba.mamba_selective_scan.__wrapped__
    while hasattr(torch_path, "__wrapped__"):
        torch_path = torch_path.__wrapped__
    y_hf, h_hf = torch_path(*kwargs.values(), delta_softplus=True, return_last_state=True)
    y, h = selective_scan_sequential(**kwargs, delta_softplus=True, return_last_state=True)
    # transformers casts B and u to fp32, hence the fp32-level tolerance.
    assert relative_error(y_hf, y) < 1e-6 and relative_error(h_hf, h) < 1e-6


def test_half_precision_inputs_compute_in_fp32():
    tensors = {k: v.float() for k, v in inputs(length=40).items()}
    y32 = selective_scan(**tensors, delta_softplus=True)
    y16 = selective_scan(**{k: v.bfloat16() for k, v in tensors.items()}, delta_softplus=True)
    assert y16.dtype == torch.bfloat16
    assert relative_error(y16.float(), y32.double()) < 3e-2


def test_empty_sequence():
    tensors = {k: v.float() for k, v in inputs(length=0).items()}
    y, h = selective_scan(**tensors, return_last_state=True)
    assert y.shape == (2, 6, 0)
    torch.testing.assert_close(h, tensors["initial_state"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update(delta=t["delta"][..., :-1]), "`delta` must have the shape of `u`"),
        (lambda t: t.update(A=t["A"][:-1]), "`A` must be (channels=6"),
        (lambda t: t.update(B=t["B"][..., :-1]), "`B` must be (batch=2, state=4, length=37)"),
        (lambda t: t.update(C=t["C"][:, None].expand(2, 4, 4, 37)), "do not divide the 6 channels"),
        (lambda t: t.update(D=t["D"][:3]), "`D` must be (channels=6,)"),
        (lambda t: t.update(initial_state=t["initial_state"][:1]), "`initial_state` must be (batch=2"),
        (lambda t: t.update(A=t["A"].to(torch.complex128)), "complex"),
    ],
)
def test_bad_shapes_name_the_argument(change, message):
    tensors = inputs()
    change(tensors)
    with pytest.raises(ValueError, match=re.escape(message)):
        selective_scan(**tensors)


def test_scan_implementation_switch():
    assert get_scan_implementation() == "auto"
    with scan_implementation("reference"):
        assert get_scan_implementation() == "reference"
    assert get_scan_implementation() == "auto"
    with pytest.raises(ValueError, match="Unknown scan implementation 'cuda'"):
        set_scan_implementation("cuda")


def tiny_mamba(seed=0):
    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2)
    return MambaForCausalLM(config)


def test_mixer_runs_the_fast_scan_on_cpu(monkeypatch):
    import vlmamba.models.mamba_inner as inner
    import vlmamba.models.mamba_kernels as kernels

    calls = []
    for module in (kernels, inner):  # the scan entry point (prefill) and the fused mixer (training)
        original = module.selective_scan
        counting = lambda *a, f=original, **k: calls.append(a[0].shape) or f(*a, **k)  # noqa: E731
        monkeypatch.setattr(module, "selective_scan", counting)
    model = tiny_mamba()
    ids = torch.randint(0, 97, (2, 9))
    model(ids, labels=ids).loss.backward()
    assert calls == [(2, 64, 9)] * 2  # one whole-sequence call per layer
    model.eval()
    with torch.no_grad():
        model(ids)
    assert len(calls) == 4
    with scan_implementation("reference"):
        model(ids)
    assert len(calls) == 4


def test_language_model_logits_and_gradients_match_reference_path():
    model = tiny_mamba().train()
    ids = torch.randint(0, 97, (2, 70), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :9] = 0  # left padding

    def run():
        model.zero_grad()
        out = model(ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    with scan_implementation("fast"):
        logits, grads = run()
    with scan_implementation("reference"):
        logits_ref, grads_ref = run()
    assert relative_error(logits, logits_ref.double()) < 1e-5
    assert grads.keys() == grads_ref.keys() and len(grads) > 5
    for name in grads:
        assert relative_error(grads[name], grads_ref[name].double()) < 1e-4, name


def test_mamba_vl_cached_generation_same_tokens_and_logits_as_reference_path():
    processor = make_processor()
    model = make_model("mamba", processor).eval()
    inputs = processor(
        text=["a red circle left of", "two blue squares and a much longer prompt here"],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )
    kwargs = dict(
        max_new_tokens=12, min_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True
    )
    with scan_implementation("reference"):
        expected = model.generate(**inputs, **kwargs)
    with scan_implementation("fast"):
        out = model.generate(**inputs, **kwargs)
    assert out.sequences.tolist() == expected.sequences.tolist()
    for step in range(12):
        torch.testing.assert_close(out.logits[step], expected.logits[step], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["channels-major", "time-major"])
def test_input_memory_layouts_match_reference_and_gradients_keep_them(layout):
    # transformers' mixer hands `u` and `delta` over in (batch, channels, length) memory and `z` as a transposed view
    # of (batch, length, channels) memory; every layout gives the same results, and each gradient arrives in its
    # input's layout (seen by a hook on a non-leaf input: a leaf's `.grad` is made to match the leaf anyway).
    tensors = {k: v.float() for k, v in inputs(length=50).items()}
    results, strides = [], {}
    for arrange in ("channels-major", layout):
        leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
        fast = dict(leaves)
        for name in ("u", "delta", "z"):
            value = leaves[name]
            if arrange == "time-major":
                value = value.transpose(1, 2).contiguous().transpose(1, 2)
            fast[name] = value * 1.0  # a non-leaf with `value`'s strides
            if arrange == layout:
                expected = fast[name].stride()
                fast[name].register_hook(lambda grad, n=name, e=expected: strides.update({n: grad.stride() == e}))
        y, h = selective_scan(**fast, delta_softplus=True, return_last_state=True, chunk_size=16)
        (y.square().sum() + h.sum()).backward()
        results.append([y, h, *(leaves[name].grad for name in NAMES)])
    for value, reference in zip(*results):
        torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-6)
    assert strides == {"u": True, "delta": True, "z": True}


# The fused CPU kernel (`vlmamba.models.cpu_kernel`) and the PyTorch chunked scan are both held to the sequential
# recurrence; `backend` picks one explicitly.
BACKENDS = ["fused", "chunked"]


def require(backend):
    """Skips a fused-kernel test where the kernel is not built (no C++ compiler): the chunked scan then runs."""
    from vlmamba.models import cpu_kernel

    if backend == "fused" and not cpu_kernel.available():
        pytest.skip(f"the fused CPU scan is not built here: {cpu_kernel.problem()}")


def check_backend(backend, tensors, tolerance=1e-5, **kwargs):
    # The sequential reference ignores `backend` (it takes other implementations' options and drops them).
    require(backend)
    check_against_reference(tensors, tolerance=tolerance, backend=backend, **kwargs)


def test_fused_kernel_builds_where_a_compiler_exists():
    from vlmamba.models import cpu_kernel

    if cpu_kernel._compiler() is None:
        pytest.skip("no C++ compiler on this machine: the chunked scan runs")
    if cpu_kernel.problem() == "turned off by VLMAMBA_CPU_KERNEL":
        pytest.skip("VLMAMBA_CPU_KERNEL turns the kernel off in this environment")
    assert cpu_kernel.available(), cpu_kernel.problem()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("length", [1, 2, 3, 17, 64, 65, 100, 130])
def test_training_shapes_match_sequential_reference(backend, length):
    # Batch 32 and the lengths of short VLM samples, a channel count that leaves a partial block of the kernel.
    check_backend(backend, inputs(batch=32, channels=20, length=length, state=8, seed=length), delta_softplus=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_on_groups_masks_and_strong_decays(backend):
    check_backend(backend, inputs(channels=40, length=70, groups=4, state=16), delta_softplus=True)
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[1, 31:] = False
    mask[0, :6] = False
    check_backend(backend, inputs(batch=3, length=50), mask=mask, delta_softplus=True)
    strong = inputs(length=45, decay_scale=1e3)
    strong["delta"], strong["delta_bias"] = strong["delta"].abs() * 5, strong["delta_bias"].abs()
    check_backend(backend, strong)
    bare = inputs(length=29)
    for name in ("D", "z", "delta_bias", "initial_state"):
        bare[name] = None
    check_backend(backend, bare)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_sequences_match_the_sequential_reference(backend):
    seq_idx = torch.tensor([[0] * 5 + [1] * 70 + [2] * 25, [0] * 100, [3] * 40 + [4] * 60])
    check_backend(backend, inputs(batch=3, length=100), seq_idx=seq_idx, delta_softplus=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_sequences_equal_the_sequences_scanned_one_by_one(backend):
    # Three sequences in one row: each part of the output equals that sequence scanned alone from a zero state.
    require(backend)
    tensors = {k: v.float() for k, v in inputs(batch=1, channels=24, length=90, state=8).items()}
    tensors["initial_state"] = None
    lengths = [7, 66, 17]
    seq_idx = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))[None]
    leaves = {k: v.clone().requires_grad_() for k, v in tensors.items() if v is not None}
    packed = selective_scan(**leaves, delta_softplus=True, seq_idx=seq_idx, backend=backend)
    start, alone = 0, []
    for length in lengths:
        part = {k: (v[..., start : start + length] if v.dim() == 3 else v) for k, v in leaves.items()}
        alone.append(selective_scan(**part, delta_softplus=True, backend=backend))
        start += length
    torch.testing.assert_close(packed, torch.cat(alone, dim=-1), rtol=1e-5, atol=1e-5)
    weight = torch.randn(packed.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad((packed * weight).sum(), list(leaves.values()))
    grads_alone = torch.autograd.grad((torch.cat(alone, dim=-1) * weight).sum(), list(leaves.values()))
    for name, grad, expected in zip(leaves, grads, grads_alone):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_fused_kernel_in_float64_is_exact():
    require("fused")
    tensors = inputs(length=80, seed=5)
    reference = selective_scan_sequential(**tensors, delta_softplus=True)
    fused = selective_scan(**tensors, delta_softplus=True, backend="fused")
    assert fused.dtype == torch.float64
    assert relative_error(fused, reference) < 1e-12


def test_seq_idx_must_be_integer_and_shaped():
    tensors = {k: v.float() for k, v in inputs(length=10).items()}
    with pytest.raises(ValueError, match="`seq_idx` must be"):
        selective_scan(**tensors, seq_idx=torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        selective_scan(**tensors, seq_idx=torch.zeros(2, 10))
    with pytest.raises(ValueError, match="Unknown scan backend"):
        selective_scan(**tensors, backend="triton")


def test_without_the_kernel_the_chunked_scan_runs_and_says_why(tmp_path):
    # A build that fails (a flag the compiler refuses) leaves the kernel off with the compiler's message, and the
    # scan still computes the same result on the chunked path; `backend="fused"` then raises, naming the reason.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import torch
        from vlmamba.models import cpu_kernel
        from vlmamba.models.selective_scan import selective_scan, selective_scan_sequential
        cpu_kernel._FLAG_SETS = (("-O2", "--no-such-flag-for-vlmamba"),)
        assert not cpu_kernel.available()
        print("PROBLEM", cpu_kernel.problem())
        g = torch.Generator().manual_seed(0)
        u, delta, z = (torch.randn(2, 6, 30, generator=g) for _ in range(3))
        A, B, C = -torch.rand(6, 4, generator=g), torch.randn(2, 4, 30, generator=g), torch.randn(2, 4, 30, generator=g)
        y = selective_scan(u, delta, A, B, C, z=z, delta_softplus=True)
        expected = selective_scan_sequential(u.double(), delta.double(), A.double(), B.double(), C.double(),
                                             z=z.double(), delta_softplus=True)
        assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-5)
        try:
            selective_scan(u, delta, A, B, C, backend="fused")
        except RuntimeError as error:
            print("FUSED", error)
        """
    )
    env = {**__import__("os").environ, "VLMAMBA_CACHE_DIR": str(tmp_path)}
    env.pop("VLMAMBA_CPU_KERNEL", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "PROBLEM building it failed" in result.stdout and "--no-such-flag-for-vlmamba" in result.stdout
    assert "FUSED The fused CPU scan cannot run here: building it failed" in result.stdout

    env["VLMAMBA_CPU_KERNEL"] = "0"
    off = subprocess.run(
        [sys.executable, "-c", "from vlmamba.models import cpu_kernel; print(cpu_kernel.problem())"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert off.stdout.strip() == "turned off by VLMAMBA_CPU_KERNEL"
