"""``torch.compile(fullgraph=True)`` compiles every rule in eval and training and matches eager.

Compilation is slow on small CPUs: one compiled module per rule, a few calls each.
"""

from __future__ import annotations

import pytest
import torch
from torch_cases import BATCH, KIND_CASES, OPTIONS, inputs, make_spec, perturbed_params

from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance


@pytest.fixture(autouse=True, scope="module")
def recompile_limit():
    """Every rule shares ``FusionModule.forward``: dynamo counts each rule x mode x options
    combination as a recompile of that one code object (limit 8 by default)."""
    with torch._dynamo.config.patch(recompile_limit=64):
        yield


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, **tolerance("float32"))


@pytest.mark.parametrize("case", KIND_CASES)
def test_compiled_matches_eager_in_eval_and_training(case):
    s = make_spec(case)
    module = bt.build(s, perturbed_params(s))
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    gen = torch.Generator().manual_seed(0)
    options = OPTIONS.get(s.kind, [{}])[-1]  # the richest call: forced routing, progress
    for training in (False, True):
        module.train(training)
        noise = {
            n.name: torch.rand(n.shape, generator=gen)
            for n in s.noise(BATCH, training=training, **options)
        }
        expected, expected_aux = module(v, t, noise=noise or None, return_aux=True, **options)
        actual, aux = compiled(v, t, noise=noise or None, return_aux=True, **options)
        assert_close(actual, expected)
        assert set(aux) == set(expected_aux)
        for name, value in aux.items():
            if value.is_floating_point():
                assert_close(value, expected_aux[name])
            else:
                assert torch.equal(value, expected_aux[name]), name


def test_compiled_training_draws_its_own_noise_and_dropout():
    """Without injected noise a compiled training call draws from the global generator."""
    s = make_spec("shomr").model_copy(update={"dropout": 0.3})
    module = bt.build(s, perturbed_params(s)).train()
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    torch.manual_seed(0)
    first, aux = compiled(v, t, return_aux=True, use_hard_routing=True)
    second = compiled(v, t, use_hard_routing=True)
    assert first.shape == (BATCH, s.dim) and torch.isfinite(first).all()
    assert not torch.equal(first, second)
    assert aux["route"].dtype == torch.int32
    assert set(aux["route"].tolist()) <= {0, 1, 2}


def test_compiling_emits_no_warning_from_our_code():
    """Tracing the call path warns about nothing of ours (a ``functools.lru_cache`` in
    the checks made dynamo warn on every compile); torch's own deprecation notices aside."""
    import warnings

    s = make_spec("gated")
    compiled = torch.compile(bt.build(s, perturbed_params(s)).eval(), fullgraph=True)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled(v, t)
    ours = [
        str(w.message) for w in caught if "fusion_spec" in w.filename or "lru_cache" in str(w.message)
    ]
    assert not ours, ours
