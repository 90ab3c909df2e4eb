# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The in-context retrieval experiment: data, model sizes, metric, curriculum, the Mamba scan path and the CLI."""

import json

import pytest
import torch

import vlmamba.models.mamba_kernels
from vlmamba.cli import main
from vlmamba.experiments.retrieval import (
    FIRST_POSITION_ID,
    QUERY_ID,
    RetrievalConfig,
    answer_logits,
    build_model,
    count_parameters,
    evaluate,
    make_batch,
    run_retrieval,
    score_predictions,
    train,
    training_length,
)


TINY = dict(lengths=(4, 8), num_symbols=16, width=16, depth=1, state_size=4, steps=2, tokens_per_batch=64, workers=1)


def decode(sample_ids, sample_tags, config):
    """Symbols (as indices) and tags (as positions) of one sample, read back from the ids."""
    symbol_start = FIRST_POSITION_ID + config.max_length
    return [int(i) - symbol_start for i in sample_ids], [int(t) - FIRST_POSITION_ID for t in sample_tags]


@pytest.mark.parametrize("length", [1, 5, 20, 576])
@pytest.mark.parametrize("num_queries", [1, 3])
def test_query_last_layout(length, num_queries):
    config = RetrievalConfig()
    num_queries = min(num_queries, length)
    batch = make_batch(config, length, 6, torch.Generator().manual_seed(length), "query_last", num_queries)
    assert batch["input_ids"].shape == (6, length + 1 + num_queries) == batch["position_tags"].shape
    assert batch["labels"].shape == (6, num_queries)
    for ids, tags, labels, positions in zip(
        batch["input_ids"], batch["position_tags"], batch["labels"], batch["query_positions"]
    ):
        context = ids[:length].tolist()
        assert len(set(context)) == length
        assert all(FIRST_POSITION_ID + config.max_length <= i < config.vocab_size for i in context)
        assert tags[:length].tolist() == [FIRST_POSITION_ID + k for k in range(length)]
        assert tags[length:].eq(0).all()
        assert ids[length] == QUERY_ID
        queries = ids[length + 1 :].tolist()
        assert len(set(queries)) == num_queries
        for query, label, position in zip(queries, labels.tolist(), positions.tolist()):
            assert context.index(query) == position == label - FIRST_POSITION_ID


@pytest.mark.parametrize("length", [1, 7, 400])
def test_query_first_layout(length):
    config = RetrievalConfig()
    batch = make_batch(config, length, 5, torch.Generator().manual_seed(0), "query_first")
    assert batch["input_ids"].shape == (5, length + 3)
    for ids, tags, label in zip(batch["input_ids"], batch["position_tags"], batch["labels"][:, 0]):
        assert ids[0] == QUERY_ID and ids[-1] == QUERY_ID
        context = ids[2:-1].tolist()
        assert len(set(context)) == length
        assert context.index(int(ids[1])) == int(label) - FIRST_POSITION_ID
        assert tags[2:-1].tolist() == [FIRST_POSITION_ID + k for k in range(length)]
        assert tags[:2].eq(0).all() and tags[-1] == 0


def test_bare_symbols_have_no_tags_and_fixed_query_positions():
    config = RetrievalConfig(position_tags="none")
    positions = torch.tensor([0, 3, 9])
    batch = make_batch(config, 10, 3, torch.Generator().manual_seed(0), query_positions=positions)
    assert batch["position_tags"].eq(0).all()
    assert batch["labels"][:, 0].tolist() == [FIRST_POSITION_ID + 0, FIRST_POSITION_ID + 3, FIRST_POSITION_ID + 9]
    assert [batch["input_ids"][row, :10].tolist().index(int(batch["input_ids"][row, -1])) for row in range(3)] == [
        0,
        3,
        9,
    ]


def test_same_seed_same_data_and_bad_arguments():
    config = RetrievalConfig()
    first = make_batch(config, 50, 4, torch.Generator().manual_seed(7), num_queries=5)
    second = make_batch(config, 50, 4, torch.Generator().manual_seed(7), num_queries=5)
    assert all(torch.equal(first[key], second[key]) for key in first)
    generator = torch.Generator()
    with pytest.raises(ValueError, match="length must be between 1 and 576"):
        make_batch(config, 577, 1, generator)
    with pytest.raises(ValueError, match="num_queries"):
        make_batch(config, 5, 1, generator, num_queries=6)
    with pytest.raises(ValueError, match="1 with the query first"):
        make_batch(config, 5, 1, generator, "query_first", num_queries=2)
    with pytest.raises(ValueError, match="layout"):
        make_batch(config, 5, 1, generator, "query_middle")
    with pytest.raises(ValueError, match="query_positions"):
        make_batch(config, 5, 2, generator, query_positions=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_symbols"):
        RetrievalConfig(num_symbols=100)
    with pytest.raises(ValueError, match="families"):
        RetrievalConfig(families=("pythia", "llama"))
    with pytest.raises(ValueError, match="layouts"):
        RetrievalConfig(layouts=())


@pytest.mark.parametrize("sizes", [{}, dict(width=16, depth=1, state_size=4), dict(width=64, depth=3)])
def test_models_have_the_same_depth_width_and_size(sizes):
    config = RetrievalConfig(**sizes)
    pythia, mamba = build_model("pythia", config), build_model("mamba", config)
    assert pythia.config.num_hidden_layers == mamba.config.num_hidden_layers == config.depth
    assert pythia.config.hidden_size == mamba.config.hidden_size == config.width
    assert pythia.config.vocab_size == mamba.config.vocab_size == config.vocab_size
    assert abs(count_parameters(pythia) - count_parameters(mamba)) <= 0.1 * count_parameters(mamba)
    # The layer formula behind the GPT-NeoX feed-forward width matches the built Mamba layer exactly.
    mamba_layer = count_parameters(mamba.backbone.layers[0])
    pythia_layer = count_parameters(pythia.gpt_neox.layers[0])
    assert abs(mamba_layer - pythia_layer) <= 2 * config.width + 1


def test_default_models_parameter_counts():
    config = RetrievalConfig()
    counts = [count_parameters(build_model(family, config)) for family in ("pythia", "mamba")]
    assert abs(counts[0] - counts[1]) / counts[1] < 0.001


def test_score_predictions_by_hand():
    positions = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    correct = torch.tensor([True, True, False, True, False, False, True, False])
    score = score_predictions(positions, correct, length=8, buckets=4)
    assert score["accuracy"] == 0.5 and score["correct"] == 4 and score["samples"] == 8 and score["chance"] == 0.125
    assert [bucket["positions"] for bucket in score["by_position"]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [bucket["accuracy"] for bucket in score["by_position"]] == [1.0, 0.5, 0.0, 0.5]
    # More buckets than positions: empty ranges are left out, nothing is counted twice.
    score = score_predictions(torch.tensor([0, 1, 2]), torch.tensor([True, False, True]), length=3, buckets=5)
    assert sum(bucket["samples"] for bucket in score["by_position"]) == 3
    assert [bucket["accuracy"] for bucket in score["by_position"]] == [1.0, 0.0, 1.0]


class FirstHalfOracle(torch.nn.Module):
    """Reads the ids back from one-hot embeddings; answers right when the query is in the first half of the context
    and answers position 0 otherwise."""

    def __init__(self, config, layout):
        super().__init__()
        self.config, self.layout = config, layout
        self.embeddings = torch.nn.Embedding(config.vocab_size, config.vocab_size)
        self.embeddings.weight.data = torch.eye(config.vocab_size)

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, inputs_embeds, logits_to_keep, use_cache):
        symbol_start = FIRST_POSITION_ID + self.config.max_length
        symbols = inputs_embeds[..., symbol_start:].argmax(-1)
        if self.layout == "query_last":
            context, query = symbols[:, :-2], symbols[:, -1]
        else:
            context, query = symbols[:, 2:-1], symbols[:, 1]
        position = (context == query[:, None]).float().argmax(1)
        length = context.shape[1]
        answer = torch.where(position < (length + 1) // 2, position, torch.zeros_like(position))
        logits = torch.nn.functional.one_hot(answer + FIRST_POSITION_ID, self.config.vocab_size).float()
        return type("Output", (), {"logits": logits[:, None].expand(-1, logits_to_keep, -1)})


@pytest.mark.parametrize("layout", ["query_last", "query_first"])
def test_evaluate_against_a_model_with_known_answers(layout):
    config = RetrievalConfig(lengths=(20, 7), num_symbols=32, eval_samples=8, position_buckets=2)
    results = evaluate(FirstHalfOracle(config, layout), config, layout, batch_size=3)
    # N = 20: queries at (i * 20) // 8 = 0 2 5 7 | 10 12 15 17; the first four are right.
    assert results["20"]["accuracy"] == 0.5
    assert [bucket["accuracy"] for bucket in results["20"]["by_position"]] == [1.0, 0.0]
    # N = 7: queries at 0 0 1 2 | 3 4 5 6; right below 4, and at 0 whatever the answer.
    assert results["7"]["accuracy"] == 5 / 8
    assert [bucket["positions"] for bucket in results["7"]["by_position"]] == [[0, 3], [4, 6]]
    assert [bucket["accuracy"] for bucket in results["7"]["by_position"]] == [1.0, 0.0]
    assert results["7"]["chance"] == 1 / 7


def test_curriculum_lengths():
    config = RetrievalConfig(steps=100, short_phase=0.3, short_phase_max_length=30, min_length=4)
    generator = torch.Generator().manual_seed(0)
    short = [training_length(step, config, generator) for step in range(30)]
    later = [training_length(step, config, generator) for step in range(30, 100) for _ in range(20)]
    assert 4 <= min(short) and max(short) <= 30
    assert 4 <= min(later) and max(later) <= 576 and max(later) > 400
    assert sum(length > 288 for length in later) > 0.2 * len(later)
    assert 0.2 < sum(length == 576 for length in later) / len(later) < 0.5  # a third of the long phase by default
    only_longest = RetrievalConfig(steps=10, short_phase=0.0, long_phase_mix=(0, 0, 1))
    assert {training_length(step, only_longest, generator) for step in range(10)} == {576}
    only_short = RetrievalConfig(steps=10, short_phase=1.0, short_phase_max_length=8)
    assert max(training_length(step, only_short, generator) for step in range(10)) <= 8
    with pytest.raises(ValueError, match="long_phase_mix"):
        RetrievalConfig(long_phase_mix=(1, -1, 0))


def test_mamba_trains_with_the_fast_scan(monkeypatch):
    calls = []
    fast = vlmamba.models.mamba_kernels.mamba_inner

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return fast(*args, **kwargs)

    # Training runs the fused mixer (convolution, projections and chunked scan) once per layer per step.
    monkeypatch.setattr(vlmamba.models.mamba_kernels, "mamba_inner", counting)
    config = RetrievalConfig(**TINY)
    model = build_model("mamba", config)
    record = train(model, config)
    assert record["steps"] == 2 and record["tokens"] > 0
    # One call per layer per step, over the whole sequence (not a token-by-token loop).
    assert len(calls) == 2 * config.depth
    assert all(shape[-1] > 4 for shape in calls)


def test_training_learns_and_is_seeded():
    torch.manual_seed(123)
    config = RetrievalConfig(**{**TINY, "steps": 30, "lengths": (4,), "log_every": 10, "learning_rate": 3e-3})
    first = train(build_model("pythia", config), config)
    second = train(build_model("pythia", config), config)
    assert [entry["loss"] for entry in first["log"]] == [entry["loss"] for entry in second["log"]]
    assert first["log"][-1]["loss"] < first["log"][0]["loss"]


def test_answer_logits_shape():
    config = RetrievalConfig(**TINY)
    batch = make_batch(config, 8, 3, torch.Generator().manual_seed(0), num_queries=4)
    for family in ("pythia", "mamba"):
        assert answer_logits(build_model(family, config), batch).shape == (3, 4, config.vocab_size)


def test_run_retrieval_writes_json_and_plot(tmp_path):
    results = run_retrieval(tmp_path, RetrievalConfig(**TINY), layouts=("query_last", "query_first"), eval_samples=4)
    saved = json.loads((tmp_path / "retrieval.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["runs"]) == {"pythia/query_last", "mamba/query_last", "pythia/query_first", "mamba/query_first"}
    for run in saved["runs"].values():
        assert set(run["results"]) == {"4", "8"}
        assert run["results"]["8"]["samples"] == 4
        assert run["training"]["steps"] == 2
    assert saved["parameters"]["pythia"] > 0 and saved["config"]["lengths"] == [4, 8]
    assert (tmp_path / "retrieval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_end_to_end(tmp_path, capsys):
    code = main(
        ["retrieval", "--output-dir", str(tmp_path), "--steps", "2", "--width", "16", "--depth", "1",
         "--lengths", "3,6", "--eval-samples", "4", "--workers", "1", "--log-every", "1"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "[Mamba, query_last] step 2/2" in out
    table = out[out.index("    N") :].splitlines()
    assert table[0].split() == ["N", "Pythia", "Mamba", "chance"]
    assert [line.split()[0] for line in table[1:3]] == ["3", "6"]
    assert float(table[1].split()[-1]) == pytest.approx(100 / 3, abs=0.05)
    assert json.loads((tmp_path / "retrieval.json").read_text())["config"]["depth"] == 1
    assert (tmp_path / "retrieval.png").exists()
    with pytest.raises(SystemExit, match="--lengths"):
        main(["retrieval", "--output-dir", str(tmp_path), "--lengths", "20,fifty"])
