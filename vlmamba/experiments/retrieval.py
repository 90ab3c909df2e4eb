# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""In-context retrieval: can a language model find a token in its context and say where it was?

A sample is a context of N distinct symbol tokens, then a query: one of those symbols. The answer is the query's
position in the context (0 ... N-1), written as a position token. This is the synthetic task with which Mamba-VL
and Pythia-VL were compared on retrieval from a long context (576 = 24 x 24 is the number of image patches of
EVA-02-L/14-336): a Transformer can attend to the matching symbol directly, a state-space model has to have kept
what it needs in a fixed-size state by the time the query arrives.

`run_retrieval` trains a text-only `MambaForCausalLM` and a `GPTNeoXForCausalLM` of the same depth and width (and
about the same number of parameters) from scratch, with the same data, steps, tokens, optimizer and schedule, and
evaluates both at each context length, per query position. It writes `retrieval.json` and `retrieval.png`.

Token ids are built directly, in a compact id space (no tokenizer): 0 padding, 1 the query marker, then
`max_length` position tokens, then `num_symbols` symbol tokens.

Layouts (`layout`):
- "query_last" (the default): ``s_0 ... s_{N-1} <query> q``; the answer is predicted at ``q``.
- "query_first" (the task-aware analogue: the instruction before the image): ``<query> q s_0 ... s_{N-1} <query>``;
  the answer is predicted at the closing marker. The model knows what to look for while it reads the context.

Each context symbol carries its position token: the embedding of ``<pos_i>`` is added to the embedding of the i-th
symbol (`position_tags="input"`, the default). This is a deliberate choice for models trained from scratch. The
published experiment fine-tuned pretrained language models, which bring the skill of telling absolute positions
apart; tiny models trained from scratch with bare symbols (`position_tags="none"`, kept for comparison) have to
learn to count up to 576 first, and stay at chance within any budget that runs in minutes. With the tags, the task
is associative recall: find the symbol equal to the query, and return the position token that came with it. That is
exactly the part the comparison is about, and it is the same input for both families.

Training uses a curriculum and several queries per context, to learn within minutes on a CPU:
- for the first `short_phase` of the steps, N is drawn log-uniformly between `min_length` and
  `short_phase_max_length` (the matching mechanism is found on short contexts);
- afterwards, N is drawn log-uniformly from the whole range, uniformly, or is the longest length, with weights
  `long_phase_mix` (a third each by default), so that long contexts and late position tokens, which only
  contexts longer than them can train, get enough training;
- each batch holds `tokens_per_batch` tokens, so it has fewer, longer samples as N grows;
- with the query last, a training context is followed by queries for a random `train_query_fraction` of its
  symbols, each predicted at its own position (they do not depend on one another). The query-first layout has one
  query per context.
Evaluation always asks one query per context, at query positions spread evenly over the context, with the argmax
over the whole vocabulary.
"""

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, MambaConfig, MambaForCausalLM
from transformers.optimization import get_cosine_schedule_with_warmup

from ..models.mamba_kernels import install_device_dispatch


FAMILIES = ("pythia", "mamba")
FAMILY_NAMES = {"pythia": "Pythia", "mamba": "Mamba"}
LAYOUTS = ("query_last", "query_first")
POSITION_TAGS = ("input", "none")
PAD_ID = 0
QUERY_ID = 1
FIRST_POSITION_ID = 2


@dataclass
class RetrievalConfig:
    """Sizes, data and budget of the retrieval experiment; the defaults run in minutes on 2 CPU cores."""

    lengths: tuple[int, ...] = (20, 50, 100, 200, 400, 576)
    num_symbols: int = 1024
    width: int = 128
    depth: int = 2
    state_size: int = 16
    steps: int = 2500
    tokens_per_batch: int = 2048
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.05
    min_length: int = 4
    short_phase: float = 0.6
    short_phase_max_length: int = 64
    long_phase_mix: tuple[float, float, float] = (1.0, 1.0, 1.0)
    train_query_fraction: float = 0.5
    eval_samples: int = 200
    position_buckets: int = 8
    layouts: tuple[str, ...] = ("query_last",)
    position_tags: str = "input"
    families: tuple[str, ...] = FAMILIES
    seed: int = 0
    workers: int = 2
    log_every: int = 0

    def __post_init__(self):
        self.lengths = tuple(int(length) for length in self.lengths)
        self.layouts = tuple(self.layouts)
        self.families = tuple(self.families)
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"lengths must be positive context lengths, got {self.lengths}.")
        if self.num_symbols < self.max_length:
            raise ValueError(
                f"num_symbols ({self.num_symbols}) must be at least the longest context ({self.max_length}): the "
                "symbols of a context are distinct."
            )
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length must be between 1 and the longest context, got {self.min_length}.")
        for name, values, allowed in (
            ("layouts", self.layouts, LAYOUTS),
            ("families", self.families, FAMILIES),
            ("position_tags", (self.position_tags,), POSITION_TAGS),
        ):
            unknown = [value for value in values if value not in allowed]
            if unknown or not values:
                raise ValueError(f"{name} must be among {allowed}, got {values}.")
        if len(self.long_phase_mix) != 3 or min(self.long_phase_mix) < 0 or sum(self.long_phase_mix) <= 0:
            raise ValueError(f"long_phase_mix must be three non-negative weights, got {self.long_phase_mix}.")
        if self.steps < 1 or self.tokens_per_batch < 1 or self.eval_samples < 1 or self.position_buckets < 1:
            raise ValueError("steps, tokens_per_batch, eval_samples and position_buckets must be positive.")

    @property
    def max_length(self) -> int:
        return max(self.lengths)

    @property
    def vocab_size(self) -> int:
        return FIRST_POSITION_ID + self.max_length + self.num_symbols


def position_id(position, config: RetrievalConfig):
    """Token id of `<pos_{position}>` (an int or a tensor of positions)."""
    return position + FIRST_POSITION_ID


def symbol_id(symbol, config: RetrievalConfig):
    """Token id of `<syn_{symbol}>` (an int or a tensor of symbol indices)."""
    return symbol + FIRST_POSITION_ID + config.max_length


def make_batch(
    config: RetrievalConfig,
    length: int,
    batch_size: int,
    generator: torch.Generator,
    layout: str = "query_last",
    num_queries: int = 1,
    query_positions: torch.Tensor | None = None,
) -> dict:
    """A batch of retrieval samples with contexts of `length` distinct symbols.

    Returns `input_ids` and `position_tags` (batch, sequence): the tags hold the position token of every context
    symbol and 0 elsewhere; `labels` and `query_positions` (batch, num_queries): the answer tokens and the context
    indices they stand for. The answers are predicted at the last `num_queries` positions of the sequence.
    `query_positions` (batch,) fixes the (single) query of each sample instead of drawing it.
    """
    if not 1 <= length <= config.max_length:
        raise ValueError(f"length must be between 1 and {config.max_length}, got {length}.")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if not 1 <= num_queries <= length or (layout == "query_first" and num_queries != 1):
        raise ValueError(
            f"num_queries must be between 1 and the context length ({length}), and 1 with the query first; "
            f"got {num_queries}."
        )
    symbols = torch.rand(batch_size, config.num_symbols, generator=generator).argsort(dim=1)[:, :length]
    context = symbol_id(symbols, config)
    if query_positions is None:
        query_positions = torch.rand(batch_size, length, generator=generator).argsort(dim=1)[:, :num_queries]
    else:
        query_positions = torch.as_tensor(query_positions, dtype=torch.long).reshape(batch_size, 1)
        if num_queries != 1 or query_positions.min() < 0 or query_positions.max() >= length:
            raise ValueError(f"query_positions must be one position in [0, {length}) per sample.")
    queries = context.gather(1, query_positions)
    tags = position_id(torch.arange(length), config).expand(batch_size, length)
    if config.position_tags == "none":
        tags = torch.zeros_like(tags)
    marker = torch.full((batch_size, 1), QUERY_ID)
    if layout == "query_last":
        input_ids = torch.cat([context, marker, queries], dim=1)
        position_tags = torch.cat([tags, torch.zeros_like(marker), torch.zeros_like(queries)], dim=1)
    else:
        input_ids = torch.cat([marker, queries, context, marker], dim=1)
        position_tags = torch.cat(
            [torch.zeros_like(marker), torch.zeros_like(queries), tags, torch.zeros_like(marker)], 1
        )
    return {
        "input_ids": input_ids,
        "position_tags": position_tags,
        "labels": position_id(query_positions, config),
        "query_positions": query_positions,
    }


def embed(model, input_ids: torch.Tensor, position_tags: torch.Tensor) -> torch.Tensor:
    """Input embeddings: each token's embedding, plus its position token's embedding where it has one."""
    embeddings = model.get_input_embeddings()
    return embeddings(input_ids) + embeddings(position_tags) * (position_tags != PAD_ID).unsqueeze(-1)


def answer_logits(model, batch: dict) -> torch.Tensor:
    """Logits (batch, num_queries, vocab) at the positions where the answers are predicted."""
    inputs_embeds = embed(model, batch["input_ids"], batch["position_tags"])
    num_queries = batch["labels"].shape[1]
    return model(inputs_embeds=inputs_embeds, logits_to_keep=num_queries, use_cache=False).logits


def build_model(family: str, config: RetrievalConfig, seed: int | None = None):
    """A text-only `MambaForCausalLM` or `GPTNeoXForCausalLM` of `config.depth` layers of width `config.width`.

    The GPT-NeoX feed-forward width is chosen so that a GPT-NeoX layer has as many parameters as a Mamba layer
    (expand 2, `state_size`, convolution 4), which makes the two models about the same size. Embeddings are not
    tied: with tied embeddings both families stay at chance, as the input symbol dominates the output.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    install_device_dispatch()
    common = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.width,
        num_hidden_layers=config.depth,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=PAD_ID,
        eos_token_id=PAD_ID,
        use_cache=False,
    )
    mamba_config = MambaConfig(state_size=config.state_size, expand=2, conv_kernel=4, **common)
    torch.manual_seed(config.seed if seed is None else seed)
    if family == "mamba":
        return MambaForCausalLM(mamba_config)
    width = config.width
    inner = mamba_config.intermediate_size
    rank = mamba_config.time_step_rank
    mamba_layer = (
        width * 2 * inner  # in_proj
        + inner * (mamba_config.conv_kernel + 1)  # depthwise convolution and its bias
        + inner * (rank + 2 * config.state_size)  # x_proj
        + (rank + 1) * inner  # dt_proj
        + (config.state_size + 1) * inner  # A_log and D
        + inner * width  # out_proj
        + width  # norm
    )
    attention_and_norms = 4 * width * width + 4 * width + 4 * width
    intermediate = max(1, round((mamba_layer - attention_and_norms - width) / (2 * width + 1)))
    neox_config = GPTNeoXConfig(
        num_attention_heads=max(1, width // 32),
        intermediate_size=intermediate,
        max_position_embeddings=2 * config.max_length + 8,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        **common,
    )
    return GPTNeoXForCausalLM(neox_config)


def count_parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def training_length(step: int, config: RetrievalConfig, generator: torch.Generator) -> int:
    """The context length of the batch at `step` (see the module docstring for the curriculum)."""

    def log_uniform(low: int, high: int) -> int:
        draw = torch.rand((), generator=generator).item()
        return min(high, int(math.exp(math.log(low) + (math.log(high + 1) - math.log(low)) * draw)))

    low = min(config.min_length, config.max_length)
    if step < config.short_phase * config.steps:
        return log_uniform(low, max(low, min(config.short_phase_max_length, config.max_length)))
    weights = torch.tensor(config.long_phase_mix, dtype=torch.float)
    kind = int(torch.multinomial(weights, 1, generator=generator))
    if kind == 0:
        return log_uniform(low, config.max_length)
    if kind == 1:
        return int(torch.randint(low, config.max_length + 1, (), generator=generator))
    return config.max_length


def train(model, config: RetrievalConfig, layout: str = "query_last", progress=None) -> dict:
    """Trains `model` in place with AdamW, linear warm-up and cosine decay; returns the training record."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, max(1, round(config.warmup_fraction * config.steps)), config.steps
    )
    model.train()
    started = time.perf_counter()
    tokens = answers = 0
    recent_loss, recent_accuracy, log = [], [], []
    for step in range(config.steps):
        length = training_length(step, config, generator)
        num_queries = 1
        if layout == "query_last":
            num_queries = max(1, min(length, round(config.train_query_fraction * length)))
        sequence = length + num_queries + (1 if layout == "query_last" else 2)
        batch = make_batch(config, length, max(1, config.tokens_per_batch // sequence), generator, layout, num_queries)
        logits = answer_logits(model, batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        tokens += batch["input_ids"].numel()
        answers += batch["labels"].numel()
        recent_loss.append(loss.item())
        recent_accuracy.append((logits.argmax(-1) == batch["labels"]).float().mean().item())
        if config.log_every and (step + 1) % config.log_every == 0:
            entry = {
                "step": step + 1,
                "loss": sum(recent_loss) / len(recent_loss),
                "accuracy": sum(recent_accuracy) / len(recent_accuracy),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.append(entry)
            recent_loss, recent_accuracy = [], []
            if progress is not None:
                progress(entry)
    return {
        "steps": config.steps,
        "tokens": tokens,
        "supervised_answers": answers,
        "seconds": round(time.perf_counter() - started, 1),
        "log": log,
    }


@torch.no_grad()
def evaluate(model, config: RetrievalConfig, layout: str = "query_last", batch_size: int = 50) -> dict:
    """Accuracy per context length and per position bucket, one query per context.

    For each length N, `eval_samples` contexts are drawn (from a generator seeded apart from training's) with query
    positions spread evenly over 0 ... N-1; the buckets split 0 ... N-1 into `position_buckets` equal ranges.
    """
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 1_000_003)
    results = {}
    for length in config.lengths:
        samples = config.eval_samples
        positions = (torch.arange(samples) * length) // samples
        positions = positions[torch.randperm(samples, generator=generator)]
        correct = torch.zeros(samples, dtype=torch.bool)
        for start in range(0, samples, batch_size):
            chunk = positions[start : start + batch_size]
            batch = make_batch(config, length, len(chunk), generator, layout, query_positions=chunk)
            predictions = answer_logits(model, batch)[:, -1].argmax(-1)
            correct[start : start + batch_size] = predictions == batch["labels"][:, 0]
        results[str(length)] = score_predictions(positions, correct, length, config.position_buckets)
    model.train()
    return results


def score_predictions(positions: torch.Tensor, correct: torch.Tensor, length: int, buckets: int) -> dict:
    """Accuracy overall and per position bucket, from each query's position and whether its answer was right."""
    edges = [round(index * length / buckets) for index in range(buckets + 1)]
    by_position = []
    for low, high in zip(edges, edges[1:]):
        if high <= low:
            continue
        inside = (positions >= low) & (positions < high)
        count = int(inside.sum())
        by_position.append(
            {
                "positions": [low, high - 1],
                "samples": count,
                "accuracy": float(correct[inside].float().mean()) if count else None,
            }
        )
    return {
        "accuracy": float(correct.float().mean()),
        "correct": int(correct.sum()),
        "samples": len(correct),
        "chance": 1.0 / length,
        "by_position": by_position,
    }


def train_and_evaluate(family: str, layout: str, config: RetrievalConfig, threads: int | None = None) -> dict:
    """Builds, trains and evaluates one model; the unit of work of `run_retrieval` (picklable arguments)."""
    if threads:
        torch.set_num_threads(threads)

    def report(entry):
        print(
            f"[{FAMILY_NAMES[family]}, {layout}] step {entry['step']}/{config.steps} loss {entry['loss']:.3f} "
            f"train accuracy {entry['accuracy']:.2f} ({entry['seconds']:.0f} s)",
            flush=True,
        )

    model = build_model(family, config)
    training = train(model, config, layout, progress=report)
    started = time.perf_counter()
    results = evaluate(model, config, layout)
    return {
        "family": family,
        "layout": layout,
        "parameters": count_parameters(model),
        "training": training,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }


def run_retrieval(output_dir, config: RetrievalConfig | None = None, **overrides) -> dict:
    """Trains and evaluates every family in every layout; writes `retrieval.json` and `retrieval.png`.

    Runs use `config.workers` processes (one torch thread each) side by side; `workers=1` runs them one after the
    other in this process. Every run is seeded by `config.seed`: the same seed and thread count give the same numbers.
    """
    config = replace(config or RetrievalConfig(), **overrides)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(family, layout) for layout in config.layouts for family in config.families]
    started = time.perf_counter()
    if config.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(config.workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(train_and_evaluate, family, layout, config, 1) for family, layout in jobs]
            runs = [future.result() for future in futures]
    else:
        runs = [train_and_evaluate(family, layout, config) for family, layout in jobs]
    results = {
        "task": "in-context retrieval: N distinct symbols, then one of them; answer its position",
        "config": asdict(config),
        "vocab_size": config.vocab_size,
        "parameters": {run["family"]: run["parameters"] for run in runs},
        "runs": {f"{run['family']}/{run['layout']}": run for run in runs},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output_dir / "retrieval.json").write_text(json.dumps(results, indent=2))
    plot(results, output_dir / "retrieval.png")
    return results


def plot(results: dict, path) -> None:
    """Accuracy against context length (one line per model and layout), and against the query's position at the
    shortest and the longest context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_length, by_position) = plt.subplots(1, 2, figsize=(11, 4))
    lengths = [int(length) for length in results["config"]["lengths"]]
    shown = sorted({min(lengths), max(lengths)})
    for index, run in enumerate(results["runs"].values()):
        label = f"{FAMILY_NAMES[run['family']]} ({run['parameters']:,} parameters)"
        if len(results["config"]["layouts"]) > 1:
            label += ", query first" if run["layout"] == "query_first" else ", query last"
        style = "--" if run["layout"] == "query_first" else "-"
        color = f"C{index}"
        accuracy = [100 * run["results"][str(length)]["accuracy"] for length in lengths]
        by_length.plot(lengths, accuracy, style, color=color, marker="o", label=label)
        for length, marker in zip(shown, ("s", "o")):
            buckets = run["results"][str(length)]["by_position"]
            middles = [100 * (bucket["positions"][0] + bucket["positions"][1] + 1) / 2 / length for bucket in buckets]
            values = [100 * (bucket["accuracy"] or 0.0) for bucket in buckets]
            by_position.plot(
                middles, values, style, color=color, marker=marker, label=f"{label.split(' (')[0]}, N = {length}"
            )
    by_length.plot(lengths, [100 / length for length in lengths], ":", color="grey", label="chance")
    by_length.set(xlabel="context length N", ylabel="accuracy (%)", ylim=(-2, 102), title="Retrieval accuracy")
    by_length.set_xscale("log")
    by_length.minorticks_off()
    by_length.set_xticks(lengths, [str(length) for length in lengths])
    by_position.set(
        xlabel="position of the query (% of the context)",
        ylabel="accuracy (%)",
        ylim=(-2, 102),
        xlim=(0, 100),
        title="Accuracy by position",
    )
    by_length.legend(fontsize=8)
    by_position.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def results_table(results: dict) -> str:
    """The accuracy table: one row per context length, one column per model and layout, and chance."""
    runs = results["runs"]
    names = []
    for run in runs.values():
        name = FAMILY_NAMES[run["family"]]
        if len(results["config"]["layouts"]) > 1:
            name += " (query first)" if run["layout"] == "query_first" else " (query last)"
        names.append(name)
    widths = [max(10, len(name)) for name in names]
    lines = [f"{'N':>5}  " + "  ".join(f"{name:>{width}}" for name, width in zip(names, widths)) + f"  {'chance':>7}"]
    for length in results["config"]["lengths"]:
        cells = [
            f"{100 * run['results'][str(length)]['accuracy']:>{width}.1f}" for run, width in zip(runs.values(), widths)
        ]
        lines.append(f"{length:>5}  " + "  ".join(cells) + f"  {100 / length:>7.1f}")
    lines.append(
        "accuracy in %, one query per context; parameters: "
        + ", ".join(f"{FAMILY_NAMES[family]} {count:,}" for family, count in results["parameters"].items())
    )
    return "\n".join(lines)


__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "RetrievalConfig",
    "answer_logits",
    "build_model",
    "count_parameters",
    "evaluate",
    "make_batch",
    "plot",
    "results_table",
    "run_retrieval",
    "score_predictions",
    "train",
    "train_and_evaluate",
]
