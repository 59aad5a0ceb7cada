"""The two-tower benchmark: its task needs both modalities, its missing-modality splits
are what they say, its tables come from its JSON, and one short run trains."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import towers  # noqa: E402


def test_each_modality_alone_caps_at_a_third():
    """y = 3a + b: the image fixes a, the bag fixes b; the best one-modality guess is right
    for 1/3 of the samples (each class of the other modality equally likely)."""
    task = towers.make_task(0, n_train=3000, n_test=10)
    y = task.train.labels
    a, b = y // 3, y % 3
    for known in (a, b):
        # the best guess of y from one modality: the most frequent label given it
        best = sum(np.bincount(y[known == k]).max() for k in range(3)) / len(y)
        assert best < 1 / 3 + 0.03, best  # 3000 samples: +-0.03 is 3 standard errors
    # the image pattern and the class tokens carry a and b
    rows = task.train.images.mean(axis=2)  # (N, 16): a horizontal bar lifts one row mean
    assert rows[a == 0].max(axis=1).mean() > rows[a == 1].max(axis=1).mean() + 0.5
    tokens = task.train.tokens
    signal = np.where(tokens < 30, tokens // 10, -1)
    assert all(np.all((signal[i] == b[i]) | (signal[i] == -1)) for i in range(100))
    assert np.all((signal >= 0).sum(axis=1) == 3)


def test_missing_splits():
    task = towers.make_task(1, n_train=4000, n_test=20, missing=True)
    present = task.train.present
    assert not np.any(~present.any(axis=1)), "a sample kept neither modality"
    lost = ~present.all(axis=1)
    assert abs(lost.mean() - towers.FRACTION_MISSING) < 0.03
    assert np.all(task.train.images[~present[:, 0]] == 0)
    assert np.all(task.train.tokens[~present[:, 1]] == towers.PAD)
    one = towers.one_modality(task.test)
    assert np.all(one.present.sum(axis=1) == 1)
    np.testing.assert_array_equal(one.labels, task.test.labels)
    assert task.test.present.all()  # the test split stays complete


def test_epochs_to():
    assert towers.epochs_to([0.1, 0.5, 0.85, 0.9, 0.95]) == 4  # 0.85 < 0.9 * 0.95 <= 0.9
    assert towers.epochs_to([0.9]) == 1


def _result(fw, rule, seed, scenario, acc, one=None):
    r = {"framework": fw, "rule": rule, "seed": seed, "scenario": scenario, "accuracy": acc,
         "epochs_to_90": 2, "train_seconds": 1.0,
         "history": {"accuracy": [acc / 2, acc], "routes": [None, None]}}
    if one is not None:
        r["accuracy_one"] = one
        r["history"]["accuracy_one"] = [one, one]
    return r


def _flat(fw, rule, seed, scenario, acc, one=0.3):
    """``_result`` whose last POOL_EPOCHS evaluations all read ``acc`` (and ``one``)."""
    r = _result(fw, rule, seed, scenario, acc, one)
    r["history"]["accuracy"] = [acc] * towers.POOL_EPOCHS
    r["history"]["accuracy_one"] = [one] * towers.POOL_EPOCHS
    return r


def _missing_report(rules, frameworks, seeds, results) -> dict:
    """A report of the two missing-modality scenarios."""
    return {"config": {"rules": list(rules), "frameworks": list(frameworks), "seeds": list(seeds),
                       "scenarios": ["missing_mask", "missing_no_mask"],
                       "epochs": towers.POOL_EPOCHS},
            "results": results}


def test_tables_come_from_the_results():
    report = {
        "config": {"rules": ["gated"], "frameworks": ["torch"], "seeds": [0, 1],
                   "scenarios": ["complete", "missing_mask", "missing_no_mask"], "epochs": 2},
        "results": [
            _result("torch", "baseline", 0, "complete", 0.8),
            _result("torch", "baseline", 1, "complete", 0.9),
            _result("torch", "gated", 0, "complete", 0.4),
            _result("torch", "gated", 1, "complete", 0.9),
            _result("torch", "gated", 0, "missing_mask", 0.7, 0.3),
            _result("torch", "gated", 0, "missing_no_mask", 0.6, 0.2),
        ],
    }
    assert towers.ratios(report)[("gated", "torch")] == {0: 0.5, 1: 1.0}
    table = towers.markdown_complete(report)
    assert "| `gated` | torch | 0.40 0.90 | 0.75 | 0.50 | 2 |  |" in table
    missing = towers.markdown_missing(report)
    assert "| `gated` | torch, 1 / 1 | 0.700 / 0.600 | 0.300 / 0.200 | +0.100<br>+0.100 |" in missing
    assert "twice its standard error): none." in missing  # one seed: no noise estimate


def test_the_missing_table_pairs_seeds_and_flags_a_cost_beyond_the_noise():
    """The difference is paired by seed: mean and twice the standard error of the
    per-seed differences; a row whose mean lies below 0 by more than that is named."""
    results = []
    for seed, (m, p, m1, p1) in enumerate([(0.80, 0.90, 0.30, 0.30), (0.70, 0.78, 0.32, 0.30),
                                           (0.90, 0.99, 0.31, 0.32)]):
        results.append(_result("torch", "gated", seed, "missing_mask", m, m1))
        results.append(_result("torch", "gated", seed, "missing_no_mask", p, p1))
    results.append(_result("torch", "gated", 3, "missing_mask", 0.5, 0.2))  # unpaired: left out
    report = {"config": {"rules": ["gated"], "frameworks": ["torch"], "seeds": [0, 1, 2, 3],
                         "scenarios": ["missing_mask", "missing_no_mask"], "epochs": 2},
              "results": results}
    table = towers.markdown_missing(report)
    cells = []
    for d in (np.array([0.80 - 0.90, 0.70 - 0.78, 0.90 - 0.99]), np.array([0.0, 0.02, -0.01])):
        cells.append(f"{d.mean():+.3f} ± {2 * d.std(ddof=1) / np.sqrt(3):.3f}")
    assert cells == ["-0.090 ± 0.012", "+0.003 ± 0.018"]
    assert "| `gated` | torch, 4 / 3 |" in table
    assert f"| {'<br>'.join(cells)} |" in table
    assert "twice its standard error): `gated` torch (complete)." in table


def test_parse_rule():
    assert towers.parse_rule('shomr:input_norm="none";router_init_bias=null') == (
        "shomr", {"input_norm": "none", "router_init_bias": None})
    assert towers.parse_rule("gated") == ("gated", {})


@pytest.mark.parametrize("scenario", ["complete", "missing_mask"])
def test_a_short_torch_run_trains_and_records(scenario, monkeypatch):
    pytest.importorskip("torch")
    missing, mask = towers.SCENARIOS[scenario]
    task = towers.make_task(0, n_train=1024, n_test=300, missing=missing)
    run = towers.Run("shomr", {}, 0, epochs=2, missing=missing, mask=mask)
    r = towers.train_torch(run, task)
    h = r["history"]
    assert len(h["accuracy"]) == 2 and len(h["grad_image"]) == 2 and len(h["routes"]) == 2
    assert all(g > 0 for g in h["grad_image"] + h["grad_text"])
    assert abs(sum(h["routes"][-1]) - 1.0) < 1e-3  # shares of the test samples
    # 16 steps learn at least the text: far above chance (1/9; 300 test samples put it
    # within +-0.055 at 3 standard errors)
    assert r["accuracy"] > 1 / 9 + 0.1, r["accuracy"]
    if missing:
        assert 0.0 <= r["accuracy_one"] <= 1.0
        # a right label has the present modality's class right too
        assert all(p >= o for p, o in zip(h["accuracy_present"], h["accuracy_one"], strict=True))
    json.dumps(r)  # the report is JSON


def test_merge_keeps_every_run_and_refuses_other_settings():
    cfg = {"rules": ["gated"], "frameworks": ["torch"], "seeds": [0, 1],
           "scenarios": ["complete"], "epochs": 2, "dim": 32, "lr": 3e-3, "batch": 128,
           "fraction_missing": 0.3}
    a = {"config": cfg, "machine": "m", "results": [
        _result("torch", "baseline", 0, "complete", 0.8),
        _result("torch", "gated", 0, "complete", 0.4),
        _result("torch", "gated", 1, "complete", 0.5)]}
    b = {"config": {**cfg, "frameworks": ["keras-jax"], "seeds": [0],
                    "rules": ["gated", "film"]},
         "machine": "m", "results": [_result("keras-jax", "film", 0, "complete", 0.7)]}
    merged = towers.merge([a, b])
    assert merged["config"]["frameworks"] == ["torch", "keras-jax"]
    assert merged["config"]["rules"] == ["gated", "film"]
    assert len(merged["results"]) == 4
    assert towers.seeds_of(merged, "complete") == "torch 0, 1; keras-jax 0"
    assert "seeds torch 0, 1; keras-jax 0 " in towers.markdown_complete(merged)
    with pytest.raises(ValueError, match="epochs differs"):
        towers.merge([a, {**b, "config": {**b["config"], "epochs": 3}}])


def test_the_training_page_shows_the_committed_json():
    """docs/training.md's towers tables are what ``towers.py --docs`` writes from
    docs/assets/train_towers.json: no hand-edited figure."""
    report = json.loads((ROOT / "docs" / "assets" / "train_towers.json").read_text())
    page = (ROOT / "docs" / "training.md").read_text()
    for marker, table in towers.tables(report, ROOT / "docs"):
        begin, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
        shown = page.split(begin)[1].split(end)[0]
        assert shown == "\n" + table, f"rerun: python benchmarks/towers.py --merge ... --docs ({marker})"


def test_a_framework_without_missing_runs_is_said_not_measured():
    report = {
        "config": {"rules": ["gated"], "frameworks": ["torch", "keras-jax"], "seeds": [0],
                   "scenarios": ["complete", "missing_mask"], "epochs": 2},
        "results": [_result("torch", "gated", 0, "missing_mask", 0.7, 0.3),
                    _result("keras-jax", "gated", 0, "complete", 0.7)],
    }
    assert "Not measured in this scenario: keras-jax." in towers.markdown_missing(report)


def test_a_label_shows_its_fields_and_input_norm():
    assert towers._name('shomr:input_norm="none";router_init_bias=null') == (
        "`shomr:router_init_bias=None` (no input norm)")
    assert towers._name('shomr:input_norm="batch";router_init_bias=null') == (
        "`shomr:router_init_bias=None`")  # the default
    assert towers._name("film") == "`film`"


def test_the_energy_table_names_the_earlier_defaults_once():
    """Rows holding every field of ``earlier_defaults`` say "earlier defaults" plus their
    other changes; the energy column is the median-accuracy seed's last epoch."""
    earlier = {"energy_weight": 0.01, "straight_through_routes": "chosen"}
    old = 'energy_aware_adaptive:energy_weight=0.01;straight_through_routes="chosen"'
    rules = ["energy_aware_adaptive", old, old + ";energy_budget_mJ=10.0",
             "energy_aware_adaptive:energy_weight=0.0"]
    results = [_result("torch", "baseline", 0, "complete", 0.8)]
    for i, rule in enumerate(rules):
        r = _result("torch", rule, 0, "complete", 0.4 + 0.1 * i)
        r["history"]["energy"] = [9.0, 7.5 + i]
        results.append(r)
    report = {"config": {"rules": rules, "frameworks": ["torch"], "seeds": [0],
                         "scenarios": ["complete"], "epochs": 2,
                         "earlier_defaults": earlier},
              "results": results}
    table = towers.markdown_one_field(report)
    assert '"Earlier defaults": `energy_weight=0.01`, `straight_through_routes=chosen`' in table
    assert "(the budget: 8 mJ)" in table
    assert "| none (the defaults) | 0.40 | 0.50 | 0.50 |  | 7.50 |" in table
    assert "| earlier defaults | 0.50 | 0.62 | 0.62 |  | 8.50 |" in table
    assert "| earlier defaults; `energy_budget_mJ=10.0` | 0.60 |" in table
    assert "| `energy_weight=0.0` | 0.70 |" in table
    merged = towers.merge([report, {**report, "results": results[:1]}])
    assert merged["config"]["earlier_defaults"] == earlier


def test_shadow_statistics_evaluate_as_a_run_with_that_momentum():
    """Training never reads the running statistics, so one run evaluated with shadow
    statistics of momentum 0.1 gives what a run built with 0.1 gives: the momentum
    table's "same runs" row compares like for like."""
    pytest.importorskip("torch")
    task = towers.make_task(0, n_train=1024, n_test=300, missing=True)
    shadowed = towers.train_torch(
        towers.Run("gated", {}, 0, epochs=2, missing=True, shadow_momentum=0.1), task)
    direct = towers.train_torch(
        towers.Run("gated", {"input_norm_momentum": 0.1}, 0, epochs=2, missing=True), task)
    h, d = shadowed["history"], direct["history"]
    # the same batches and weights; the shadow's update differs from the layer's only in
    # float32 rounding (a few ulps of the statistics), far below one of 300 test samples
    assert h["accuracy_shadow"] == d["accuracy"]
    assert h["accuracy_one_shadow"] == d["accuracy_one"]
    assert h["grad_image"] == pytest.approx(d["grad_image"], rel=1e-5)
    assert shadowed["shadow_momentum"] == 0.1
    assert "accuracy_shadow" not in direct["history"]


def test_the_momentum_table_compares_the_updates():
    """The 0.1 row reads the shadow accuracies where the default runs carry them, else the
    earlier runs; ratios are to the baseline of the same framework and seed."""
    results = [_result("torch", "baseline", s, "complete", 0.8) for s in (0, 1)]
    for s, (acc, shadow) in enumerate([(0.8, 0.4), (0.72, 0.8)]):
        r = _result("torch", "gated", s, "complete", acc)
        r["history"]["accuracy_shadow"] = [shadow, shadow]
        r["accuracy_shadow"], r["shadow_momentum"] = shadow, 0.1
        results.append(r)
    results.append(_result("keras-jax", "baseline", 0, "complete", 0.5))
    results.append(_result("keras-jax", "gated", 0, "complete", 0.5))
    report = {"config": {"rules": ["gated"], "frameworks": ["torch", "keras-jax"],
                         "seeds": [0, 1], "scenarios": ["complete"], "epochs": 2},
              "results": results}
    old = {"config": report["config"],
           "results": [_result("keras-jax", "gated:input_norm_momentum=0.1", 0, "complete", 0.25)]}
    table = towers.markdown_momentum(report, old)
    assert "| 0.1 (same runs) | torch | 0, 1 | 0.000 | 0.75 | 0.50 (`gated`) |" in table
    assert "| 0.5 (default) | torch | 0, 1 | 0.380 | 0.95 | 0.90 (`gated`) |" in table
    assert "| 0.1 (earlier runs) | keras-jax | 0 | 0.125 | 0.50 | 0.50 (`gated`) |" in table
    assert "| baseline (no input norm) | torch | 0, 1 | 0.400 |  |  |" in table


def test_a_field_every_row_shares_is_said_once():
    rules = ["energy_aware_adaptive:input_norm_momentum=0.1",
             "energy_aware_adaptive:dropout=0.0;input_norm_momentum=0.1"]
    results = [_result("torch", "baseline", 0, "complete", 0.8)]
    results += [_result("torch", r, 0, "complete", 0.4) for r in rules]
    report = {"config": {"rules": rules, "frameworks": ["torch"], "seeds": [0],
                         "scenarios": ["complete"], "epochs": 2}, "results": results}
    table = towers.markdown_one_field(report)
    assert "Every row also ran with `input_norm_momentum=0.1`" in table
    assert "| none (the defaults) | 0.40 |" in table
    assert "| `dropout=0.0` | 0.40 |" in table
    assert towers.swing([0.5, 0.7, 0.6]) == pytest.approx(0.15)


def test_the_chance_of_naming_a_row_is_students_t():
    """Closed forms of Student's t below -2: one degree of freedom is Cauchy,
    1/2 - atan(2)/pi; two, (1 - 2/sqrt(6))/2."""
    assert towers._chance(2) == pytest.approx(0.5 - np.arctan(2) / np.pi, rel=1e-12)
    assert towers._chance(3) == pytest.approx((1 - 2 / np.sqrt(6)) / 2, rel=1e-12)


def test_named_rows_are_replicated_on_fresh_seeds_left_out_of_the_table():
    """A row named on the first seeds is judged again on REPLICATION_SEEDS alone; those
    seeds stay out of the table and out of the first verdict."""
    results = []
    first = [(0.80, 0.90), (0.70, 0.78), (0.90, 0.99)]  # named: -0.090 +- 0.012
    fresh = [(0.90, 0.88), (0.80, 0.83), (0.85, 0.84)]  # +0.000 +- 0.031
    for seed, (m, p) in zip((0, 1, 2, *towers.REPLICATION_SEEDS[:3]), first + fresh, strict=True):
        results.append(_result("torch", "gated", seed, "missing_mask", m, 0.3))
        results.append(_result("torch", "gated", seed, "missing_no_mask", p, 0.3))
    report = {"config": {"rules": ["gated"], "frameworks": ["torch"], "seeds": [0, 1, 2],
                         "scenarios": ["missing_mask", "missing_no_mask"], "epochs": 2},
              "results": results}
    table = towers.markdown_missing(report)
    assert "| `gated` | torch, 3 / 3 |" in table
    assert "twice its standard error): `gated` torch (complete)." in table
    # two differences of three seeds each; the one-modality one has no spread (0 +- 0)
    assert f"named by chance would be {2 * towers._chance(3):.1f}:" in table
    d = np.array([0.02, -0.03, 0.01])
    seeds = ", ".join(map(str, towers.REPLICATION_SEEDS[:3]))
    assert (f"`gated` torch (complete): {d.mean():+.3f} ± {2 * d.std(ddof=1) / np.sqrt(3):.3f} "
            f"on seeds {seeds}, within the noise.") in table
    # the same fresh seeds costing again are named again
    for r in results:
        if r["seed"] in towers.REPLICATION_SEEDS and r["scenario"] == "missing_mask":
            r["accuracy"] -= 0.2
    assert "named again." in towers.markdown_missing(report)
    # named without fresh seeds: said not re-run
    report["results"] = [r for r in results if r["seed"] not in towers.REPLICATION_SEEDS]
    assert "`gated` torch (complete): not re-run." in towers.markdown_missing(report)


def test_the_pooled_difference_takes_every_default_rules_paired_run_of_the_table():
    """Pooled per framework over the rules with their defaults (fields changed and
    replication seeds left out): the mean of all paired differences and twice its
    standard error."""
    results = []
    pairs = {"gated": [(0.80, 0.90), (0.70, 0.78)], "film": [(0.90, 0.85), (0.60, 0.61)],
             "film:missing_modality=\"identity\"": [(0.10, 0.90), (0.10, 0.90)]}
    for rule, runs in pairs.items():
        for seed, (m, p) in zip((0, towers.REPLICATION_SEEDS[0]), runs, strict=True):
            results.append(_result("torch", rule, seed, "missing_mask", m, 0.3))
            results.append(_result("torch", rule, seed, "missing_no_mask", p, 0.3))
    for seed, (m, p) in enumerate([(0.5, 0.6), (0.4, 0.5)], start=1):  # two more seeds of gated
        results.append(_result("torch", "gated", seed, "missing_mask", m, 0.3))
        results.append(_result("torch", "gated", seed, "missing_no_mask", p, 0.3))
    report = {"config": {"rules": list(pairs), "frameworks": ["torch"], "seeds": [0, 1, 2],
                         "scenarios": ["missing_mask", "missing_no_mask"], "epochs": 2},
              "results": results}
    d = np.array([0.80 - 0.90, 0.5 - 0.6, 0.4 - 0.5, 0.90 - 0.85])
    late = 0.75 * d  # each history is [accuracy / 2, accuracy]: the last epochs' mean
    assert towers.POOL_EPOCHS >= 2
    table = towers.markdown_missing(report)
    assert (f"torch complete {d.mean():+.4f} ± {2 * d.std(ddof=1) / 2:.4f} (3 of 4 below 0; "
            f"over the last {towers.POOL_EPOCHS} epochs {late.mean():+.4f} ± "
            f"{2 * late.std(ddof=1) / 2:.4f}), one modality +0.0000 ± 0.0000 (0 of 4 below 0; "
            f"over the last {towers.POOL_EPOCHS} epochs +0.0000 ± 0.0000).") in table


def test_the_keras_like_pytorch_trainer_takes_keras_initialisers_and_epsilon():
    """``torch-keras-like`` diagnoses the frameworks' runs: glorot-uniform kernels, zero
    biases, U(-0.05, 0.05) embeddings, and the PyTorch eps that makes Adam's update
    Keras's (epsilon before the bias correction)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Module()
    model.tower_v = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 8))
    model.tower_t = nn.EmbeddingBag(11, 8)
    model.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    towers.keras_setup(model)
    for m in (model.tower_v[0], model.tower_v[3], model.head[0], model.head[2]):
        assert torch.count_nonzero(m.bias) == 0
        fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
        limit = np.sqrt(6 / (fan_in + fan_out))  # glorot uniform
        top = float(m.weight.detach().abs().max())
        assert 0.5 * limit < top <= limit
    assert float(model.tower_t.weight.detach().abs().max()) <= 0.05
    for step in (1, 10, 1000):
        assert towers.keras_epsilon(step) == pytest.approx(1e-7 / np.sqrt(1 - 0.999**step),
                                                          rel=1e-12)


@pytest.mark.parametrize("part", towers.KERAS_INIT_PARTS)
def test_one_keras_initialiser_alone_leaves_the_others_pytorchs(part):
    """The ``torch-keras-{part}`` diagnoses: the named part takes Keras's initialiser,
    every other parameter keeps the value PyTorch's initialisation gave it."""
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        m = nn.Module()
        m.tower_v = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 8))
        m.tower_t = nn.EmbeddingBag(11, 8)
        m.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
        return m

    def limit(value):  # Keras's uniform limit: glorot for a kernel, 0.05 for embeddings
        if value.ndim == 2 and value.shape[0] == 11:
            return 0.05
        fan_in, fan_out = value[0].numel(), value.shape[0] * value[0, 0].numel()
        return np.sqrt(6 / (fan_in + fan_out))

    pytorch, alone = model(), model()
    towers.keras_setup(alone, (part,))
    owner = {"kernels": lambda n: n.endswith("weight") and not n.startswith("tower_t"),
             "biases": lambda n: n.endswith("bias"),
             "embeddings": lambda n: n.startswith("tower_t")}[part]
    before = dict(pytorch.named_parameters())
    with torch.no_grad():
        for name, value in alone.named_parameters():
            if not owner(name):
                assert torch.equal(value, before[name]), name
            elif part == "biases":
                assert torch.count_nonzero(value) == 0, name
            else:
                assert not torch.equal(value, before[name]), name
                assert 0.5 * limit(value) < float(value.abs().max()) <= limit(value), name
    with pytest.raises(ValueError, match="parts must be among"):
        towers.keras_setup(model(), ("kernel",))


def test_a_diagnosis_is_pooled_but_not_in_the_table():
    assert set(towers.DIAGNOSES) == set(towers.TRAINERS) - set(towers.FRAMEWORKS)
    results = []
    for fw in ("torch", "torch-keras-like"):
        for seed, (m, p) in enumerate([(0.80, 0.90), (0.70, 0.78)]):
            results.append(_result(fw, "gated", seed, "missing_mask", m, 0.3))
            results.append(_result(fw, "gated", seed, "missing_no_mask", p, 0.3))
    report = {"config": {"rules": ["gated"], "frameworks": ["torch", "torch-keras-like"],
                         "seeds": [0, 1], "scenarios": ["missing_mask", "missing_no_mask"],
                         "epochs": 2},
              "results": results}
    table = towers.markdown_missing(report)
    assert "| `gated` | torch, 2 / 2 |" in table
    assert "| `gated` | torch-keras-like" not in table
    assert "; torch-keras-like complete -0.0900" in table
    assert f"torch-keras-like: {towers.DIAGNOSES['torch-keras-like']} (a diagnosis" in table
    assert "twice its standard error): `gated` torch (complete)." in table  # not named twice


def test_per_rule_pooling_over_trainers_names_a_cost_each_trainer_hides():
    """A rule whose mask costs a little under every trainer, within one trainer's seed
    noise, is named once its paired runs are pooled over the trainers; a rule without
    a consistent cost is not; one trainer alone prints no per-rule line."""
    results = []
    rng = np.random.default_rng(0)
    for fw in ("torch", "keras-jax", "torch-keras-init"):
        for seed in range(3):
            for rule, cost in (("film", 0.01), ("gated", 0.0)):
                base = 0.9 + 0.02 * rng.standard_normal()
                wobble = [0.012, -0.012, 0.0][seed]  # seed noise of one trainer's row
                for sc, acc in (("missing_mask", base - cost + wobble), ("missing_no_mask", base)):
                    results.append(_flat(fw, rule, seed, sc, acc))
    d = np.array([-0.01 + w for w in (0.012, -0.012, 0.0)] * 3)
    report = _missing_report(["gated", "film"], ["torch", "keras-jax", "torch-keras-init"],
                             [0, 1, 2], results)
    table = towers.markdown_missing(report)
    assert "twice its standard error): none." in table  # the rows alone name nothing
    noise = 2 * d.std(ddof=1) / np.sqrt(len(d))
    assert (f"| `film` | {d.mean():+.4f} ± {noise:.4f} (6 of 9 runs, 3 of 3 trainers) | "
            "+0.0000 ± 0.0000 (0 of 9 runs, 0 of 3 trainers) |") in table
    assert "Below 0 beyond that noise: `film` (complete)." in table
    one = {**report, "config": {**report["config"], "frameworks": ["torch"]},
           "results": [r for r in results if r["framework"] == "torch"]}
    assert "Per rule, pooled" not in towers.markdown_missing(one)
    masked_only = {**report, "results": [r for r in results if r["scenario"] == "missing_mask"]}
    assert "Per rule, pooled" not in towers.markdown_missing(masked_only)  # nothing paired


def test_a_mask_only_field_pairs_with_the_rule_without_it():
    """``input_norm_absent`` acts only under the mask: a label that sets only it pairs its
    mask runs with the plain label's no-mask runs, in the table and in the per-rule
    pooling; a label with any other field does not borrow them."""
    mean, other = 'film:input_norm_absent="mean"', 'film:input_norm="none"'
    results = []
    for fw in ("torch", "keras-jax"):
        for seed in range(3):
            for label, sc, acc in (("film", "missing_no_mask", 0.90 + 0.01 * seed),
                                   ("film", "missing_mask", 0.90 + 0.01 * seed),
                                   (mean, "missing_mask", 0.88 + 0.01 * seed),
                                   (other, "missing_mask", 0.5)):
                results.append(_flat(fw, label, seed, sc, acc))
    report = _missing_report(["film", mean, other], ["torch", "keras-jax"], [0, 1, 2], results)
    table = towers.markdown_missing(report)
    assert "| `film:`<br>`input_norm_absent=mean` | torch, 3 / 3 | 0.890 / 0.910 |" in table
    assert "-0.020 ± 0.000" in table
    assert "| `film` (no input norm) | torch, 3 / 0 | 0.500 / - |" in table  # not borrowed
    assert "| `film:`<br>`input_norm_absent=mean` | -0.0200 ± 0.0000 (6 of 6 runs, 2 of 2 trainers)" in table
    assert "| `film` | +0.0000 ± 0.0000 (0 of 6 runs, 0 of 2 trainers)" in table
    assert towers._mask_only('film:missing_modality="identity"')
    assert not towers._mask_only(other) and not towers._mask_only("film")


def test_format_rule_is_parse_rule_s_inverse():
    for label in ("shomr", 'shomr:input_norm="none";straight_through=false',
                  'modality_dropout:missing_modality="drop"'):
        assert towers.format_rule(*towers.parse_rule(label)) == label


def test_an_earlier_default_has_its_per_rule_pooled_row():
    """A label kept from before a default changed (``EARLIER_DEFAULTS``) pairs its own runs
    (its field acts with and without the mask) and has a per-rule pooled row; another
    non-default label does not."""
    chosen = 'shomr:straight_through_routes="chosen"'
    other = 'shomr:straight_through=false'
    assert chosen in towers.EARLIER_DEFAULTS and not towers._mask_only(chosen)
    results = []
    for fw in ("torch", "keras-jax"):
        for seed in range(3):
            for label, sc, acc in (("shomr", "missing_no_mask", 0.92), ("shomr", "missing_mask", 0.93),
                                   (chosen, "missing_no_mask", 0.92), (chosen, "missing_mask", 0.85),
                                   (other, "missing_no_mask", 0.5), (other, "missing_mask", 0.4)):
                results.append(_flat(fw, label, seed, sc, acc + 0.001 * seed))
    report = _missing_report(["shomr", chosen, other], ["torch", "keras-jax"], [0, 1, 2], results)
    table = towers.markdown_missing(report)
    assert "| `shomr:`<br>`straight_through_routes=chosen` | -0.0700 ± 0.0000 (6 of 6 runs, 2 of 2 trainers)" in table
    assert "| `shomr` | +0.0100 ± 0.0000 (0 of 6 runs, 0 of 2 trainers)" in table
    assert "| `shomr:`<br>`straight_through=false` | -0.1000" not in table


def test_a_named_per_rule_row_is_judged_again_on_fresh_seeds():
    """A per-rule row named below zero on the first seeds is pooled again over the
    REPLICATION_SEEDS runs of the trainers that ran them; a row without them says so."""
    results = []
    fresh = towers.REPLICATION_SEEDS[:3]
    for fw in ("torch", "keras-jax"):
        for seed in (0, 1, 2, *fresh):
            for label in ("film", "gated"):
                if label == "gated" and seed in fresh:
                    continue  # named, not re-run
                for sc, acc in (("missing_no_mask", 0.92), ("missing_mask", 0.90)):
                    # on the fresh seeds film's mask costs nothing (its differences spread around 0)
                    if seed in fresh and sc == "missing_mask":
                        acc = 0.92 + 0.002 * (seed - fresh[1])
                    results.append(_flat(fw, label, seed, sc, acc + 0.001 * seed))
    report = _missing_report(["film", "gated"], ["torch", "keras-jax"], [0, 1, 2, *fresh], results)
    table = towers.markdown_missing(report)
    assert "Below 0 beyond that noise: `film` (complete), `gated` (complete)." in table
    d = np.array([-0.002, 0.0, 0.002] * 2)  # mask minus no mask, per fresh seed and trainer
    noise = 2 * d.std(ddof=1) / np.sqrt(len(d))
    assert (f"`film` (complete): +0.0000 ± {noise:.4f} (2 of 6 runs below 0; torch, keras-jax; "
            f"seeds {', '.join(map(str, fresh))}), within the noise") in table
    assert "`gated` (complete): not re-run" in table


def test_the_complete_table_names_an_earlier_default_short():
    """The seven-column table shows an earlier default as its kind and "(earlier default)",
    its legend naming the fields; the other tables keep the full label."""
    chosen = 'shomr:straight_through_routes="chosen"'
    results = [_result("torch", label, seed, "complete", 0.9, None)
               for label in (towers.BASELINE, "shomr", chosen) for seed in range(2)]
    report = {"config": {"rules": ["shomr", chosen], "frameworks": ["torch"], "seeds": [0, 1],
                         "scenarios": ["complete"], "epochs": 3},
              "results": results}
    table = towers.markdown_complete(report)
    assert "| `shomr` (earlier default) | torch |" in table
    assert ('"(earlier default)": the runs made before a default changed, '
            "`shomr:straight_through_routes=chosen`.") in table
    assert "| `shomr` | torch |" in table


def test_a_row_on_extended_seeds_is_judged_on_every_seed_it_ran_and_kept_out_of_the_rest():
    """EXTENDED_SEEDS: out of the table and its verdicts, in a table of their own that
    pools every seed of the row; the present class and the test loss count only the runs
    that recorded them."""
    results = []
    seeds = (0, 1, towers.REPLICATION_SEEDS[0], *towers.EXTENDED_SEEDS[:2])
    mask_acc = (0.90, 0.80, 0.85, 0.70, 0.72)  # the extended seeds cost 0.2 each
    for seed, m in zip(seeds, mask_acc, strict=True):
        p = m + (0.2 if seed in towers.EXTENDED_SEEDS else 0.0)
        results.append(_flat("torch", "gated", seed, "missing_mask", m, 0.3))
        results.append(_flat("torch", "gated", seed, "missing_no_mask", p, 0.3))
    for r in results[-4:]:  # the extended runs record the test loss (higher with the mask)
        masked = r["scenario"] == "missing_mask"  # and the present class (lower with it)
        r["history"]["loss"] = [0.5 if masked else 0.2] * towers.POOL_EPOCHS
        r["history"]["accuracy_present"] = [0.90 if masked else 0.95] * towers.POOL_EPOCHS
    table = towers.markdown_missing(_missing_report(["gated"], ["torch"], [0, 1], results))
    assert "| `gated` | torch, 2 / 2 |" in table  # the first seeds only
    assert "below 0 by more than twice its standard error): none." in table
    d = np.array([0.0, 0.0, 0.0, -0.2, -0.2])
    seeds_text = ", ".join(map(str, seeds))
    assert (f"| `gated` | torch, seeds {seeds_text} | {d.mean():+.4f} ± "
            f"{2 * d.std(ddof=1) / np.sqrt(5):.4f} (2 of 5) | +0.0000 ± 0.0000 (0 of 5) | "
            "-0.0500 ± 0.0000 (2 of 2) | +0.3000 ± 0.0000 (2 of 2) |") in table
    assert towers.markdown_extended(_missing_report(["gated"], ["torch"], [0, 1], results[:6])) is None
    assert towers._seed_span(range(10, 20)) == "seeds 10-19"


def test_the_keras_trainer_s_test_loss_is_pytorch_s_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, (50, towers.CLASSES)).astype(np.float32)  # large: overflow-safe
    labels = rng.integers(0, towers.CLASSES, 50)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits).double(),
                                                 torch.from_numpy(labels))
    np.testing.assert_allclose(towers.cross_entropy(logits, labels), float(expected), rtol=1e-12)


def test_the_gradient_ratio_is_the_geometric_mean_of_each_pair_s_window_means():
    def runs(norms):
        return {seed: {"history": {"grad_image": n}} for seed, n in enumerate(norms)}

    mask = runs([[2.0, 4.0, 9.0], [1.0, 1.0, 9.0]])
    plain = runs([[1.0, 2.0, 0.0], [4.0, 4.0, 0.0]])
    # window epochs 1-2: ratios 3 / 1.5 = 2 and 1 / 4, geometric mean 1/sqrt(2)
    assert towers._gradient_ratio(mask, plain, "grad_image", (0, 2)) == pytest.approx(2 ** -0.5)
    assert towers._gradient_ratio(mask, plain, "grad_image", (0, 4)) is None  # too few epochs
    assert towers._gradient_ratio(mask, plain, "grad_text", (0, 2)) is None  # not recorded
    mask[1]["history"]["grad_image"][0] = None  # Keras off JAX records None
    assert towers._gradient_ratio(mask, plain, "grad_image", (0, 2)) is None


def test_the_extended_table_shows_the_gradient_ratios_where_runs_recorded_them():
    results = []
    for seed in (0, towers.EXTENDED_SEEDS[0]):
        for scenario, g in (("missing_mask", 3.0), ("missing_no_mask", 1.5)):
            r = _flat("torch", "gated", seed, scenario, 0.9)
            epochs = towers.GRADIENT_EPOCHS[-1][1]
            r["history"]["grad_image"] = [g] * epochs
            r["history"]["grad_text"] = [1.0] * epochs
            results.append(r)
    table = towers.markdown_extended(_missing_report(["gated"], ["torch"], [0], results))
    assert "| `gated` | torch | ×2.00 | ×2.00 | ×1.00 | ×1.00 |" in table


def test_present_accuracy_judges_only_the_present_modality_s_class():
    labels = np.array([3 * 2 + 1, 3 * 0 + 2, 3 * 1 + 0, 3 * 2 + 2])  # y = 3 a + b
    present = np.array([[True, False], [False, True], [True, False], [False, True]])
    split = towers.Split(np.zeros((4, 1, 1), np.float32), np.zeros((4, 1), np.int64), labels,
                         present)
    # row 0: a right (2), b wrong; row 1: b right (2), a wrong; row 2: a wrong; row 3: b wrong
    pred = np.array([3 * 2 + 0, 3 * 1 + 2, 3 * 0 + 0, 3 * 2 + 1])
    assert towers.present_accuracy(pred, split) == 0.5
    assert towers.present_accuracy(labels, split) == 1.0


def test_a_report_is_written_one_run_per_line_and_reads_back_the_same():
    results = [_flat("torch", "gated", seed, "missing_mask", 0.9) for seed in (0, 1)]
    report = {**_missing_report(["gated"], ["torch"], [0, 1], results), "machine": "m"}
    text = towers.dumps(report)
    assert json.loads(text) == report
    assert sum(line.startswith('  {"framework"') for line in text.splitlines()) == 2
    assert towers.dumps({**report, "results": []}).endswith('"results": [\n\n ]\n}\n')


def test_a_table_cell_puts_the_kind_and_each_field_on_a_line_of_its_own():
    """A cell breaks the label after the kind and each field (the tables must fit the
    page), the prose keeps it on one line; input_norm="none" is a suffix either way."""
    label = 'cross_attention:lone_gradient="pass";missing_modality="zero_fill"'
    assert towers._name(label, cell=True) == (
        "`cross_attention:`<br>`lone_gradient=pass;`<br>`missing_modality=zero_fill`")
    assert towers._name("cross_attention", cell=True) == "`cross_attention`"
    assert towers._name(label) == "`cross_attention:lone_gradient=pass;missing_modality=zero_fill`"
    one = 'shomr:input_norm="none";straight_through_routes="chosen"'
    assert towers._name(one, cell=True) == (
        "`shomr:`<br>`straight_through_routes=chosen` (no input norm)")


def test_today_s_default_is_judged_against_its_earlier_one_on_the_same_seeds():
    """An earlier default with runs on EXTENDED_SEEDS: its kind's mask runs minus its
    own, paired by seed (the no-mask runs play no part); a trainer without the kind's
    runs has no row."""
    earlier = 'cross_attention:lone_gradient="pass"'
    results = []
    seeds = (0, 1, *towers.EXTENDED_SEEDS[:2])
    for seed in seeds:
        results.append(_flat("torch", "cross_attention", seed, "missing_mask", 0.92, 0.3))
        results.append(_flat("torch", earlier, seed, "missing_mask", 0.90 - 0.01 * (seed % 2), 0.3))
        results.append(_flat("torch", "cross_attention", seed, "missing_no_mask", 0.5, 0.3))
        results.append(_flat("keras-jax", earlier, seed, "missing_mask", 0.9, 0.3))
        results.append(_flat("keras-jax", "cross_attention", seed, "missing_no_mask", 0.5, 0.3))
    report = _missing_report(["cross_attention", earlier], ["torch", "keras-jax"], [0, 1], results)
    table = towers.markdown_extended(report)
    d = np.array([0.92 - (0.90 - 0.01 * (s % 2)) for s in seeds])
    assert (f"| `cross_attention:`<br>`lone_gradient=pass` | torch, seeds 0, 1, 10, 11 | "
            f"{d.mean():+.4f} ± {2 * d.std(ddof=1) / 2:.4f} (0 of 4) |") in table
    assert "`lone_gradient=pass` | keras-jax, seeds 0, 1, 10, 11 | +0.0200" not in table
    assert table.count("`lone_gradient=pass` | keras-jax") == 1  # the mask-minus-no-mask row only
