# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""In-context retrieval: can a language model find a token in its context and say where it was?

A sample is a context of N distinct symbol tokens, then a query: one of those symbols. The answer is the query's
position in the context (0 ... N-1), written as a position token. This is the synthetic task with which Mamba-VL
and Pythia-VL were compared on retrieval from a long context (576 = 24 x 24 is the number of image patches of
EVA-02-L/14-336): a Transformer can attend to the matching symbol directly, a state-space model has to have kept
what it needs in a fixed-size state by the time the query arrives.

`run_retrieval` trains a text-only `MambaForCausalLM` and a `GPTNeoXForCausalLM` of the same depth and width (and
about the same number of parameters) from scratch, with the same data, step cap, optimizer and schedule, and
evaluates both at each context length, per query position. Each family gets its own learning rate: every rate of
`learning_rates` is trained until its held-out accuracy stops improving (see "Training" below), and the rate with the
best held-out accuracy is the one reported; the held-out contexts are drawn apart from both the training and the
test contexts. It writes `retrieval.json` (with the held-out curve of every rate) and `retrieval.png`.
`run_sweep` repeats the experiment over widths and Mamba state sizes.

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
- in the short phase, N is drawn log-uniformly between `min_length` and `short_phase_max_length` (the matching
  mechanism is found on short contexts);
- in the long phase, N is drawn log-uniformly from the whole range, uniformly, or is the longest length, with
  weights `long_phase_mix` (a third each by default), so that long contexts and late position tokens, which only
  contexts longer than them can train, get enough training;
- each batch holds `tokens_per_batch` tokens, so it has fewer, longer samples as N grows;
- with the query last, a training context is followed by queries for a random `train_query_fraction` of its
  symbols, each predicted at its own position (they do not depend on one another). The query-first layout has one
  query per context.
Every `eval_every` steps the model answers the same `heldout_samples` held-out contexts per length. A phase ends
when its held-out accuracy has not improved for `patience` evaluations in a row, or is perfect: the short phase
watches the lengths up to `short_phase_max_length` and lasts at most `short_phase` of the `steps`, the long phase
watches all lengths and ends training (`steps` is the cap). The model keeps the weights of its best held-out
evaluation (mean accuracy over all lengths).
Evaluation always asks one query per context, at query positions spread evenly over the context, with the argmax
over the whole vocabulary.
"""

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    MambaConfig,
    MambaForCausalLM,
)
from transformers.optimization import get_cosine_schedule_with_warmup

from ..models.mamba_kernels import install_device_dispatch
from ..toy import ssm_backbone_config


FAMILIES = ("pythia", "mamba")
# The other state-space backbones `--families` takes beside the default two, at the same width, depth and state size.
BACKBONE_FAMILIES = ("mamba2", "falcon_mamba", "falcon_h1")
FAMILY_NAMES = {"pythia": "Pythia", "mamba": "Mamba", "mamba2": "Mamba-2", "falcon_mamba": "FalconMamba",
                "falcon_h1": "FalconH1"}
LAYOUTS = ("query_last", "query_first")
POSITION_TAGS = ("input", "none")
PAD_ID = 0
QUERY_ID = 1
FIRST_POSITION_ID = 2
# Seed offsets of the test and the held-out contexts, apart from each other and from the training seed.
TEST_SEED_OFFSET = 1_000_003
HELDOUT_SEED_OFFSET = 2_000_003


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
    # The default is one rate and a fixed budget; the tuned protocol (`TUNED`) chooses each family's rate on held-out
    # contexts and stops on a plateau. It is not the default yet: at a cap that fits the default run's time, its
    # plateau rule ends Mamba's short phase inside its slow start (docs/retrieval.md).
    learning_rates: tuple[float, ...] = (1e-3,)
    learning_rate: float = 1e-3  # the rate `train` uses; `run_retrieval` sets it to each of `learning_rates`
    eval_every: int = 0
    patience: int = 4
    heldout_samples: int = 32
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
        self.learning_rates = tuple(float(rate) for rate in self.learning_rates)
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
            ("families", self.families, FAMILIES + BACKBONE_FAMILIES),
            ("position_tags", (self.position_tags,), POSITION_TAGS),
        ):
            unknown = [value for value in values if value not in allowed]
            if unknown or not values:
                raise ValueError(f"{name} must be among {allowed}, got {values}.")
        if len(self.long_phase_mix) != 3 or min(self.long_phase_mix) < 0 or sum(self.long_phase_mix) <= 0:
            raise ValueError(f"long_phase_mix must be three non-negative weights, got {self.long_phase_mix}.")
        if self.steps < 1 or self.tokens_per_batch < 1 or self.eval_samples < 1 or self.position_buckets < 1:
            raise ValueError("steps, tokens_per_batch, eval_samples and position_buckets must be positive.")
        if (
            not self.learning_rates
            or min(self.learning_rates) <= 0
            or len(set(self.learning_rates)) != len(self.learning_rates)
        ):
            raise ValueError(f"learning_rates must be distinct positive rates, got {self.learning_rates}.")
        if self.eval_every == 0 and len(self.learning_rates) > 1:
            raise ValueError(
                f"choosing among learning_rates {self.learning_rates} needs held-out evaluations: eval_every must be "
                "positive."
            )
        if self.eval_every < 0 or self.patience < 1 or self.heldout_samples < 1:
            raise ValueError(
                f"eval_every must be >= 0 (0: no held-out evaluation), patience and heldout_samples >= 1; got "
                f"{self.eval_every}, {self.patience}, {self.heldout_samples}."
            )

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
    if family not in FAMILIES + BACKBONE_FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES + BACKBONE_FAMILIES}, got {family!r}.")
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
    if family in BACKBONE_FAMILIES:
        # FalconMamba is Mamba's layer with norms on B, C and dt (the same size), Mamba-2 a little smaller, FalconH1
        # adds attention and an MLP beside each mixer (larger: not matched).
        fields = {name: value for name, value in common.items() if name != "hidden_size"}
        backbone = ssm_backbone_config(
            family, config.width, config.state_size, attention_heads=max(1, config.width // 32),
            intermediate_size=2 * config.width, max_position_embeddings=2 * config.max_length + 8, **fields,
        )
        return AutoModelForCausalLM.from_config(backbone)
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


def training_length(phase: str, config: RetrievalConfig, generator: torch.Generator) -> int:
    """The context length of a batch in the curriculum's `phase`, "short" or "long" (see the module docstring)."""

    def log_uniform(low: int, high: int) -> int:
        draw = torch.rand((), generator=generator).item()
        return min(high, int(math.exp(math.log(low) + (math.log(high + 1) - math.log(low)) * draw)))

    low = min(config.min_length, config.max_length)
    if phase == "short":
        return log_uniform(low, max(low, min(config.short_phase_max_length, config.max_length)))
    weights = torch.tensor(config.long_phase_mix, dtype=torch.float)
    kind = int(torch.multinomial(weights, 1, generator=generator))
    if kind == 0:
        return log_uniform(low, config.max_length)
    if kind == 1:
        return int(torch.randint(low, config.max_length + 1, (), generator=generator))
    return config.max_length


class Plateau:
    """Tells when a held-out accuracy has stopped improving: after `patience` evaluations in a row without a new
    best (strictly higher), or as soon as it is perfect."""

    def __init__(self, patience: int):
        self.patience, self.best, self.waited = patience, -math.inf, 0

    def update(self, accuracy: float) -> str | None:
        """Records one evaluation; returns why to stop ("perfect", "plateau"), or None to go on."""
        if accuracy > self.best:
            self.best, self.waited = accuracy, 0
        else:
            self.waited += 1
        if accuracy >= 1.0:
            return "perfect"
        return "plateau" if self.waited >= self.patience else None


def heldout_accuracy(model, config: RetrievalConfig, layout: str = "query_last") -> dict[int, float]:
    """Accuracy per length on the held-out contexts (`heldout_samples` per length, the same at every call)."""
    results = evaluate(model, config, layout, samples=config.heldout_samples, seed_offset=HELDOUT_SEED_OFFSET)
    return {int(length): score["accuracy"] for length, score in results.items()}


def short_lengths(config: RetrievalConfig) -> list[int]:
    """The evaluation lengths the short phase trains (at least the shortest one): its held-out accuracy is theirs."""
    return [length for length in config.lengths if length <= config.short_phase_max_length] or [min(config.lengths)]


def train(model, config: RetrievalConfig, layout: str = "query_last", progress: Callable | None = None) -> dict:
    """Trains `model` in place with AdamW (`config.learning_rate`), linear warm-up and cosine decay over the step
    cap, through the two phases of the curriculum, stopping each on its held-out plateau (module docstring).

    With `eval_every` 0 there is no held-out evaluation and training runs `steps` steps, the first `short_phase` of
    them short. Otherwise the model ends with the weights of its best held-out evaluation. Returns the training
    record: steps run, tokens, answers, the loss log, the held-out `curve` (one entry per evaluation), the step the
    long phase began at and why each phase ended.
    """
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, max(1, round(config.warmup_fraction * config.steps)), config.steps
    )
    model.train()
    started = time.perf_counter()
    short_steps = round(config.short_phase * config.steps)
    phase = "short" if short_steps > 0 else "long"
    watched = short_lengths(config)
    plateau = Plateau(config.patience)
    record = {"long_phase_from": 0 if phase == "long" else None, "short_phase_end": None, "stop_reason": "step cap"}
    best = {"accuracy": -1.0, "step": 0, "state": None}
    tokens = answers = steps_run = 0
    recent_loss, recent_accuracy, log, curve = [], [], [], []
    for step in range(config.steps):
        if phase == "short" and step >= short_steps:
            phase, record["long_phase_from"], record["short_phase_end"] = "long", step, "step cap"
            plateau = Plateau(config.patience)
        length = training_length(phase, config, generator)
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
        steps_run = step + 1
        tokens += batch["input_ids"].numel()
        answers += batch["labels"].numel()
        recent_loss.append(loss.item())
        recent_accuracy.append((logits.argmax(-1) == batch["labels"]).float().mean().item())
        if config.log_every and steps_run % config.log_every == 0:
            entry = {
                "step": steps_run,
                "phase": phase,
                "loss": sum(recent_loss) / len(recent_loss),
                "accuracy": sum(recent_accuracy) / len(recent_accuracy),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.append(entry)
            recent_loss, recent_accuracy = [], []
            if progress is not None:
                progress(entry)
        if not config.eval_every or (steps_run % config.eval_every and steps_run < config.steps):
            continue
        by_length = heldout_accuracy(model, config, layout)
        overall = sum(by_length.values()) / len(by_length)
        watched_accuracy = overall if phase == "long" else sum(by_length[n] for n in watched) / len(watched)
        if overall > best["accuracy"]:
            state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            best = {"accuracy": overall, "step": steps_run, "state": state}
        entry = {
            "step": steps_run,
            "phase": phase,
            "heldout_accuracy": overall,
            "watched_accuracy": watched_accuracy,
            "by_length": {str(n): accuracy for n, accuracy in by_length.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        curve.append(entry)
        if progress is not None:
            progress({**entry, "best_accuracy": best["accuracy"], "best_step": best["step"]})
        reason = plateau.update(watched_accuracy)
        if reason is None:
            continue
        if phase == "long":
            record["stop_reason"] = reason
            break
        phase, record["long_phase_from"], record["short_phase_end"] = "long", steps_run, reason
        plateau = Plateau(config.patience)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {
        "steps": steps_run,
        "learning_rate": config.learning_rate,
        "tokens": tokens,
        "supervised_answers": answers,
        "seconds": round(time.perf_counter() - started, 1),
        "log": log,
        "curve": curve,
        "heldout_accuracy": best["accuracy"] if best["state"] is not None else None,
        "best_step": best["step"] if best["state"] is not None else None,
        **record,
    }


@torch.no_grad()
def evaluate(
    model,
    config: RetrievalConfig,
    layout: str = "query_last",
    batch_size: int = 50,
    samples: int | None = None,
    seed_offset: int = TEST_SEED_OFFSET,
) -> dict:
    """Accuracy per context length and per position bucket, one query per context.

    For each length N, `samples` (default `eval_samples`) contexts are drawn, from a generator seeded by `seed_offset`
    apart from training's (the test contexts by default, `HELDOUT_SEED_OFFSET` for the held-out ones), with query
    positions spread evenly over 0 ... N-1; the buckets split 0 ... N-1 into `position_buckets` equal ranges.
    """
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + seed_offset)
    samples = samples or config.eval_samples
    results = {}
    for length in config.lengths:
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
    """Builds, trains (at `config.learning_rate`) and evaluates one model; the unit of work of `run_retrieval`
    (picklable arguments)."""
    if threads:
        torch.set_num_threads(threads)
    name = f"[{FAMILY_NAMES[family]}, {layout}, lr {config.learning_rate:g}]"

    def report(entry):
        if "heldout_accuracy" in entry:
            print(
                f"{name} step {entry['step']} held-out accuracy {entry['heldout_accuracy']:.3f} ({entry['phase']} "
                f"phase watches {entry['watched_accuracy']:.3f}; best {entry['best_accuracy']:.3f} at step "
                f"{entry['best_step']})",
                flush=True,
            )
            return
        print(
            f"{name} step {entry['step']}/{config.steps} loss {entry['loss']:.3f} "
            f"train accuracy {entry['accuracy']:.2f} ({entry['seconds']:.0f} s)",
            flush=True,
        )

    model = build_model(family, config)
    training = train(model, config, layout, progress=report)
    print(
        f"{name} stopped at step {training['steps']} ({training['stop_reason']}); long phase from step "
        f"{training['long_phase_from']}",
        flush=True,
    )
    started = time.perf_counter()
    results = evaluate(model, config, layout)
    return {
        "family": family,
        "layout": layout,
        "learning_rate": config.learning_rate,
        "parameters": count_parameters(model),
        "training": training,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }


def choose_learning_rate(heldout: dict[float, float | None]) -> float:
    """The rate with the best held-out accuracy (the first in grid order on a tie; a rate without evaluation loses)."""
    return max(heldout, key=lambda rate: -math.inf if heldout[rate] is None else heldout[rate])


def run_retrieval(output_dir, config: RetrievalConfig | None = None, **overrides) -> dict:
    """Trains every family in every layout at every rate of `learning_rates`, keeps the rate with the best held-out
    accuracy per family and layout, and evaluates; writes `retrieval.json` and `retrieval.png`.

    A run of `runs` is the chosen rate's (`learning_rate`, `training`, `results`), with every rate's training record
    (its held-out curve included) and test results under `by_rate`. Runs use `config.workers` processes (one torch
    thread each) side by side; `workers=1` runs them one after the other in this process. Every run is seeded by
    `config.seed`: the same seed and thread count give the same numbers.
    """
    config = replace(config or RetrievalConfig(), **overrides)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Mamba's runs take longest: they go first, so that the workers finish together.
    jobs = [
        (family, layout, rate)
        for layout in config.layouts
        for family in sorted(config.families, key=lambda family: family != "mamba")
        for rate in config.learning_rates
    ]
    started = time.perf_counter()
    if config.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(config.workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(train_and_evaluate, family, layout, replace(config, learning_rate=rate), 1)
                for family, layout, rate in jobs
            ]
            done = [future.result() for future in futures]
    else:
        done = [
            train_and_evaluate(family, layout, replace(config, learning_rate=rate)) for family, layout, rate in jobs
        ]
    runs = {}
    for layout in config.layouts:
        for family in config.families:
            by_rate = {run["learning_rate"]: run for run in done if (run["family"], run["layout"]) == (family, layout)}
            rate = choose_learning_rate({rate: run["training"]["heldout_accuracy"] for rate, run in by_rate.items()})
            runs[f"{family}/{layout}"] = {
                **by_rate[rate],
                "by_rate": {
                    f"{rate:g}": {key: run[key] for key in ("training", "evaluation_seconds", "results")}
                    for rate, run in by_rate.items()
                },
            }
    results = {
        "task": "in-context retrieval: N distinct symbols, then one of them; answer its position",
        "protocol": "per family and layout, the learning rate with the best held-out accuracy; each rate trained "
        "until its held-out accuracy stopped improving (patience, step cap), from its best held-out evaluation",
        "config": asdict(config),
        "vocab_size": config.vocab_size,
        "parameters": {run["family"]: run["parameters"] for run in runs.values()},
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output_dir / "retrieval.json").write_text(json.dumps(results, indent=2))
    plot(results, output_dir / "retrieval.png")
    return results


def _run_label(run: dict, results: dict) -> str:
    label = FAMILY_NAMES[run["family"]]
    if len(results["config"]["layouts"]) > 1:
        label += ", query first" if run["layout"] == "query_first" else ", query last"
    return label


def plot(results: dict, path) -> None:
    """Accuracy against context length (one line per model and layout), against the query's position at the
    shortest and the longest context, and the held-out curve of every learning rate (the chosen one solid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_length, by_position, curves) = plt.subplots(1, 3, figsize=(16, 4))
    lengths = [int(length) for length in results["config"]["lengths"]]
    shown = sorted({min(lengths), max(lengths)})
    for index, run in enumerate(results["runs"].values()):
        name = _run_label(run, results)
        label = f"{name} ({run['parameters']:,} parameters, lr {run['learning_rate']:g})"
        style = "--" if run["layout"] == "query_first" else "-"
        color = f"C{index}"
        accuracy = [100 * run["results"][str(length)]["accuracy"] for length in lengths]
        by_length.plot(lengths, accuracy, style, color=color, marker="o", label=label)
        for length, marker in zip(shown, ("s", "o")):
            buckets = run["results"][str(length)]["by_position"]
            middles = [100 * (bucket["positions"][0] + bucket["positions"][1] + 1) / 2 / length for bucket in buckets]
            values = [100 * (bucket["accuracy"] or 0.0) for bucket in buckets]
            by_position.plot(middles, values, style, color=color, marker=marker, label=f"{name}, N = {length}")
        for rate, other in run.get("by_rate", {}).items():
            curve = other["training"]["curve"]
            chosen = float(rate) == run["learning_rate"]
            curves.plot(
                [entry["step"] for entry in curve],
                [100 * entry["heldout_accuracy"] for entry in curve],
                "-" if chosen else ":",
                color=color,
                alpha=1.0 if chosen else 0.6,
                linewidth=2 if chosen else 1,
                label=f"{name}, lr {rate}" + (" (chosen)" if chosen else ""),
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
    curves.set(
        xlabel="training step", ylabel="held-out accuracy (%, mean over N)", ylim=(-2, 102), title="Held-out curves"
    )
    for axes in (by_length, by_position, curves):
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def results_table(results: dict) -> str:
    """The accuracy table: one row per context length, one column per model and layout, and chance; then each
    model's chosen learning rate and where its training stopped."""
    runs = results["runs"]
    names = [_run_label(run, results) for run in runs.values()]
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
    for name, run in zip(names, runs.values()):
        heldout = ", ".join(
            f"{rate}: " + ("-" if accuracy is None else f"{100 * accuracy:.1f}")
            for rate, accuracy in (
                (rate, other["training"]["heldout_accuracy"]) for rate, other in run["by_rate"].items()
            )
        )
        lines.append(
            f"{name}: lr {run['learning_rate']:g} (held-out accuracy % by rate: {heldout}); {run['training']['steps']} "
            f"steps ({run['training']['stop_reason']}), best at step {run['training']['best_step']}"
        )
    return "\n".join(lines)


SWEEP_WIDTHS = (128, 256)
SWEEP_STATE_SIZES = (16, 64)


def size_name(width: int, state_size: int) -> str:
    """The folder of one size of the sweep."""
    return f"width{width}_state{state_size}"


# Settings that change how a run is printed or scheduled, not its numbers.
NOT_IN_RESULTS = ("log_every", "workers")


def _saved_run(folder: Path, config: RetrievalConfig) -> dict | None:
    """The results saved in `folder` if they were made with `config` (up to `NOT_IN_RESULTS`), else None."""
    saved = folder / "retrieval.json"
    if not saved.exists():
        return None
    results = json.loads(saved.read_text())
    wanted = json.loads(json.dumps(asdict(config)))
    found = results.get("config", {})
    same = all(found.get(key) == value for key, value in wanted.items() if key not in NOT_IN_RESULTS)
    return results if same and set(found) == set(wanted) else None


def estimate_sweep_seconds(
    output_dir, config: RetrievalConfig, widths=SWEEP_WIDTHS, state_sizes=SWEEP_STATE_SIZES, probe_steps: int = 2
) -> dict:
    """An estimate of the sweep's wall time, before it starts, if every run goes to its step cap.

    Times `probe_steps` training steps (at the short phase's longest and at the longest context) and one held-out
    evaluation of each family at each size, in the thread setting the runs will have; sizes already saved in
    `output_dir` cost nothing. Returns the total and each size's seconds.
    """
    threads = torch.get_num_threads()
    if config.workers > 1:
        torch.set_num_threads(1)
    per_size = {}
    try:
        for width in widths:
            for state_size in state_sizes:
                size_config = replace(config, width=width, state_size=state_size)
                if _saved_run(Path(output_dir) / size_name(width, state_size), size_config) is not None:
                    per_size[size_name(width, state_size)] = 0.0
                    continue
                job_seconds = []
                for family in config.families:
                    model = build_model(family, size_config)
                    probe = replace(
                        size_config,
                        steps=probe_steps,
                        short_phase=0.5,
                        eval_every=0,
                        log_every=0,
                        learning_rates=(1e-3,),
                    )
                    train(model, replace(probe, steps=1))  # warm-up
                    step = train(model, probe)["seconds"] / probe_steps
                    started = time.perf_counter()
                    heldout_accuracy(model, size_config)
                    heldout = time.perf_counter() - started
                    evaluations = math.ceil(config.steps / config.eval_every) if config.eval_every else 0
                    test = heldout * config.eval_samples / config.heldout_samples
                    run = config.steps * step + evaluations * heldout + test
                    job_seconds += [run] * len(config.learning_rates) * len(config.layouts)
                workers = max(1, min(config.workers, len(job_seconds)))
                per_size[size_name(width, state_size)] = max(max(job_seconds), sum(job_seconds) / workers)
    finally:
        torch.set_num_threads(threads)
    return {"seconds": sum(per_size.values()), "per_size": per_size}


def run_sweep(output_dir, config: RetrievalConfig | None = None, widths=SWEEP_WIDTHS, state_sizes=SWEEP_STATE_SIZES):
    """`run_retrieval` at every width and Mamba state size, each in its folder `width{w}_state{s}`; writes
    `retrieval_sweep.json` (per size: parameters, chosen rates, steps, held-out and test accuracy per length) and
    `retrieval_sweep.png` (accuracy against N, one panel per size).

    Pythia is matched to Mamba at every size: its feed-forward width makes a GPT-NeoX layer as large as the Mamba
    layer of that width and state size (`build_model`). A size whose folder already holds results made with the
    same configuration is read back instead of run again, so an interrupted sweep resumes.
    """
    config = config or RetrievalConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sizes = []
    for width in widths:
        for state_size in state_sizes:
            size_config = replace(config, width=width, state_size=state_size)
            folder = output_dir / size_name(width, state_size)
            results = _saved_run(folder, size_config)
            reused = results is not None
            if not reused:
                results = run_retrieval(folder, size_config)
            runs = {}
            for key, run in results["runs"].items():
                training = run["training"]
                runs[key] = {
                    "learning_rate": run["learning_rate"],
                    "steps": training["steps"],
                    "best_step": training["best_step"],
                    "long_phase_from": training["long_phase_from"],
                    "stop_reason": training["stop_reason"],
                    "heldout_accuracy": training["heldout_accuracy"],
                    "heldout_by_rate": {
                        rate: other["training"]["heldout_accuracy"] for rate, other in run["by_rate"].items()
                    },
                    "accuracy": {length: score["accuracy"] for length, score in run["results"].items()},
                }
            sizes.append(
                {
                    "width": width,
                    "state_size": state_size,
                    "folder": folder.name,
                    "parameters": results["parameters"],
                    "seconds": results["seconds"],
                    "reused": reused,
                    "runs": runs,
                }
            )
    sweep = {
        "config": asdict(config),
        "widths": list(widths),
        "state_sizes": list(state_sizes),
        "sizes": sizes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output_dir / "retrieval_sweep.json").write_text(json.dumps(sweep, indent=2))
    plot_sweep(sweep, output_dir / "retrieval_sweep.png")
    return sweep


def plot_sweep(sweep: dict, path) -> None:
    """Accuracy against context length, one panel per size of the sweep, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(sweep["widths"]), len(sweep["state_sizes"])
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    lengths = [int(length) for length in sweep["config"]["lengths"]]
    for size in sweep["sizes"]:
        panel = axes[sweep["widths"].index(size["width"])][sweep["state_sizes"].index(size["state_size"])]
        for index, (key, run) in enumerate(size["runs"].items()):
            family, layout = key.split("/")
            label = f"{FAMILY_NAMES[family]} ({size['parameters'][family]:,}, lr {run['learning_rate']:g})"
            accuracy = [100 * run["accuracy"][str(length)] for length in lengths]
            style = "--" if layout == "query_first" else "-"
            panel.plot(lengths, accuracy, style, color=f"C{index}", marker="o", label=label)
        panel.plot(lengths, [100 / length for length in lengths], ":", color="grey", label="chance")
        panel.set(
            xlabel="context length N",
            ylabel="accuracy (%)",
            ylim=(-2, 102),
            title=f"width {size['width']}, Mamba state {size['state_size']}",
        )
        panel.set_xscale("log")
        panel.minorticks_off()
        panel.set_xticks(lengths, [str(length) for length in lengths])
        panel.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sweep_table(sweep: dict) -> str:
    """One row per size and model: chosen rate, steps run, and accuracy (%) per context length."""
    lengths = [str(length) for length in sweep["config"]["lengths"]]
    lines = [
        f"{'width':>5} {'state':>5}  {'model':<8} {'parameters':>10} {'lr':>7} {'steps':>5}  "
        + " ".join(f"{length:>6}" for length in lengths)
    ]
    for size in sweep["sizes"]:
        for key, run in size["runs"].items():
            family = key.split("/")[0]
            lines.append(
                f"{size['width']:>5} {size['state_size']:>5}  {FAMILY_NAMES[family]:<8} "
                f"{size['parameters'][family]:>10,} {run['learning_rate']:>7g} {run['steps']:>5}  "
                + " ".join(f"{100 * run['accuracy'][length]:>6.1f}" for length in lengths)
            )
    return "\n".join(lines)


__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "SWEEP_STATE_SIZES",
    "SWEEP_WIDTHS",
    "Plateau",
    "RetrievalConfig",
    "answer_logits",
    "build_model",
    "choose_learning_rate",
    "count_parameters",
    "estimate_sweep_seconds",
    "evaluate",
    "heldout_accuracy",
    "make_batch",
    "plot",
    "plot_sweep",
    "results_table",
    "run_retrieval",
    "run_sweep",
    "score_predictions",
    "short_lengths",
    "size_name",
    "sweep_table",
    "train",
    "train_and_evaluate",
]
