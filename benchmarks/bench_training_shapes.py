# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CPU benchmark of Mamba against GPT-NeoX of about equal parameters at the shapes VLM users train at, and of
padding-free packed batches against padded ones on the shapes dataset.

    python benchmarks/bench_training_shapes.py [--rounds 3] [--repeats 3] [--shapes quickstart,w768,benchmark]
        [--skip-packing] [--output FILE]

Part 1, language models of random weights (fp32, `torch.get_num_threads()` threads), per shape:
- **fwd+bwd**: `model(ids, labels=ids).loss.backward()` in train mode;
- **no-grad prefill**: one eval-mode forward under `torch.inference_mode()` with `use_cache=False`.
Each round measures every system once (best of `--repeats` after a warm-up), the systems side by side; a ratio is
Mamba ÷ GPT-NeoX within a round, and the table gives the median over rounds with its range (the run-to-run spread).

Part 2, one layer's selective scan at each shape (batch x 2 x width channels, its state), forward and fwd+bwd,
through the fused CPU kernel and through the PyTorch chunked scan (`selective_scan(..., backend=...)`).

Part 3, the quickstart's Mamba-VL and Pythia-VL (width 128, the shapes data, batches of 32 training examples): one
fwd+bwd per batch of the same examples, collated padded (one right-padded row each) and packed
(`VLMambaDataCollator(pack_to=...)`), in tokens per second, where tokens are the examples' own (padding excluded).

The table is printed and written with a description of the machine to `--output`.
"""

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
for path in (REPO_ROOT, BENCHMARKS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_mamba_scan import _cpu_model, _git_revision, _memory_gib, _version  # noqa: E402


# name: (description, width, batch, tokens, Mamba layers, GPT-NeoX layers, Mamba state, vocabulary)
SHAPES = {
    "quickstart": ("quickstart: width 128, batch 32, 100 tokens", 128, 32, 100, 4, 2, 8, 512),
    "w768": ("width 768, batch 4, 660 tokens (a 601-token image block + text)", 768, 4, 660, 2, 1, 16, 1024),
    "benchmark": ("scan benchmark: width 256, batch 2, 640 tokens", 256, 2, 640, 4, 4, 16, 1024),
}
PACK_BATCHES, PACK_BATCH_SIZE = 6, 32


def build_language_models(width, mamba_layers, neox_layers, state, vocab):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, MambaConfig, MambaForCausalLM

    import vlmamba  # noqa: F401  (routes Mamba's mixer to vlmamba's paths)

    torch.manual_seed(0)
    mamba = MambaForCausalLM(MambaConfig(hidden_size=width, num_hidden_layers=mamba_layers, state_size=state,
                                         vocab_size=vocab))
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(
        hidden_size=width, num_hidden_layers=neox_layers, num_attention_heads=4, intermediate_size=4 * width,
        vocab_size=vocab, max_position_embeddings=4096, attn_implementation="sdpa",
    ))
    return {"Mamba": mamba, "GPT-NeoX": neox}


def best_of(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def language_model_steps(model, ids):
    def train_step():
        model.train()
        model.zero_grad(set_to_none=True)
        model(ids, labels=ids).loss.backward()

    def prefill():
        model.eval()
        with torch.inference_mode():
            model(ids, use_cache=False)

    return {"fwd+bwd": train_step, "no-grad prefill": prefill}


def shape_rows(names, rounds: int, repeats: int, log) -> tuple[list[str], dict]:
    lines = [
        "| shape | measurement | Mamba (s) | GPT-NeoX (s) | Mamba / GPT-NeoX, median [range] |",
        "|---|---|---|---|---|",
    ]
    parameters = {}
    for name in names:
        description, width, batch, length, mamba_layers, neox_layers, state, vocab = SHAPES[name]
        models = build_language_models(width, mamba_layers, neox_layers, state, vocab)
        parameters[name] = {system: sum(p.numel() for p in model.parameters()) for system, model in models.items()}
        ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))
        steps = {system: language_model_steps(model, ids) for system, model in models.items()}
        for measurement in ("fwd+bwd", "no-grad prefill"):
            times = {system: [] for system in models}
            for round_index in range(rounds):
                for system in models:
                    times[system].append(best_of(steps[system][measurement], repeats))
                log(f"{name} {measurement} round {round_index + 1}: "
                    + ", ".join(f"{system} {values[-1]:.3f} s" for system, values in times.items()))
            ratios = [m / n for m, n in zip(times["Mamba"], times["GPT-NeoX"])]
            lines.append(
                f"| {description}; {mamba_layers} vs {neox_layers} layers | {measurement} | "
                f"{statistics.median(times['Mamba']):.3f} | {statistics.median(times['GPT-NeoX']):.3f} | "
                f"**{statistics.median(ratios):.2f}×** [{min(ratios):.2f}–{max(ratios):.2f}] |"
            )
    return lines, parameters


def scan_rows(names, rounds: int, repeats: int, log) -> list[str]:
    from vlmamba.models.selective_scan import selective_scan

    lines = [
        "| shape | scan (batch, channels, length, state) | measurement | fused kernel (ms) | chunked (ms) | "
        "chunked / fused, median [range] |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        _, width, batch, length, _, _, state, _ = SHAPES[name]
        channels = 2 * width
        g = torch.Generator().manual_seed(0)

        def leaf(*shape):
            return torch.randn(*shape, generator=g).requires_grad_()

        inputs = {
            "u": leaf(batch, length, channels).transpose(1, 2), "delta": leaf(batch, length, channels).transpose(1, 2),
            "A": (-torch.rand(channels, state, generator=g) - 0.5).requires_grad_(),
            "B": leaf(batch, length, state).transpose(1, 2), "C": leaf(batch, length, state).transpose(1, 2),
            "D": leaf(channels), "z": leaf(batch, length, channels).transpose(1, 2), "delta_bias": leaf(channels),
        }

        def steps(backend):
            def forward():
                with torch.no_grad():
                    selective_scan(**inputs, delta_softplus=True, backend=backend)

            def train():
                selective_scan(**inputs, delta_softplus=True, backend=backend).sum().backward()

            return {"forward": forward, "fwd+bwd": train}

        backends = {backend: steps(backend) for backend in ("fused", "chunked")}
        for measurement in ("forward", "fwd+bwd"):
            times = {backend: [] for backend in backends}
            for _ in range(rounds):
                for backend in backends:
                    times[backend].append(best_of(backends[backend][measurement], repeats))
            log(f"scan {name} {measurement}: " + ", ".join(f"{b} {min(t) * 1e3:.1f} ms" for b, t in times.items()))
            ratios = [c / f for f, c in zip(times["fused"], times["chunked"])]
            lines.append(
                f"| {name} | ({batch}, {channels}, {length}, {state}) | {measurement} | "
                f"{statistics.median(times['fused']) * 1e3:.1f} | {statistics.median(times['chunked']) * 1e3:.1f} | "
                f"**{statistics.median(ratios):.2f}×** [{min(ratios):.2f}–{max(ratios):.2f}] |"
            )
    return lines


def packing_rows(rounds: int, log) -> list[str]:
    from vlmamba.data.collator import VLMambaDataCollator
    from vlmamba.experiments.quickstart import FAMILY_NAMES, QuickstartConfig, build, make_data
    from vlmamba.toy import train_tokenizer
    from vlmamba.training import prompt_texts

    config = QuickstartConfig(train_scenes=PACK_BATCHES * PACK_BATCH_SIZE // 4, eval_scenes=1)
    rows, _, _ = make_data(config)
    tokenizer = train_tokenizer(prompt_texts(rows), vocab_size=config.vocab_size)
    examples = [rows[index] for index in range(PACK_BATCHES * PACK_BATCH_SIZE)]
    batches = [examples[i : i + PACK_BATCH_SIZE] for i in range(0, len(examples), PACK_BATCH_SIZE)]
    lines = [
        "| model | batches | padded: tokens/s (row length) | packed: tokens/s (rows × length) | packed / padded |",
        "|---|---|---|---|---|",
    ]
    for family in ("mamba", "pythia"):
        model, processor = build(family, tokenizer, config)
        model.train()
        padded = VLMambaDataCollator(processor)
        lengths = [len(padded.encode(example)["input_ids"]) for example in examples]
        pack_to = 2 * max(lengths)
        packed = VLMambaDataCollator(processor, pack_to=pack_to)
        collated = {
            "padded": [padded(batch) for batch in batches],
            "packed": [packed(batch) for batch in batches],
        }
        real_tokens = sum(lengths)

        def run(kind):
            for batch in collated[kind]:
                model.zero_grad(set_to_none=True)
                model(**batch).loss.backward()

        seconds = {kind: [] for kind in collated}
        for kind in collated:
            run(kind)  # warm-up
        for round_index in range(rounds):
            for kind in collated:
                start = time.perf_counter()
                run(kind)
                seconds[kind].append(time.perf_counter() - start)
            log(f"packing {family} round {round_index + 1}: "
                + ", ".join(f"{kind} {values[-1]:.3f} s" for kind, values in seconds.items()))
        speedups = [a / b for a, b in zip(seconds["padded"], seconds["packed"])]
        shapes = {kind: [tuple(batch["input_ids"].shape) for batch in collated[kind]] for kind in collated}
        padded_length = statistics.median(shape[1] for shape in shapes["padded"])
        packed_rows = statistics.median(shape[0] for shape in shapes["packed"])
        packed_length = statistics.median(shape[1] for shape in shapes["packed"])
        lines.append(
            f"| {FAMILY_NAMES[family]} | {len(batches)} × {PACK_BATCH_SIZE} examples, {real_tokens} tokens | "
            f"{real_tokens / statistics.median(seconds['padded']):,.0f} ({padded_length:.0f}) | "
            f"{real_tokens / statistics.median(seconds['packed']):,.0f} ({packed_rows:.0f} × {packed_length:.0f}, "
            f"pack_to {pack_to}) | **{statistics.median(speedups):.2f}×** [{min(speedups):.2f}–{max(speedups):.2f}] |"
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {','.join(SHAPES)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the spread is over them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per round, best kept")
    parser.add_argument("--skip-packing", action="store_true", help="only the language-model shapes")
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "training_shapes.md")
    args = parser.parse_args(argv)
    names = [name for name in args.shapes.split(",") if name]
    unknown = [name for name in names if name not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)}")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    from vlmamba.models import cpu_kernel

    started = datetime.datetime.now().astimezone()
    lines, parameters = shape_rows(names, args.rounds, args.repeats, log)
    if cpu_kernel.available():
        lines += ["", *scan_rows(names, args.rounds, args.repeats, log)]
    if not args.skip_packing:
        lines += ["", *packing_rows(args.rounds, log)]
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60
    scan = "the fused CPU kernel" if cpu_kernel.available() else f"the chunked scan ({cpu_kernel.problem()})"
    machine = [
        f"- CPU: {_cpu_model()}, {torch.get_num_threads()} torch threads, {_memory_gib()} RAM",
        f"- torch {torch.__version__}, transformers {_version('transformers')}, vlmamba {_git_revision()}; "
        f"Mamba's scan: {scan}",
        f"- date: {started.isoformat(timespec='seconds')}, {minutes:.1f} min; {args.rounds} rounds, best of "
        f"{args.repeats} per round",
        "- parameters: " + "; ".join(
            f"{name}: " + ", ".join(f"{system} {count / 1e6:.2f} M" for system, count in counts.items())
            for name, counts in parameters.items()
        ),
    ]
    text = "\n".join([*machine, "", *lines]) + "\n"
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
