"""The training benchmark: its task needs both modalities, and its fast mode trains every
rule it runs, in PyTorch and Keras (JAX), clearly above single-modality chance."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import train_bench  # noqa: E402

#: "Clearly": a 2000-sample test set puts chance within +-0.03 (3 standard errors).
CLEARLY_ABOVE_CHANCE = train_bench.CHANCE + 0.2


def _nearest_centroid_accuracy(x, target, test_x, test_target):
    centroids = np.stack([x[target == k].mean(0) for k in range(train_bench.CLASSES)])
    pred = np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((pred == test_target).mean())


def test_one_modality_alone_is_at_chance():
    """The label is independent of either modality alone: from x_v the label is at chance,
    while a = (y - b) mod 3 itself is readable from x_v."""
    task = train_bench.make_task(0)
    for x, test_x in ((task.x_v, task.test_x_v), (task.x_t, task.test_x_t)):
        acc = _nearest_centroid_accuracy(x, task.y, test_x, task.test_y)
        assert abs(acc - train_bench.CHANCE) < 0.04, acc
    # a itself: the nearest of the generator's centroids (same seed, drawn first)
    rng = np.random.default_rng(0)
    centroids_v = rng.normal(size=(train_bench.CLASSES, task.x_v.shape[1]))
    a_train = np.argmin(((task.x_v[:, None] - centroids_v[None]) ** 2).sum(-1), axis=1)
    acc_a = _nearest_centroid_accuracy(task.x_v, a_train, task.test_x_v, np.argmin(
        ((task.test_x_v[:, None] - centroids_v[None]) ** 2).sum(-1), axis=1))
    assert acc_a > 0.9


def test_rule_fields_and_scenarios():
    assert train_bench.rule_fields("shomr:straight_through=false,heads=4") == (
        "shomr", {"straight_through": False, "heads": 4})
    assert train_bench.rule_fields("gated") == ("gated", {})
    task = train_bench.make_task(1, n_train=30, n_test=20)
    assert train_bench.SCENARIOS["full"](task, np.random.default_rng(0)) is task


def test_markdown_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (requirements/ci.txt)")
    results = [
        {"framework": fw, "rule": rule, "seed": seed, "accuracy": acc}
        for fw in ("torch",)
        for seed in (0, 1)
        for rule, acc in (("baseline", 0.8), ("gated", 0.76 + 0.02 * seed))
    ]
    report = {"config": {"steps": 5, "seeds": [0, 1], "scenario": "full", "rules": ["gated"],
                         "frameworks": ["torch"]}, "chance": 1 / 3, "results": results}
    table = train_bench.markdown(report)
    assert "| `gated` | torch | 0.760, 0.780 | 0.770 | 0.95 |" in table
    docs = tmp_path / "docs"
    (docs / "assets").mkdir(parents=True)
    (docs / "training.md").write_text(
        "before\n<!-- train-bench: begin -->\nold\n<!-- train-bench: end -->\nafter\n")
    train_bench.write_docs(report, docs)
    page = (docs / "training.md").read_text()
    assert "old" not in page and table in page and page.endswith("after\n")
    assert (docs / "assets" / "train_bench.png").read_bytes()[:4] == b"\x89PNG"


def test_fast_mode_trains_every_rule_above_chance(tmp_path):
    frameworks = ["torch"]
    if importlib.util.find_spec("jax") and importlib.util.find_spec("keras"):
        frameworks.append("keras-jax")
    out = tmp_path / "fast.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_bench.py"), "--fast",
         "--frameworks", *frameworks, "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    ran = {(r["framework"], r["rule"]) for r in report["results"]}
    assert ran == {(fw, rule) for fw in frameworks
                   for rule in ("baseline", *train_bench.FAST_RULES)}
    for r in report["results"]:
        assert r["accuracy"] > CLEARLY_ABOVE_CHANCE, r
