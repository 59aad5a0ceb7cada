"""The mask-fill probe's variants change only what they say (benchmarks/mask_fill_probe.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mask_fill_probe as probe  # noqa: E402

torch = pytest.importorskip("torch")

from fusion_spec.backends.torch._layers import RunningStats  # noqa: E402
from fusion_spec.spec import FilmSpec  # noqa: E402

SPEC = FilmSpec(dim=3)
X = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.5, 1.0], [0.0, 0.0, 0.0], [5.0, 1.5, 2.0]],
                 dtype=torch.float64)
PRESENT = torch.tensor([True, True, False, True])


def _stats(rows):
    return rows.mean(0), rows.var(0, unbiased=False)


def _call(variant, training=True):
    restore = probe.patch(variant)
    try:
        norm = RunningStats(3).double()
        norm.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))  # eval reads these
        norm.running_var.copy_(torch.tensor([4.0, 1.0, 2.0]))
        norm.train(training)
        return norm, norm(X, PRESENT, SPEC)
    finally:
        restore()


def test_none_is_the_layer_and_every_patch_is_undone():
    before = (RunningStats.forward, RunningStats.__init__)
    _, y = _call("none")
    mean, var = _stats(X[PRESENT])
    np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) / torch.sqrt(var + SPEC.input_norm_eps))
    assert torch.count_nonzero(y[~PRESENT]) == 0
    for variant in probe.VARIANTS:
        _call(variant)
        assert (RunningStats.forward, RunningStats.__init__) == before


def test_raw_zero_puts_absent_rows_where_a_raw_zero_lands():
    for training in (True, False):
        norm, y = _call("raw_zero", training)
        mean, var = (_stats(X[PRESENT]) if training else
                     (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 1.0, 2.0])))
        scale = torch.rsqrt(var + SPEC.input_norm_eps)
        np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) * scale)  # as the layer
        np.testing.assert_allclose(y[~PRESENT][0], -mean * scale)
        assert torch.count_nonzero(y[~PRESENT]) == 3


def test_all_row_stats_takes_the_statistics_over_every_row():
    _, y = _call("all_row_stats")
    zeroed = torch.where(PRESENT[:, None], X, 0.0)
    mean, var = _stats(zeroed)
    np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) / torch.sqrt(var + SPEC.input_norm_eps))
    assert torch.count_nonzero(y[~PRESENT]) == 0


def test_learned_fill_is_a_trainable_vector_for_absent_rows():
    norm, y = _call("learned_fill")
    assert isinstance(norm.fill, torch.nn.Parameter) and norm.fill.shape == (3,)
    y.sum().backward()
    np.testing.assert_allclose(norm.fill.grad, [1.0, 1.0, 1.0])  # one absent row
    assert torch.count_nonzero(y[~PRESENT]) == 0  # zero-initialised


def test_compare_pairs_each_probe_run_with_the_towers_runs_of_its_seed():
    def run(fw, rule, scenario, seed, acc, variant=None):
        r = {"framework": fw, "rule": rule, "scenario": scenario, "seed": seed,
             "history": {"accuracy": [acc] * 5, "loss": [1 - acc] * 5}}
        return r if variant is None else {"variant": variant, **r}

    towers_runs = [run("torch", "film", sc, s, a) for s, (m, p) in enumerate([(0.8, 0.9), (0.7, 0.9)])
                   for sc, a in (("missing_mask", m), ("missing_no_mask", p))]
    probe_runs = [run("torch", "film", "missing_mask", s, a, "raw_zero")
                  for s, a in enumerate([0.9, 0.88])]
    text = probe.compare({"results": probe_runs}, {"results": towers_runs})
    assert "raw_zero" in text and "n=2" in text
    assert "variant -0.0100 ± 0.0200, default mask -0.1500 ± 0.1000, variant - default +0.1400" in text
