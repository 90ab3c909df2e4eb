"""Which implementation each of transformers' Mamba kernel entry points runs, with fake kernel packages that import,
fail to import, miss a compiled extension, fail at call time or sit inside the `kernels` package's modules; for CPU
tensors and for (faked) CUDA tensors.

The entry points are bound here as transformers binds them at import (its own `use_kernel_func_from_hub_with_fallback`
around its own PyTorch functions), with the fake packages on the import path, then wrapped by vlmamba's dispatch.
"""

import functools
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM
from transformers.integrations.hub_kernels import use_kernel_func_from_hub_with_fallback
from transformers.models.mamba import modeling_mamba

import vlmamba  # noqa: F401  (installs the dispatch)
import vlmamba.models.mamba_kernels as kernels
from vlmamba.models.mamba_kernels import scan_implementation
from vlmamba.models.selective_scan import _chunk_size, selective_scan


NAMES = kernels.KERNEL_ENTRY_POINTS
INSTALLED = {name: getattr(modeling_mamba, name)._vlmamba_entry for name in NAMES}
# transformers' PyTorch implementations, found by the dispatch under the wrappers transformers bound.
TORCH_FUNCTIONS = {name: entry.torch_path for name, entry in INSTALLED.items()}
PACKAGE = {name: kernels._KERNEL_SOURCES[name][0] for name in NAMES}
FUNCTION = {name: kernels._KERNEL_SOURCES[name][2] for name in NAMES}
# What runs without a kernel: vlmamba's fused mixer and scan, transformers' PyTorch path for the rest.
FALLBACK = {"mamba_inner_fn": "vlmamba", "mamba_selective_scan": "vlmamba"}
EXTENSIONS = ("selective_scan_cuda", "causal_conv1d_cuda", "triton")
LOGGER = kernels.logger.name


def kernel_body(function, raises=None):
    """A fake kernel: records its call, then returns `("kernel", function)` or raises `raises`."""
    action = f"raise {raises}" if raises else f"return ('kernel', {function!r})"
    return f"def {function}(*args, **kwargs):\n    CALLS.append({function!r})\n    {action}\n"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Writes fake `mamba_ssm` / `causal_conv1d` packages onto the import path, laid out as the real ones (transformers
    finds `selective_state_update` under `mamba_ssm.ops.triton`), and provides or blocks the compiled extensions.

    `fake(mamba_ssm="working" | "broken", causal_conv1d=..., extensions=(...), raises={function: "Error('...')"})`:
    a working package's kernels record their calls in their module's `CALLS` and return `("kernel", function)`; a
    broken one fails to import as a build with an ABI mismatch does.
    """
    monkeypatch.syspath_prepend(str(tmp_path))

    def forget():
        for name in list(sys.modules):
            if name.split(".")[0] in ("mamba_ssm", "causal_conv1d"):
                del sys.modules[name]

    def install(mamba_ssm=None, causal_conv1d=None, extensions=(), raises=None):
        raises = raises or {}
        forget()  # what an earlier call installed
        for package in ("mamba_ssm", "causal_conv1d"):
            shutil.rmtree(tmp_path / package, ignore_errors=True)

        def write(path, text):
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

        broken = "raise ImportError('undefined symbol: _ZN3c104cuda9SetDeviceEi')\n"
        if mamba_ssm:
            body = "import torch\nCALLS = []\n" + kernel_body("selective_scan_fn", raises.get("selective_scan_fn"))
            body += kernel_body("mamba_inner_fn", raises.get("mamba_inner_fn"))
            write("mamba_ssm/ops/selective_scan_interface.py", body)
            write("mamba_ssm/ops/__init__.py", "")
            write("mamba_ssm/ops/triton/__init__.py", "")
            update = kernel_body("selective_state_update", raises.get("selective_state_update"))
            update = "import torch\nCALLS = []\n" + update
            write("mamba_ssm/ops/triton/selective_state_update.py", update)
            init = "from .ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn\n"
            init += "from .ops.triton import selective_state_update as _\n"
            write("mamba_ssm/__init__.py", broken if mamba_ssm == "broken" else init)
        if causal_conv1d:
            body = "import torch\nCALLS = []\n" + kernel_body("causal_conv1d_fn", raises.get("causal_conv1d_fn"))
            body += kernel_body("causal_conv1d_update", raises.get("causal_conv1d_update"))
            write("causal_conv1d/__init__.py", broken if causal_conv1d == "broken" else body)
        for extension in EXTENSIONS:
            if extension in extensions:
                monkeypatch.setitem(sys.modules, extension, types.ModuleType(extension))
            else:
                monkeypatch.setitem(sys.modules, extension, None)  # `import` raises ImportError
        importlib.invalidate_caches()

    yield install
    forget()


def bind(name):
    """The entry point as transformers binds it when `modeling_mamba` is imported now."""
    return use_kernel_func_from_hub_with_fallback(FUNCTION[name], PACKAGE[name])(TORCH_FUNCTIONS[name])


def dispatching(entry):
    wrappers = {"mamba_selective_scan": kernels._scan_dispatching, "mamba_inner_fn": kernels._inner_dispatching}
    return wrappers.get(entry.name, kernels._dispatching)(entry)


@pytest.fixture
def recorded_paths(monkeypatch):
    """vlmamba's fused mixer and scan replaced by recorders, so that a call says which path took it."""
    monkeypatch.setattr(kernels, "mamba_inner", lambda *args, **kwargs: ("vlmamba", "mamba_inner"))
    monkeypatch.setattr(kernels, "selective_scan", lambda *args, **kwargs: ("vlmamba", "selective_scan"))


def routed(name, bound=None):
    """A fresh entry point bound now, its dispatch, with transformers' PyTorch path recording its calls."""
    entry = kernels._EntryPoint(name, bind(name) if bound is None else bound)
    dispatch = dispatching(entry)
    assert entry.torch_path is TORCH_FUNCTIONS[name]
    entry.torch_path = lambda *args, **kwargs: ("torch", name)
    return entry, dispatch


def fake_cuda(monkeypatch):
    monkeypatch.setattr(kernels, "_device_type", lambda args, kwargs: "cuda")


def what_runs(dispatch):
    result = dispatch(torch.zeros(1, 2, 3))
    return result[0] if isinstance(result, tuple) else result


def records(caplog):
    return [record for record in caplog.records if record.name == LOGGER]


CASES = {
    "nothing installed": (
        {},
        (),
        {},
    ),
    "mamba-ssm and causal-conv1d": (
        {"mamba_ssm": "working", "causal_conv1d": "working"},
        EXTENSIONS,
        {name: "kernel" for name in NAMES},
    ),
    # The most common install failure: the build does not match torch, `import mamba_ssm` fails.
    "mamba-ssm that fails to import": (
        {"mamba_ssm": "broken", "causal_conv1d": "working"},
        EXTENSIONS,
        {"causal_conv1d_fn": "kernel", "causal_conv1d_update": "kernel"},
    ),
    # mamba-ssm's fused mixer asserts that causal-conv1d's extension is there; its scan and decode step do not need it.
    "mamba-ssm without causal-conv1d": (
        {"mamba_ssm": "working"},
        ("selective_scan_cuda", "triton"),
        {"mamba_selective_scan": "kernel", "mamba_selective_state_update": "kernel"},
    ),
    # mamba-ssm built without MAMBA_KEEP_CUDA_BUILD=TRUE: it imports, its Mamba-1 kernels raise at the call.
    "mamba-ssm without selective_scan_cuda": (
        {"mamba_ssm": "working", "causal_conv1d": "working"},
        ("causal_conv1d_cuda", "triton"),
        {"mamba_selective_state_update": "kernel", "causal_conv1d_fn": "kernel", "causal_conv1d_update": "kernel"},
    ),
    "causal-conv1d without mamba-ssm": (
        {"causal_conv1d": "working"},
        ("causal_conv1d_cuda",),
        {"causal_conv1d_fn": "kernel", "causal_conv1d_update": "kernel"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_entry_point_runs_a_kernel_only_for_cuda_tensors_and_only_when_it_works(
    case, fake, recorded_paths, monkeypatch, caplog
):
    packages, extensions, on_kernels = CASES[case]
    fake(**packages, extensions=extensions)
    routes = {name: routed(name) for name in NAMES}
    expected_cuda = {name: on_kernels.get(name, FALLBACK.get(name, "torch")) for name in NAMES}
    expected_cpu = {name: FALLBACK.get(name, "torch") for name in NAMES}
    assert {name: what_runs(dispatch) for name, (_, dispatch) in routes.items()} == expected_cpu
    fake_cuda(monkeypatch)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(2):
            assert {name: what_runs(dispatch) for name, (_, dispatch) in routes.items()} == expected_cuda
    # One line per entry point that runs without its kernel on CUDA, naming the path and the reason.
    lines = records(caplog)
    assert len(lines) == sum(value != "kernel" for value in expected_cuda.values())
    for name, (entry, _) in routes.items():
        if expected_cuda[name] != "kernel":
            (line,) = [line for line in lines if f"`{name}` on CUDA runs {entry.fallback}" in line.getMessage()]
            assert entry.problem() in line.getMessage()
            plain_install = entry.problem().endswith("is not installed")
            assert line.levelno == (logging.INFO if plain_install else logging.WARNING)


def problem(name):
    return kernels._EntryPoint(name, bind(name)).problem()


def test_the_reasons_name_what_to_install(fake, monkeypatch):
    fake(mamba_ssm="working", causal_conv1d=None, extensions=("triton",))
    assert "MAMBA_KEEP_CUDA_BUILD=TRUE" in problem("mamba_selective_scan")
    assert "`selective_scan_cuda`" in problem("mamba_inner_fn")
    assert problem("causal_conv1d_fn") == "causal-conv1d is not installed"
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    assert "`causal_conv1d_cuda`" in problem("mamba_inner_fn") and "causal-conv1d" in problem("mamba_inner_fn")
    assert problem("mamba_selective_scan") is None
    fake(mamba_ssm="broken")
    reason = problem("mamba_selective_scan")
    assert "does not import" in reason and "undefined symbol" in reason


INSTALL_FAILURES = {
    "mamba_inner_fn": "AssertionError('causal_conv1d_cuda is not available. Please install causal-conv1d.')",
    "selective_scan_fn": "RuntimeError('selective_scan_cuda is not installed. To use Mamba-1, reinstall with:')",
    "selective_state_update": "ImportError('libcuda.so.1: cannot open shared object file')",
    "causal_conv1d_fn": "RuntimeError('CUDA error: no kernel image is available for execution on the device')",
    "causal_conv1d_update": "AssertionError('causal_conv1d_cuda is not available')",
}


def test_a_kernel_that_fails_for_its_install_falls_back_for_good_with_one_log_line(
    fake, recorded_paths, monkeypatch, caplog
):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS, raises=INSTALL_FAILURES)
    routes = {name: routed(name) for name in NAMES}
    fake_cuda(monkeypatch)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            assert {name: what_runs(dispatch) for name, (_, dispatch) in routes.items()} == {
                name: FALLBACK.get(name, "torch") for name in NAMES
            }
    for name, (entry, _) in routes.items():
        assert entry.kernel.__globals__["CALLS"].count(FUNCTION[name]) == 1  # tried once, never again
        (line,) = [line for line in records(caplog) if f"`{name}` runs" in line.getMessage()]
        assert line.levelno == logging.WARNING and FUNCTION[name] in line.getMessage()
        assert f"runs {entry.fallback} on CUDA for the rest of the process" in line.getMessage()
    assert len(records(caplog)) == len(NAMES)


@pytest.mark.parametrize(
    "error",
    [
        # Out of memory says nothing about the install, whatever its message.
        "torch.cuda.OutOfMemoryError('CUDA out of memory: 2.00 GiB requested, not available')",
        "RuntimeError('CUDA error: an illegal memory access was encountered')",
        "AssertionError('u must have stride 1 in its last dimension')",
        "ValueError('not available')",
    ],
)
def test_errors_unrelated_to_the_install_propagate_and_keep_the_kernel(error, fake, monkeypatch, caplog):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS, raises={"selective_scan_fn": error})
    entry, dispatch = routed("mamba_selective_scan")
    fake_cuda(monkeypatch)
    kind = eval(error.split("(")[0], {"torch": torch})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(2):
            with pytest.raises(kind):
                dispatch(torch.zeros(1, 2, 3))
    assert entry.kernel.__globals__["CALLS"] == ["selective_scan_fn"] * 2 and not entry.failures
    assert not records(caplog)


def test_fast_and_reference_never_run_a_kernel(fake, recorded_paths, monkeypatch):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    routes = {name: routed(name) for name in NAMES}
    fake_cuda(monkeypatch)
    for implementation, fused in (("fast", "vlmamba"), ("reference", "torch")):
        with scan_implementation(implementation):
            assert {name: what_runs(dispatch) for name, (_, dispatch) in routes.items()} == {
                name: fused if name in FALLBACK else "torch" for name in NAMES
            }


def test_a_wrapper_without_the_expected_closure_finds_the_kernel_where_transformers_does(fake):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    torch_function = TORCH_FUNCTIONS["mamba_selective_scan"]

    @functools.wraps(torch_function)
    def renamed(*args, **kwargs):  # a future transformers wrapper whose closure names changed
        return torch_function(*args, **kwargs)

    entry = kernels._EntryPoint("mamba_selective_scan", renamed)
    assert entry.torch_path is torch_function
    assert entry.kernel is sys.modules["mamba_ssm.ops.selective_scan_interface"].selective_scan_fn
    # Without the package the same wrapper means transformers' PyTorch path.
    fake()
    assert kernels._EntryPoint("mamba_selective_scan", renamed).kernel is None


# The `kernels` package turns each entry point into a module instance whose forward calls transformers' wrapper, or,
# inside a model that `kernelize` gave a hub kernel (`use_kernels=True`), that model's kernel. This stands in for it:
# the same structure (the class's forward closes over the wrapper; the model keeps one instance per entry point in
# `_kernel_funcs`, whose forward `kernelize` replaces and whose `_kernel_repo` it sets).
_ACTIVE = {}


def kernels_module(wrapper, layer_name):
    func = wrapper

    class Func(torch.nn.Module):
        kernel_layer_name = layer_name

        def forward(self, *args, **kwargs):
            private = _ACTIVE.get(id(self))
            return private(*args, **kwargs) if private is not None else func(*args, **kwargs)

    return Func()


def hub_model(bound, hub=True, fusable=True):
    """A mixer whose model selected (or not) a hub kernel for `bound`, as `kernelize` leaves it."""
    private = type(bound)()
    if hub:
        private.forward = types.MethodType(lambda self, *args, **kwargs: ("hub", self.kernel_layer_name), private)
        private.__dict__["_kernel_repo"] = "kernels-community/mamba-ssm"
    mixer = tiny_mamba().backbone.layers[0].mixer
    if not fusable:
        mixer.x_proj.register_forward_hook(lambda *args: None)
    mixer.__dict__["_kernel_funcs"] = {bound.kernel_layer_name: private}
    return mixer, private


def running(mixer, private, bound, dispatch):
    token = kernels._current_mixer.set((mixer, None, None))
    _ACTIVE[id(bound)] = private
    try:
        return what_runs(dispatch)
    finally:
        _ACTIVE.clear()
        kernels._current_mixer.reset(token)


@pytest.mark.parametrize("packages", ["none", "mamba-ssm and causal-conv1d"])
def test_entry_points_made_modules_by_the_kernels_package(packages, fake, recorded_paths, monkeypatch):
    if packages == "none":
        fake()
    else:
        fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    package_kernel = "kernel" if packages != "none" else None
    for name in NAMES:
        bound = kernels_module(bind(name), FUNCTION[name])
        entry, dispatch = routed(name, bound)  # transformers' PyTorch function found inside the module
        assert entry.wrapper is not bound and entry.hub_layer == FUNCTION[name]
        fallback = FALLBACK.get(name, "torch")
        for hub in (False, True):
            mixer, private = hub_model(bound, hub)
            # CPU tensors reach neither the hub kernel nor the package's: the module is never called for them.
            assert running(mixer, private, bound, dispatch) == fallback, name
        with monkeypatch.context() as patch:
            fake_cuda(patch)
            assert running(*hub_model(bound, hub=False), bound, dispatch) == (package_kernel or fallback)
            assert running(*hub_model(bound, hub=True), bound, dispatch) == "hub"
            with scan_implementation("fast"):
                assert running(*hub_model(bound, hub=True), bound, dispatch) == fallback


def test_a_hub_kernel_never_gets_a_mixer_whose_layers_are_hooked(fake, recorded_paths, monkeypatch):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    bound = kernels_module(bind("mamba_inner_fn"), "mamba_inner_fn")
    entry, dispatch = routed("mamba_inner_fn", bound)
    fake_cuda(monkeypatch)
    assert running(*hub_model(bound, fusable=False), bound, dispatch) == "torch"  # the mixer's own code


def test_a_failing_hub_kernel_hands_over_to_the_package_kernel(fake, recorded_paths, monkeypatch, caplog):
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    bound = kernels_module(bind("mamba_selective_scan"), "selective_scan_fn")
    entry, dispatch = routed("mamba_selective_scan", bound)
    mixer, private = hub_model(bound)
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        raise RuntimeError("selective_scan_cuda is not installed")

    private.forward = types.MethodType(failing, private)
    fake_cuda(monkeypatch)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert [running(mixer, private, bound, dispatch) for _ in range(3)] == ["kernel"] * 3
    assert calls == [1]
    (line,) = records(caplog)
    assert "hub kernel `selective_scan_fn`" in line.getMessage() and "mamba-ssm's kernel" in line.getMessage()


def test_a_module_without_a_wrapper_inside_never_reaches_cpu_tensors(recorded_paths, caplog):
    class Opaque(torch.nn.Module):
        kernel_layer_name = "selective_scan_fn"

        def forward(self, *args, **kwargs):
            raise RuntimeError("a CUDA kernel got CPU tensors")

    entry = kernels._EntryPoint("mamba_selective_scan", Opaque())
    assert entry.torch_path is None and entry.wrapper is None
    assert what_runs(kernels._scan_dispatching(entry)) == "vlmamba"
    inner = kernels._EntryPoint("mamba_inner_fn", Opaque())
    assert kernels._inner_dispatching(inner)(torch.zeros(1, 2, 3)) == ("vlmamba", "mamba_inner")


def tiny_mamba(seed=0):
    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2)
    return MambaForCausalLM(config).train()


def test_lora_adapters_never_reach_a_fused_kernel(fake, recorded_paths, monkeypatch):
    # On CUDA the fused kernels would read x_proj's raw weight and bypass its adapter: such a mixer runs its own code
    # (whose convolution and scan still take the kernels).
    from peft import LoraConfig, get_peft_model

    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS)
    entry, dispatch = routed("mamba_inner_fn")
    plain = tiny_mamba().backbone.layers[0].mixer
    adapted = get_peft_model(tiny_mamba(), LoraConfig(r=4, target_modules=["x_proj"])).base_model.model
    adapted = adapted.backbone.layers[0].mixer
    fake_cuda(monkeypatch)
    for mixer, path in ((plain, "kernel"), (adapted, "torch")):
        token = kernels._current_mixer.set((mixer, None, None))
        try:
            assert what_runs(dispatch) == path
        finally:
            kernels._current_mixer.reset(token)


def test_a_model_whose_kernels_all_fail_trains_and_generates_as_without_them(fake, monkeypatch, caplog):
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))

    def run():
        model = tiny_mamba()
        loss = model(ids, labels=ids).loss
        loss.backward()
        grads = [parameter.grad.clone() for parameter in model.parameters()]
        out = model.eval().generate(ids, max_new_tokens=3, do_sample=False)
        return loss.detach(), grads, out

    expected = run()
    fake(mamba_ssm="working", causal_conv1d="working", extensions=EXTENSIONS, raises=INSTALL_FAILURES)
    for name in NAMES:
        monkeypatch.setattr(modeling_mamba, name, dispatching(kernels._EntryPoint(name, bind(name))))
    fake_cuda(monkeypatch)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        loss, grads, out = run()
    torch.testing.assert_close(loss, expected[0])
    for grad, reference in zip(grads, expected[1]):
        torch.testing.assert_close(grad, reference)
    assert torch.equal(out, expected[2])
    assert sorted(re.search(r"; `(\w+)` runs", line.getMessage())[1] for line in records(caplog)) == sorted(NAMES)


def test_kernel_report_says_what_runs_and_why(fake, monkeypatch):
    fake(mamba_ssm="working", causal_conv1d=None, extensions=("selective_scan_cuda", "triton"))
    for name in NAMES:
        monkeypatch.setattr(modeling_mamba, name, dispatching(kernels._EntryPoint(name, bind(name))))
    rows = {row["entry_point"]: row for row in kernels.kernel_report()}
    assert list(rows) == list(NAMES)
    assert rows["mamba_selective_scan"]["cuda"] == "mamba-ssm's `selective_scan_fn`"
    from vlmamba.models import cpu_kernel

    if cpu_kernel.available():
        assert rows["mamba_selective_scan"]["cpu"] == "vlmamba's fused CPU scan (`cpu_kernel`)"
        assert rows["mamba_inner_fn"]["cpu"] == "vlmamba's fused mixer (`mamba_inner`) with the fused CPU scan"
    else:
        assert rows["mamba_selective_scan"]["cpu"] == "vlmamba's chunked scan (`selective_scan`)"
    assert rows["mamba_inner_fn"]["cuda"] == "vlmamba's fused mixer (`mamba_inner`)"
    assert "causal_conv1d_cuda" in rows["mamba_inner_fn"]["why"]
    assert rows["causal_conv1d_fn"]["why"] == "causal-conv1d is not installed"
    with scan_implementation("reference"):
        assert {row["cuda"] for row in kernels.kernel_report()} == {
            "transformers' PyTorch path", "transformers' PyTorch path (the mixer's own code)"
        }
    report = kernels.env_report()
    assert "CUDA tensors" in report and all(name in report for name in NAMES)
    assert "mamba-ssm's `selective_scan_fn`" in report and "scan implementation: auto" in report
    assert f"fused CPU scan: {cpu_kernel.describe()}" in report
    assert cpu_kernel.describe().startswith("built (-O2" if cpu_kernel.available() else "not available (")


def test_the_scan_takes_larger_chunks_on_a_gpu_and_computes_the_same():
    # CPU: the cache-sized heuristic, unchanged (2**19 values per chunk, 8 to 256 steps).
    assert [_chunk_size(4096, elements) for elements in (2 * 512 * 16, 8 * 1536 * 16, 64)] == [32, 8, 256]
    for elements in (2 * 512 * 16, 8 * 1536 * 16, 8 * 5120 * 16):
        chunk = _chunk_size(4096, elements, "cuda")
        assert chunk >= 2 * _chunk_size(4096, elements) and chunk * elements <= 2**24
    assert _chunk_size(4096, 64, "cuda") == 1024 and _chunk_size(100, 64, "cuda") == 100
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(2, 6, 300, generator=g, dtype=torch.float64) for _ in range(3))
    A = -torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    B, C = (torch.randn(2, 4, 300, generator=g, dtype=torch.float64) for _ in range(2))
    small = selective_scan(u, delta, A, B, C, z=z, delta_softplus=True, return_last_state=True)
    large = selective_scan(u, delta, A, B, C, z=z, delta_softplus=True, return_last_state=True,
                           chunk_size=_chunk_size(300, 2 * 6 * 4, "cuda"))
    for value, reference in zip(large, small):
        torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_cpu_tensors_never_reach_cuda_kernels_when_mamba_ssm_is_installed(tmp_path):
    # Fake `mamba_ssm` / `causal_conv1d` packages, bound by transformers at its import in a fresh process, whose
    # kernels fail like CUDA kernels do on CPU tensors.
    for package, names in {
        "mamba_ssm": ["mamba_inner_fn", "selective_scan_fn", "selective_state_update"],
        "causal_conv1d": ["causal_conv1d_fn", "causal_conv1d_update"],
    }.items():
        body = "\n".join(f"def {name}(*args, **kwargs):\n    raise RuntimeError('CUDA kernel got CPU tensors')"
                         for name in names)
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(body + "\n")
    script = textwrap.dedent(
        """
        import torch
        import vlmamba
        from transformers.models.mamba import modeling_mamba
        from tests.tiny import make_model, make_processor
        kernel = modeling_mamba.mamba_selective_scan.__wrapped__
        try:
            kernel(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(2, 1), torch.zeros(1, 1, 3),
                   torch.zeros(1, 1, 3))
            raise SystemExit("the fake kernel was not picked up")
        except RuntimeError as error:
            assert "CUDA kernel" in str(error)
        processor = make_processor()
        model = make_model("mamba", processor).train()
        inputs = processor(text=["a red circle", "two"], return_tensors="pt", padding=True)
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        model.eval()
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        print("ok", out.shape[1])
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("ok")


def test_gpu_check_script_compiles_and_explains_itself_without_a_gpu():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "gpu_check.py")
    compile(open(script).read(), script, "exec")
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--install" in result.stdout and "601" in result.stdout
    if not torch.cuda.is_available():
        result = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=root, timeout=120)
        assert result.returncode != 0 and "no CUDA device" in result.stderr


def test_vlmamba_env_prints_the_path_of_every_entry_point(capsys):
    from vlmamba.cli import main
    from vlmamba.models.mamba_kernels import KERNEL_ENTRY_POINTS

    assert main(["env"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in KERNEL_ENTRY_POINTS) and "scan implementation" in printed
