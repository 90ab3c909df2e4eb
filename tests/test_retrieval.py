# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The in-context retrieval experiment: data, model sizes, metric, curriculum, the Mamba scan path and the CLI."""

import json
from dataclasses import replace

import pytest
import torch

import vlmamba.experiments.retrieval as retrieval
import vlmamba.models.mamba_kernels
from vlmamba.cli import main
from vlmamba.experiments.retrieval import (
    FIRST_POSITION_ID,
    HELDOUT_SEED_OFFSET,
    QUERY_ID,
    Plateau,
    RetrievalConfig,
    answer_logits,
    build_model,
    choose_learning_rate,
    count_parameters,
    estimate_sweep_seconds,
    evaluate,
    make_batch,
    run_retrieval,
    run_sweep,
    score_predictions,
    train,
    training_length,
)


# One rate and no held-out evaluation: a fixed budget, as the tests of data, models and scan paths want.
TINY = dict(
    lengths=(4, 8), num_symbols=16, width=16, depth=1, state_size=4, steps=2, tokens_per_batch=64, workers=1,
    learning_rates=(1e-3,), eval_every=0,
)  # fmt: skip


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
    config = RetrievalConfig(short_phase_max_length=30, min_length=4)
    generator = torch.Generator().manual_seed(0)
    short = [training_length("short", config, generator) for _ in range(30)]
    later = [training_length("long", config, generator) for _ in range(1400)]
    assert 4 <= min(short) and max(short) <= 30
    assert 4 <= min(later) and max(later) <= 576 and max(later) > 400
    assert sum(length > 288 for length in later) > 0.2 * len(later)
    assert 0.2 < sum(length == 576 for length in later) / len(later) < 0.5  # a third of the long phase by default
    only_longest = RetrievalConfig(long_phase_mix=(0, 0, 1))
    assert {training_length("long", only_longest, generator) for _ in range(10)} == {576}
    with pytest.raises(ValueError, match="long_phase_mix"):
        RetrievalConfig(long_phase_mix=(1, -1, 0))


def test_fixed_budget_phases_follow_the_step_fraction(monkeypatch):
    lengths = []
    real = retrieval.training_length
    monkeypatch.setattr(retrieval, "training_length", lambda phase, *args: lengths.append(phase) or real(phase, *args))
    config = RetrievalConfig(**{**TINY, "steps": 10, "short_phase": 0.3})
    record = train(build_model("pythia", config), config)
    assert lengths == ["short"] * 3 + ["long"] * 7
    assert record["steps"] == 10 and record["long_phase_from"] == 3 and record["curve"] == []
    assert record["heldout_accuracy"] is None and record["stop_reason"] == "step cap"


def test_plateau_stops_after_patience_evaluations_without_a_new_best():
    plateau = Plateau(patience=2)
    # 0.3 is the best after the second value; 0.3 again is no improvement (strictly higher is needed).
    assert [plateau.update(value) for value in (0.1, 0.3, 0.2, 0.3)] == [None, None, None, "plateau"]
    plateau = Plateau(patience=2)
    assert [plateau.update(value) for value in (0.1, 0.2, 0.1, 0.4, 0.3, 0.35)] == [None] * 5 + ["plateau"]
    assert Plateau(patience=5).update(1.0) == "perfect"


class ScriptedHeldout:
    """Stands for `heldout_accuracy`: returns the next scripted (short lengths, other lengths) accuracies and keeps
    a copy of the model's weights at every call."""

    def __init__(self, script):
        self.script, self.calls, self.states = list(script), [], []

    def __call__(self, model, config, layout="query_last"):
        short, other = self.script[len(self.calls)]
        self.calls.append(len(self.calls))
        self.states.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        watched = retrieval.short_lengths(config)
        return {length: short if length in watched else other for length in config.lengths}


def test_training_stops_exactly_when_the_heldout_accuracy_stops_improving(monkeypatch):
    # lengths 4 and 80: the short phase (up to 64) watches N = 4 only, the long phase the mean of both.
    config = RetrievalConfig(
        **{**TINY, "lengths": (4, 80), "num_symbols": 96, "steps": 40, "short_phase": 0.5, "eval_every": 2},
        patience=2,
    )
    script = [
        (0.2, 0.0), (0.5, 0.0), (0.4, 0.1), (0.5, 0.1),  # short phase: best 0.5 at step 4, ends after step 8
        (0.6, 0.2), (0.6, 0.5), (0.6, 0.3), (0.7, 0.3),  # long phase: best mean 0.55 at step 12, ends after step 16
        (0.9, 0.9),  # never reached
    ]  # fmt: skip
    scripted = ScriptedHeldout(script)
    monkeypatch.setattr(retrieval, "heldout_accuracy", scripted)
    model = build_model("mamba", config)
    record = train(model, config)
    assert len(scripted.calls) == 8 and record["steps"] == 16
    assert record["short_phase_end"] == "plateau" and record["long_phase_from"] == 8
    assert record["stop_reason"] == "plateau"
    assert [entry["step"] for entry in record["curve"]] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [entry["phase"] for entry in record["curve"]] == ["short"] * 4 + ["long"] * 4
    assert record["best_step"] == 12 and record["heldout_accuracy"] == pytest.approx(0.55)
    # The model ends with the weights it had at its best evaluation (the sixth call), not its last ones.
    final = model.state_dict()
    assert all(torch.equal(final[name], scripted.states[5][name]) for name in final)
    assert not all(torch.equal(final[name], scripted.states[7][name]) for name in final)

    # A perfect held-out score ends a phase at once; without a plateau the step cap ends training.
    scripted = ScriptedHeldout([(1.0, 0.0), (0.1, 0.2), (0.1, 0.3), (0.1, 0.4), (0.1, 0.5)])
    monkeypatch.setattr(retrieval, "heldout_accuracy", scripted)
    record = train(build_model("pythia", config), replace(config, steps=10))
    assert record["long_phase_from"] == 2 and record["short_phase_end"] == "perfect"
    assert record["steps"] == 10 and record["stop_reason"] == "step cap" and record["best_step"] == 2
    # The short phase also ends at its share of the step cap.
    scripted = ScriptedHeldout([(0.1 * k, 0.0) for k in range(1, 6)])
    monkeypatch.setattr(retrieval, "heldout_accuracy", scripted)
    record = train(build_model("pythia", config), replace(config, steps=10, short_phase=0.4))
    assert record["long_phase_from"] == 4 and record["short_phase_end"] == "step cap"


def test_the_chosen_rate_is_the_best_heldout_one_stubbed(monkeypatch, tmp_path):
    # Held-out accuracy scripted per family and rate; 1e-3 is best for Pythia, 3e-3 for Mamba.
    scores = {
        "GPTNeoXForCausalLM": {3e-4: 0.2, 1e-3: 0.9, 3e-3: 0.4},
        "MambaForCausalLM": {3e-4: 0.1, 1e-3: 0.3, 3e-3: 0.35},
    }

    def stub(model, config, layout="query_last"):
        return {length: scores[type(model).__name__][config.learning_rate] for length in config.lengths}

    monkeypatch.setattr(retrieval, "heldout_accuracy", stub)
    config = RetrievalConfig(**{**TINY, "learning_rates": (3e-4, 1e-3, 3e-3), "eval_every": 1, "steps": 2})
    results = run_retrieval(tmp_path, config, eval_samples=4)
    assert results["runs"]["pythia/query_last"]["learning_rate"] == 1e-3
    assert results["runs"]["mamba/query_last"]["learning_rate"] == 3e-3
    for run in results["runs"].values():
        assert set(run["by_rate"]) == {"0.0003", "0.001", "0.003"}
        chosen = run["by_rate"][f"{run['learning_rate']:g}"]
        assert run["training"] == chosen["training"] and run["results"] == chosen["results"]
        assert all(len(other["training"]["curve"]) == 2 for other in run["by_rate"].values())
    assert choose_learning_rate({3e-4: 0.5, 1e-3: 0.5, 3e-3: None}) == 3e-4  # ties: the first rate of the grid
    with pytest.raises(ValueError, match="eval_every must be positive"):
        RetrievalConfig(learning_rates=(1e-3, 3e-3), eval_every=0)


def test_the_chosen_rate_is_the_best_heldout_one_recomputed(tmp_path):
    config = RetrievalConfig(
        **{**TINY, "learning_rates": (1e-4, 3e-3), "eval_every": 4, "steps": 12, "lengths": (4,)},
        heldout_samples=16, families=("pythia",), short_phase=0.0,
    )  # fmt: skip
    results = run_retrieval(tmp_path, config)
    run = results["runs"]["pythia/query_last"]
    recomputed = {}
    for rate in config.learning_rates:
        # An independent retraining at each rate, and its held-out accuracy measured directly with `evaluate`.
        rate_config = replace(config, learning_rate=rate)
        model = build_model("pythia", rate_config)
        record = train(model, rate_config)
        heldout = evaluate(model, rate_config, samples=16, seed_offset=HELDOUT_SEED_OFFSET)
        recomputed[rate] = heldout["4"]["accuracy"]
        assert recomputed[rate] == pytest.approx(run["by_rate"][f"{rate:g}"]["training"]["heldout_accuracy"])
        assert recomputed[rate] == max(entry["heldout_accuracy"] for entry in record["curve"])
    assert recomputed[3e-3] != recomputed[1e-4]
    assert run["learning_rate"] == max(recomputed, key=recomputed.get)


def test_sweep_writes_one_folder_per_size_a_summary_and_a_plot(tmp_path):
    config = RetrievalConfig(**TINY, eval_samples=4)
    estimate = estimate_sweep_seconds(tmp_path, config, (8,), (2, 4), probe_steps=1)
    assert set(estimate["per_size"]) == {"width8_state2", "width8_state4"}
    assert all(seconds > 0 for seconds in estimate["per_size"].values())
    sweep = run_sweep(tmp_path, config, widths=(8,), state_sizes=(2, 4))
    saved = json.loads((tmp_path / "retrieval_sweep.json").read_text())
    assert saved == json.loads(json.dumps(sweep))
    assert [(size["width"], size["state_size"]) for size in saved["sizes"]] == [(8, 2), (8, 4)]
    for size in saved["sizes"]:
        run = json.loads((tmp_path / size["folder"] / "retrieval.json").read_text())
        assert (run["config"]["width"], run["config"]["state_size"]) == (size["width"], size["state_size"])
        assert size["parameters"] == run["parameters"] and not size["reused"]
        # Pythia matched to Mamba at every size.
        assert abs(size["parameters"]["pythia"] - size["parameters"]["mamba"]) <= 0.1 * size["parameters"]["mamba"]
        assert set(size["runs"]["mamba/query_last"]["accuracy"]) == {"4", "8"}
        assert (tmp_path / size["folder"] / "retrieval.png").exists()
    # The state size changes Mamba, and Pythia with it.
    assert saved["sizes"][0]["parameters"]["mamba"] < saved["sizes"][1]["parameters"]["mamba"]
    assert saved["sizes"][0]["parameters"]["pythia"] < saved["sizes"][1]["parameters"]["pythia"]
    assert (tmp_path / "retrieval_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Run again, the sizes already measured are read back, not retrained, and cost nothing in the estimate.
    again = run_sweep(tmp_path, config, widths=(8,), state_sizes=(2,))
    assert all(size["reused"] for size in again["sizes"])
    assert again["sizes"][0]["runs"] == sweep["sizes"][0]["runs"]
    assert estimate_sweep_seconds(tmp_path, config, (8,), (2,))["seconds"] == 0
    # Printing and scheduling settings do not make a size stale; a setting that changes the numbers does.
    assert run_sweep(tmp_path, replace(config, log_every=5), widths=(8,), state_sizes=(2,))["sizes"][0]["reused"]
    assert not run_sweep(tmp_path, replace(config, seed=1), widths=(8,), state_sizes=(2,))["sizes"][0]["reused"]


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
         "--lengths", "3,6", "--eval-samples", "4", "--workers", "1", "--log-every", "1", "--learning-rates", "1e-3"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "[Mamba, query_last, lr 0.001] step 2/2" in out
    table = out[out.index("    N") :].splitlines()
    assert table[0].split() == ["N", "Pythia", "Mamba", "chance"]
    assert [line.split()[0] for line in table[1:3]] == ["3", "6"]
    assert float(table[1].split()[-1]) == pytest.approx(100 / 3, abs=0.05)
    assert json.loads((tmp_path / "retrieval.json").read_text())["config"]["depth"] == 1
    assert (tmp_path / "retrieval.png").exists()
    with pytest.raises(SystemExit, match="--lengths"):
        main(["retrieval", "--output-dir", str(tmp_path), "--lengths", "20,fifty"])
    with pytest.raises(SystemExit, match="--learning-rates"):
        main(["retrieval", "--output-dir", str(tmp_path), "--learning-rates", "1e-3,fast"])


def test_cli_sweep(tmp_path, capsys):
    code = main(
        ["retrieval", "--sweep", "--output-dir", str(tmp_path), "--steps", "2", "--depth", "1", "--lengths", "3,6",
         "--eval-samples", "4", "--workers", "1", "--log-every", "0", "--eval-every", "0", "--learning-rates",
         "1e-3", "--sweep-widths", "8,16", "--sweep-state-sizes", "2"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("Sweep over widths (8, 16) and Mamba state sizes (2,): about")
    assert "width16_state2" in out.splitlines()[0]
    table = out[out.index("width state") :].splitlines()
    assert [line.split()[:3] for line in table[1:5]] == [
        ["8", "2", "Pythia"], ["8", "2", "Mamba"], ["16", "2", "Pythia"], ["16", "2", "Mamba"]
    ]  # fmt: skip
    saved = json.loads((tmp_path / "retrieval_sweep.json").read_text())
    assert saved["config"]["learning_rates"] == [1e-3] and len(saved["sizes"]) == 2
    assert (tmp_path / "width16_state2" / "retrieval.json").exists()


def test_the_other_ssm_backbones_run_the_experiment(tmp_path):
    from vlmamba.experiments.retrieval import BACKBONE_FAMILIES, build_model, count_parameters

    config = RetrievalConfig(**{**TINY, "families": ("mamba", *BACKBONE_FAMILIES)})
    results = run_retrieval(tmp_path, config)
    assert set(results["parameters"]) == {"mamba", *BACKBONE_FAMILIES}
    for family in BACKBONE_FAMILIES:
        run = results["runs"][f"{family}/query_last"]
        assert set(run["results"]) == {str(length) for length in config.lengths}
        assert build_model(family, config).config.model_type == family
    # FalconMamba is Mamba's layer plus three norm weights of the state size: the same size up to those.
    mamba, falcon = (count_parameters(build_model(family, config)) for family in ("mamba", "falcon_mamba"))
    assert 0 <= falcon - mamba <= 3 * config.depth * max(config.state_size, config.width)
