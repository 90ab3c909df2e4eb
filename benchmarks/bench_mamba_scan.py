# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CPU benchmark of Mamba's selective scan: transformers' loop, mambapy's pscan, vlmamba's chunked scan, GPT-NeoX,
and the other backbones Mamba-VL takes (Mamba-2, FalconMamba, FalconH1) at the same width and depth.

    python benchmarks/bench_mamba_scan.py [--quick] [--systems fast,neox,mamba2,falcon_mamba,falcon_h1]
        [--lengths 128,640] [--output FILE]

Prints one markdown table (forward+backward time, no-grad prefill time, forward+backward peak memory, decode time
per token, with ratios) and writes it to `--output` with a description of the machine.

Every case (one measurement of one system at one length) runs in a fresh subprocess of this script. That isolates
its peak resident memory, which the kernel tracks per process (VmHWM), and lets the parent stop a case that runs too
long while still reporting lower bounds: the parent polls the child's VmHWM and subtracts the baseline the child
printed once its model and inputs existed. Children report on stdout as JSON lines (`{"event": ...}`).
"""

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
# Benchmark the vlmamba of the checkout this script lives in, installed or not.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The other backbones Mamba-VL takes, at the same width and depth: Mamba-2 and FalconH1 on transformers' chunked
# (SSD) PyTorch path, FalconMamba on vlmamba's scan.
BACKBONES = ("mamba2", "falcon_mamba", "falcon_h1")
SYSTEMS = ("reference", "mambapy", "fast", "noscan", "neox", *BACKBONES)
LABELS = {
    "reference": "Mamba reference",
    "mambapy": "Mamba mambapy",
    "fast": "Mamba fast",
    "noscan": "Mamba without scan (floor)",
    "neox": "GPT-NeoX",
    "mamba2": "Mamba-2",
    "falcon_mamba": "FalconMamba",
    "falcon_h1": "FalconH1 (hybrid)",
}
SLOW_SYSTEMS = ("reference", "mambapy")  # transformers' reference path: governed by --reference-timeout
DECODE_SYSTEMS = ("fast", "neox", *BACKBONES)
DEFAULT_LENGTHS = (128, 640, 2048, 4096)
QUICK_LENGTHS = (128, 640)
DECODE_CONTEXTS = (256, 4096)
DECODE_STEPS, DECODE_WARMUP_STEPS = 64, 8  # the first few steps include one-time set-up
BATCH, VOCAB, D_MODEL, LAYERS = 2, 1024, 256, 4
NEOX_HEADS, NEOX_INTERMEDIATE, NEOX_MAX_POSITIONS = 4, 1024, 8192  # positions cover 4096 context + decode steps
REPEAT_BUDGET_S = 120.0  # timed repeats after the warm-up stop adding once they would exceed this
SETUP_LIMIT_S = 300.0  # a child that has not built its model by then is stopped
BUSY_NEIGHBOUR_CORES = 0.25  # other processes' average CPU use above which a case's time is flagged


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _machine_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat), to tell how loaded the machine was."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _vm_hwm_mib(pid: int | str = "self") -> float | None:
    """Peak resident set size (VmHWM) of a process in MiB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Child: one case in a fresh process.


def _emit(event: str, **values: object) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


class Unavailable(Exception):
    """The system cannot run in this environment; the row says why instead of showing a number."""


@contextlib.contextmanager
def _scan_selection(system: str, scan_api: bool) -> Iterator[None]:
    """Selects the Mamba scan for `system`.

    With vlmamba's `scan_implementation` the switch is explicit. Without it, vlmamba is not imported at all, so
    transformers' own path runs unpatched for the reference systems and "fast" cannot run.
    """
    if system == "mambapy":
        try:
            import mambapy  # noqa: F401
        except ImportError as error:
            raise Unavailable("not installed") from error
    if system in ("neox", "mamba2", "falcon_h1"):
        yield
    elif system == "falcon_mamba" and scan_api:
        from vlmamba.models.mamba_kernels import scan_implementation

        with scan_implementation("fast"):
            yield
    elif system == "noscan" and scan_api:
        import vlmamba.models.mamba_inner as inner
        import vlmamba.models.mamba_kernels as kernels

        # The scan is reached from the scan entry point and, in training, from the fused mixer.
        modules = [kernels, inner]
        originals = [module.selective_scan for module in modules]
        for module in modules:
            module.selective_scan = _scan_stand_in
        try:
            with kernels.scan_implementation("fast"):
                yield
        finally:
            for module, original in zip(modules, originals):
                module.selective_scan = original
    elif scan_api:
        from vlmamba.models.mamba_kernels import scan_implementation

        with scan_implementation("fast" if system == "fast" else "reference"):
            yield
    elif system in ("fast", "noscan"):
        raise Unavailable("vlmamba.models.mamba_kernels.scan_implementation not found")
    else:
        yield


def _scan_stand_in(u, delta, A, B, C, D=None, z=None, *args, return_last_state=False, **kwargs):
    """Everything around the recurrence (skip connection and gate), no recurrence: what the rest of the model costs."""
    out = u * D[:, None] * torch.nn.functional.silu(z) + 0 * (delta.sum() + A.sum() + B.sum() + C.sum())
    if return_last_state:
        return out, u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    return out


def _build_model(system: str) -> torch.nn.Module:
    from transformers import (
        AutoModelForCausalLM,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        MambaConfig,
        MambaForCausalLM,
    )

    if system in BACKBONES:
        from vlmamba.toy import ssm_backbone_config

        # Mixers as Mamba-1's (inner width 2 x D_MODEL, state 16); FalconH1's attention and MLP as GPT-NeoX's.
        backbone = ssm_backbone_config(
            system, D_MODEL, 16, attention_heads=NEOX_HEADS, intermediate_size=NEOX_INTERMEDIATE,
            max_position_embeddings=NEOX_MAX_POSITIONS, vocab_size=VOCAB, num_hidden_layers=LAYERS,
        )
        return AutoModelForCausalLM.from_config(backbone)
    if system == "neox":
        config = GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=D_MODEL,
            num_hidden_layers=LAYERS,
            num_attention_heads=NEOX_HEADS,
            intermediate_size=NEOX_INTERMEDIATE,
            max_position_embeddings=NEOX_MAX_POSITIONS,
            attn_implementation="sdpa",
        )
        return GPTNeoXForCausalLM(config)
    config = MambaConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=LAYERS, use_mambapy=system == "mambapy"
    )
    return MambaForCausalLM(config)


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _measure(
    step: Callable[[], None],
    spec: dict,
    work_start: float,
    after: Callable[[], None],
    fingerprint: Callable[[], dict[str, float]] = dict,
) -> None:
    """Warm-up run (reports peak memory above the baseline and `fingerprint()`), then timed repeats that fit the
    time left; `after` runs after every run, outside the timing.

    When not even one repeat fits, the warm-up run is reported as the measurement (`single_run`); such cases take
    tens of seconds, where a first run's overhead does not matter.
    """
    baseline = _vm_hwm_mib()
    first = _timed(step)
    peak_extra = _vm_hwm_mib() - baseline  # before `fingerprint` allocates anything
    _emit("first", seconds=first, peak_extra_mib=peak_extra, **fingerprint())
    after()
    left = min(0.9 * (spec["timeout"] - (time.perf_counter() - work_start)), REPEAT_BUDGET_S)
    runs = min(spec["repeats"], int(left // first))
    samples = []
    for _ in range(runs):
        samples.append(_timed(step))
        after()
    if samples:
        _emit("done", seconds=statistics.median(samples), runs=len(samples), single_run=False)
    else:
        _emit("done", seconds=first, runs=1, single_run=True)


def _decode(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    """Prefills every context of `DECODE_CONTEXTS` with its own cache, then times single-token steps that feed each
    cache back, alternating between the contexts so that a slow spell of the machine hits all of them alike."""
    with torch.inference_mode():
        outputs = {context: model(input_ids[:, :context], use_cache=True) for context in DECODE_CONTEXTS}
        step_times: dict[int, list[float]] = {context: [] for context in DECODE_CONTEXTS}
        for step in range(DECODE_WARMUP_STEPS + DECODE_STEPS):
            for context in DECODE_CONTEXTS:
                out = outputs[context]
                token = out.logits[:, -1:].argmax(-1)
                start = time.perf_counter()
                outputs[context] = model(token, use_cache=True, cache=out.cache)
                if step >= DECODE_WARMUP_STEPS:
                    step_times[context].append(time.perf_counter() - start)
    medians = {context: 1000 * statistics.median(times) for context, times in step_times.items()}
    _emit("done", decode_ms={str(context): ms for context, ms in medians.items()}, ms_per_token=max(medians.values()))


def run_child(spec: dict) -> None:
    """Runs one case described by `spec` and reports it as JSON lines on stdout."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    system, kind, length = spec["system"], spec["kind"], spec["length"]
    try:
        with _scan_selection(system, spec["scan_api"]):
            model = _build_model(system)
            input_ids = torch.randint(0, VOCAB, (BATCH, length))
            model.train(kind == "train")
            _emit(
                "baseline",
                hwm_mib=_vm_hwm_mib(),
                threads=torch.get_num_threads(),
                params=sum(p.numel() for p in model.parameters()),
            )
            work_start = time.perf_counter()
            if kind == "train":
                last_loss: list[float] = []

                def train_step() -> None:
                    loss = model(input_ids, labels=input_ids, use_cache=False).loss
                    loss.backward()
                    last_loss[:] = [loss.item()]

                def fingerprint() -> dict[str, float]:
                    """Loss and gradient norm, for checking that the Mamba scans compute the same thing."""
                    squares = sum(p.grad.double().square().sum() for p in model.parameters() if p.grad is not None)
                    return {"loss": last_loss[0], "grad_norm": float(squares) ** 0.5}

                def clear_gradients() -> None:
                    model.zero_grad(set_to_none=True)

                _measure(train_step, spec, work_start, clear_gradients, fingerprint)
            elif kind == "prefill":

                def prefill_step() -> None:
                    with torch.inference_mode():
                        model(input_ids, use_cache=False)

                _measure(prefill_step, spec, work_start, after=lambda: None)
            else:
                _decode(model, input_ids)
    except Unavailable as reason:
        _emit("unavailable", reason=str(reason))


# ---------------------------------------------------------------------------------------------------------------------
# Parent: runs the cases, polls memory, formats the table.


@dataclass
class Outcome:
    """What one case produced. Bounds (`stopped`, `memory_is_bound`) come from cases stopped at their time limit."""

    status: str  # "ok", "stopped", "unavailable", "failed"
    seconds: float | None = None
    single_run: bool = False
    runs: int = 0
    peak_mib: float | None = None
    memory_is_bound: bool = False
    ms_per_token: float | None = None
    decode_ms: dict[int, float] | None = None  # a decode case: ms per token at each context, measured together
    loss: float | None = None  # of the first fwd+bwd: Mamba's scans must agree on it and on the gradient norm
    grad_norm: float | None = None
    neighbour_cores: float = 0.0  # average CPU use of other processes during the case, in cores
    detail: str = ""
    events: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    kind: str  # "train", "prefill", "decode"
    system: str
    length: int


def _pump(stream: IO[str], events: "queue.Queue[dict]") -> None:
    """Forwards the child's JSON event lines to the parent's loop; other output is ignored."""
    for line in stream:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.put(event)


def run_case(case: Case, timeout: float, repeats: int, threads: int, scan_api: bool) -> Outcome:
    """Runs `case` in a fresh child process, stopping it `timeout` seconds after its measured work started."""
    spec = {**case.__dict__, "timeout": timeout, "repeats": repeats, "threads": threads, "scan_api": scan_api}
    busy_before, own_before = _machine_busy_seconds(), _own_cpu_seconds()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        events: queue.Queue[dict] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(child.stdout, events), daemon=True)
        reader.start()
        seen: dict[str, dict] = {}
        started, work_started, hwm, stopped = time.monotonic(), None, None, False
        try:
            while True:
                while not events.empty():
                    event = events.get()
                    seen[event["event"]] = event
                    if event["event"] == "baseline":
                        work_started = time.monotonic()
                if child.poll() is not None:
                    break
                hwm = _vm_hwm_mib(child.pid) or hwm
                now = time.monotonic()
                if (work_started is None and now - started > SETUP_LIMIT_S) or (
                    work_started is not None and now - work_started > timeout
                ):
                    hwm, stopped = _vm_hwm_mib(child.pid) or hwm, True  # the last reading before the kill
                    break
                time.sleep(0.2)
        finally:  # stops the child at its time limit, and never leaves one running whatever happened here
            if child.poll() is None:
                child.kill()
                child.wait()
        reader.join(timeout=5)
        child.stdout.close()
        others = (_machine_busy_seconds() - busy_before) - (_own_cpu_seconds() - own_before)
        neighbour_cores = max(0.0, others / (time.monotonic() - started))
        while not events.empty():
            event = events.get()
            seen[event["event"]] = event
        stderr.seek(0)
        error_lines = [line.strip() for line in stderr.read().splitlines() if line.strip()]

    outcome = Outcome(status="ok", neighbour_cores=neighbour_cores, events=list(seen.values()))
    baseline, first, done = seen.get("baseline"), seen.get("first"), seen.get("done")
    if "unavailable" in seen:
        return Outcome(status="unavailable", detail=seen["unavailable"]["reason"])
    if first is not None:
        outcome.peak_mib, outcome.loss, outcome.grad_norm = (
            first["peak_extra_mib"],
            first.get("loss"),
            first.get("grad_norm"),
        )
    elif baseline is not None and hwm is not None:
        outcome.peak_mib, outcome.memory_is_bound = max(0.0, hwm - baseline["hwm_mib"]), True
    if done is not None:
        outcome.seconds, outcome.runs = done.get("seconds"), done.get("runs", 0)
        outcome.single_run, outcome.ms_per_token = done.get("single_run", False), done.get("ms_per_token")
        if "decode_ms" in done:
            outcome.decode_ms = {int(context): ms for context, ms in done["decode_ms"].items()}
    elif first is not None and case.kind != "decode":
        # Stopped (or crashed) during the timed repeats: the warm-up run is the only complete measurement.
        outcome.seconds, outcome.runs, outcome.single_run = first["seconds"], 1, True
    elif stopped:
        outcome.status, outcome.seconds = "stopped", timeout
    else:
        outcome.status = "failed"
        outcome.detail = f"exit {child.returncode}: " + (error_lines[-1] if error_lines else "no output")
    return outcome


def _fmt_seconds(value: float) -> str:
    """Three significant digits without exponents: 0.123, 1.23, 12.3, 123."""
    decimals = 3 if value < 1 else 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{decimals}f}"


def _fmt_ratio(value: float) -> str:
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×" if value < 100 else f"{value:.0f}×"


@dataclass(frozen=True)
class Cell:
    """A number for the table, `bound` being ">" or "≥" when it is a lower bound; `busy`: measured under load."""

    value: float | None
    text: str
    bound: str = ""
    busy: bool = False


def _cell(outcome: Outcome | None, metric: str) -> Cell:
    """The table entry of one case for `metric` ("time", "memory" or "decode"), with its marks and bounds."""
    if outcome is None:
        return Cell(None, "–")
    if outcome.status == "unavailable":
        return Cell(None, outcome.detail if outcome.detail == "not installed" else "unavailable")
    if outcome.status == "failed" and not (metric == "memory" and outcome.peak_mib is not None):
        return Cell(None, "failed")
    if metric == "memory":
        if outcome.peak_mib is None:
            return Cell(None, "–")
        if outcome.memory_is_bound:
            return Cell(outcome.peak_mib, f"≥ {outcome.peak_mib:.0f}", "≥")
        return Cell(outcome.peak_mib, f"{outcome.peak_mib:.0f}")
    if outcome.status == "stopped":
        return (
            Cell(outcome.seconds, f"> {outcome.seconds:.0f} s (stopped)", ">")
            if metric == "time"
            else Cell(None, "stopped")
        )
    busy = "*" if outcome.neighbour_cores > BUSY_NEIGHBOUR_CORES else ""
    if metric == "decode":
        if outcome.ms_per_token is None:
            return Cell(None, "–")
        return Cell(outcome.ms_per_token, f"{outcome.ms_per_token:.2f}{busy}", busy=bool(busy))
    text = _fmt_seconds(outcome.seconds) + ("†" if outcome.single_run else "") + busy
    return Cell(outcome.seconds, text, busy=bool(busy))


def _ratio(numerator: Cell, denominator: Cell) -> str:
    """numerator / denominator, as a bound when one side is one ("?" when both are), marked if either is."""
    if numerator.value is None or denominator.value is None or denominator.value == 0:
        return "–"
    if numerator.bound and denominator.bound:
        return "?"
    prefix = numerator.bound or ("<" if denominator.bound else "")
    busy = "*" if numerator.busy or denominator.busy else ""
    return (prefix + " " if prefix else "") + _fmt_ratio(numerator.value / denominator.value) + busy


def build_table(results: dict[Case, Outcome], systems: list[str], lengths: list[int]) -> str:
    """One markdown table: a row per (measurement, length), a column per system, then the two ratio columns."""
    ratios = [("fast / NeoX", "fast", "neox"), ("reference / fast", "reference", "fast"),
              *((f"{LABELS[system]} / NeoX", system, "neox") for system in BACKBONES)]
    ratios = [ratio for ratio in ratios if ratio[1] in systems and ratio[2] in systems]
    header = ["measurement", "length", *(LABELS[system] for system in systems), *(name for name, _, _ in ratios)]
    rows = []
    for title, kind, metric in (
        ("fwd+bwd (s)", "train", "time"),
        ("no-grad prefill (s)", "prefill", "time"),
        ("fwd+bwd peak extra memory (MiB)", "train", "memory"),
    ):
        for length in lengths:
            cells = {system: _cell(results.get(Case(kind, system, length)), metric) for system in systems}
            rows.append(
                [
                    title,
                    str(length),
                    *(cells[s].text for s in systems),
                    *(_ratio(cells[a], cells[b]) for _, a, b in ratios),
                ]
            )
    decode_systems = [system for system in DECODE_SYSTEMS if system in systems]
    if decode_systems:
        short, long = DECODE_CONTEXTS
        by_context = {}
        for context in DECODE_CONTEXTS:
            cells = {s: _cell(results.get(Case("decode", s, context)), "decode") for s in systems}
            by_context[context] = cells
            rows.append(
                [
                    "decode (ms/token)",
                    f"context {context}",
                    *(cells[s].text for s in systems),
                    *(_ratio(cells[a], cells[b]) if a in decode_systems else "–" for _, a, b in ratios),
                ]
            )
        growth = [_ratio(by_context[long][s], by_context[short][s]) if s in decode_systems else "–" for s in systems]
        rows.append([f"decode {long} / {short}", "", *growth, *("–" for _ in ratios)])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            return f"{int(meminfo.readline().split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + (" (uncommitted changes)" if dirty else "")


def _scan_api() -> tuple[bool, str]:
    """Whether vlmamba offers `scan_implementation`; imported here, in the parent, so children need not guess."""
    try:
        module = importlib.import_module("vlmamba.models.mamba_kernels")
    except Exception as error:  # a broken checkout must not stop the transformers/GPT-NeoX rows
        return False, f"vlmamba not importable ({type(error).__name__}: {error})"
    if hasattr(module, "scan_implementation"):
        return True, "vlmamba.models.mamba_kernels.scan_implementation"
    return False, "vlmamba.models.mamba_kernels has no scan_implementation: reference rows use unpatched transformers"


def _machine(
    threads: set[int], params: dict[str, int], neighbours: list[float], started: datetime.datetime, revision: str
) -> list[str]:
    busy = sum(load > BUSY_NEIGHBOUR_CORES for load in neighbours)
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({_cores()} usable), {_memory_gib()} RAM",
        f"- torch threads per case: {', '.join(map(str, sorted(threads))) or 'n/a'}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {_version('transformers')}, "
        f"mambapy {_version('mambapy')}, vlmamba {revision}",
        f"- date: {started.isoformat(timespec='seconds')}, {minutes:.0f} min",
        f"- other processes' CPU use during the cases: mean {statistics.fmean(neighbours or [0]):.2f}, "
        f"max {max(neighbours or [0]):.2f} cores; {busy} of {len(neighbours)} cases above {BUSY_NEIGHBOUR_CORES}",
        f"- models (random init, fp32, batch {BATCH}, vocab {VOCAB}, d_model {D_MODEL}, {LAYERS} layers): "
        + ", ".join(f"{family} {count / 1e6:.2f} M parameters" for family, count in sorted(params.items())),
    ]


RATIO_LEGEND = (
    "Ratios: fast / NeoX = Mamba fast ÷ GPT-NeoX; reference / fast = Mamba reference ÷ Mamba fast "
    "(> or ≥: lower bound)."
)


def _agreement(results: dict[Case, Outcome], lengths: list[int]) -> str | None:
    """Whether the Mamba scans computed the same thing: first fwd+bwd loss and gradient norm, per length."""
    loss_spread, norm_spread = 0.0, 0.0
    compared = 0
    for length in lengths:
        outcomes = [results.get(Case("train", system, length)) for system in ("reference", "mambapy", "fast")]
        done = [outcome for outcome in outcomes if outcome is not None and outcome.grad_norm is not None]
        if len(done) < 2:
            continue
        compared += 1
        losses, norms = [outcome.loss for outcome in done], [outcome.grad_norm for outcome in done]
        loss_spread = max(loss_spread, max(losses) - min(losses))
        norm_spread = max(norm_spread, (max(norms) - min(norms)) / max(norms))
    if not compared:
        return None
    return (
        f"Check (same weights and inputs, {compared} length(s)): the Mamba systems' fwd+bwd losses differ by at most "
        f"{loss_spread:.1e}, their gradient norms by a relative {norm_spread:.1e}."
    )


def _legend(timeouts: dict[str, float], scan_note: str, repeats: int, ratios: bool, rounds: int) -> list[str]:
    return [
        f"Times: median of up to {repeats} runs after one warm-up run, in seconds; † = a single run (the warm-up), "
        "because no repeat fitted the time limit. "
        f"The fast, floor and GPT-NeoX cases run side by side in {rounds} rotation(s); each shows its best rotation. "
        f"A case still running after {timeouts['reference']:.0f} s (reference, mambapy) or {timeouts['other']:.0f} s "
        "(others) is stopped: its time is a lower bound and its memory is the high-water mark reached so far (≥).",
        "fwd+bwd = `model(ids, labels=ids).loss.backward()` in training mode; no-grad prefill = forward under "
        "`torch.inference_mode()` with `use_cache=False`; memory = peak resident memory (VmHWM) during the first "
        "fwd+bwd minus its value once model and inputs existed, each case in a fresh process.",
        f"Decode: in one process, prefill a context of each length with its own cache, then alternate single-token "
        f"steps between them, each feeding its cache back; the median of {DECODE_STEPS} steps per context (after "
        f"{DECODE_WARMUP_STEPS} warm-up steps each).",
        f"* = other processes used more than {BUSY_NEIGHBOUR_CORES} of a core on average during the case (in every "
        "attempt): the time, and ratios built on it, are likely distorted (the machine is shared).",
        *([RATIO_LEGEND] if ratios else []),
        f"Scan selection: {scan_note}.",
    ]


def _describe(case: Case, outcome: Outcome) -> str:
    if outcome.status in ("unavailable", "failed"):
        return f"{outcome.status}: {outcome.detail}"
    parts = []
    if case.kind == "decode":
        if outcome.decode_ms:
            parts.append(", ".join(f"{ms:.2f} ms/token at {context}" for context, ms in outcome.decode_ms.items()))
        else:
            parts.append("no result")
    elif outcome.status == "stopped":
        parts.append(f"stopped after {outcome.seconds:.0f} s")
    else:
        parts.append(f"{outcome.seconds:.3f} s ({outcome.runs} run{'s' if outcome.runs != 1 else ''})")
    if case.kind == "train" and outcome.peak_mib is not None:
        parts.append(f"peak {'≥ ' if outcome.memory_is_bound else ''}{outcome.peak_mib:.0f} MiB")
    parts.append(f"other processes {outcome.neighbour_cores:.2f} cores")
    return ", ".join(parts)


def _preference(attempt: Outcome) -> tuple[bool, bool, float]:
    """Sort key among attempts at one case: completed, then undisturbed, then fastest (noise only adds time)."""
    busy = attempt.neighbour_cores > BUSY_NEIGHBOUR_CORES
    return attempt.status != "ok", busy, attempt.ms_per_token or attempt.seconds or float("inf")


def _int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _system_list(text: str) -> list[str]:
    systems = [item.strip() for item in text.split(",") if item.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    return [system for system in SYSTEMS if system in systems]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=_int_list, help="comma-separated (default 128,640,2048,4096)")
    parser.add_argument("--systems", type=_system_list, default=list(SYSTEMS), help=f"from {','.join(SYSTEMS)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the warm-up (fewer if slow)")
    parser.add_argument("--reference-timeout", type=float, help="seconds per reference/mambapy case (default 300)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per case of the other systems")
    parser.add_argument("--threads", type=int, default=_cores(), help="torch threads per case (default: cores)")
    parser.add_argument(
        "--retries", type=int, default=2, help="re-runs of a completed case that other processes slowed down (*)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rotations over the fast/noscan/neox cases; each keeps its best attempt"
    )
    parser.add_argument("--quick", action="store_true", help="lengths 128,640 and a 200 s reference timeout")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return

    lengths = args.lengths or list(QUICK_LENGTHS if args.quick else DEFAULT_LENGTHS)
    timeouts = {"reference": args.reference_timeout or (200.0 if args.quick else 300.0), "other": args.timeout}
    started, revision = datetime.datetime.now().astimezone(), _git_revision()
    scan_api, scan_note = _scan_api()
    # Systems compared side by side run next to each other (same kind and length), and the quick ones `--rounds`
    # times in rotation, keeping each case's best attempt: a slow spell of a shared host then hits every system.
    quick = [system for system in ("fast", "noscan", "neox", *BACKBONES) if system in args.systems]
    slow = [system for system in ("mambapy", "reference") if system in args.systems]
    one_round = [Case(kind, system, length) for kind in ("train", "prefill") for length in lengths for system in quick]
    one_round += [Case("decode", s, max(DECODE_CONTEXTS)) for s in DECODE_SYSTEMS if s in quick]
    cases = one_round * max(1, args.rounds)
    cases += [Case(kind, system, length) for kind in ("train", "prefill") for length in lengths for system in slow]

    results: dict[Case, Outcome] = {}
    ran: dict[Case, Outcome] = {}  # cases that started a child (not skipped as unavailable)
    unavailable: dict[str, Outcome] = {}
    if not scan_api and "fast" in args.systems:
        unavailable["fast"] = Outcome(status="unavailable", detail=scan_note)
    threads: set[int] = set()
    params: dict[str, int] = {}
    for index, case in enumerate(cases, 1):
        if case.system in unavailable:
            outcome = results[case] = unavailable[case.system]
        else:
            timeout = timeouts["reference" if case.system in SLOW_SYSTEMS else "other"]
            outcome = latest = run_case(case, timeout, args.repeats, args.threads, scan_api)
            for _ in range(args.retries):
                if outcome.status != "ok" or outcome.neighbour_cores <= BUSY_NEIGHBOUR_CORES:
                    break
                print(f"    disturbed ({_describe(case, latest)}), running again", file=sys.stderr, flush=True)
                latest = run_case(case, timeout, args.repeats, args.threads, scan_api)
                outcome = min(outcome, latest, key=_preference)
            if case in ran:
                outcome = min(ran[case], outcome, key=_preference)
            results[case] = ran[case] = outcome
            if outcome.status == "unavailable":
                unavailable[case.system] = outcome
        if case.kind == "decode":  # one case measures every context (or fails for all of them)
            for context in DECODE_CONTEXTS:
                ms = (outcome.decode_ms or {}).get(context)
                results[Case("decode", case.system, context)] = dataclasses.replace(outcome, ms_per_token=ms)
        for event in outcome.events:
            if event["event"] == "baseline":
                threads.add(event["threads"])
                name = "Mamba" if case.system in ("fast", "noscan", *SLOW_SYSTEMS) else LABELS[case.system]
                params[name] = event["params"]
        print(
            f"[{index}/{len(cases)}] {LABELS[case.system]} {case.kind} {case.length}: {_describe(case, outcome)}",
            file=sys.stderr,
            flush=True,
        )

    table = build_table(results, list(args.systems), lengths)
    has_ratios = "fast" in args.systems and ("neox" in args.systems or "reference" in args.systems)
    check = _agreement(results, lengths)
    legend = _legend(timeouts, scan_note, args.repeats, has_ratios, max(1, args.rounds)) + ([check] if check else [])
    print(table)
    print()
    print("\n".join(legend))
    report = [
        "# Mamba scan benchmark (CPU)",
        "",
        *_machine(threads, params, [outcome.neighbour_cores for outcome in ran.values()], started, revision),
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        table,
        "",
        *legend,
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(report))
    print(f"\nwritten to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
