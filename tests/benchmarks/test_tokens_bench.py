"""The token benchmark compares like with like: its torch.nn baselines compute our function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import tokens_bench  # noqa: E402

from fusion_spec import spec  # noqa: E402
from fusion_spec.backends.torch import build  # noqa: E402


@pytest.mark.parametrize("kind", tokens_bench.RULES)
@pytest.mark.parametrize("training", [False, True])
def test_the_torch_nn_baseline_is_our_function(kind, training):
    """Same weights, same padded batch: the outputs agree to float32 rounding (1e-5 on
    unit-scale outputs of a few layers), in eval (torch's nested-tensor fast path) and
    in training mode (its slow path)."""
    s = spec.parse(kind, dim=16, heads=4, dropout=0.0, input_norm="none")  # as the benchmark
    params = spec.init_params(s, seed=1)
    ours, theirs = build(s, params), tokens_bench.BASELINES[kind](s, params)
    ours.train(training), theirs.train(training)
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(5, 6, 16, generator=g), torch.randn(5, 3, 16, generator=g)
    mv = torch.arange(6) < torch.tensor([[6], [2], [1], [4], [5]])
    mt = torch.arange(3) < torch.tensor([[3], [1], [2], [3], [1]])
    with torch.inference_mode(not training):
        a, b = ours(v, t, image_mask=mv, text_mask=mt), theirs(v, t, mv, mt)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_published_figures_compare_the_same_function():
    doc = json.loads((ROOT / "docs" / "assets" / "tokens_bench.json").read_text())
    assert {r["rule"] for r in doc["rows"]} == set(tokens_bench.RULES)
    assert all(r["max_abs_diff"] < 1e-4 for r in doc["rows"])
