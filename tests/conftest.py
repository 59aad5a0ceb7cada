"""Shared helpers of the test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from fusion_spec import spec

# Property-based tests (tests/hypothesis_cases.py): "ci" is derandomized (a fixed
# seed, the same examples everywhere); "long" draws fresh examples, 10x as many.
_HYPOTHESIS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, print_blob=True, **_HYPOTHESIS)
settings.register_profile("long", derandomize=False, print_blob=True, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SIZES = {"dim": 12, "heads": 3}


def make_spec(kind: str, **overrides):
    """A small spec of ``kind``: dim 12 (not a power of two), 3 heads, dropout 0, and
    ``input_norm="none"``: the rule's per-sample math of the rule pages, which these
    tests check sample by sample (the default ``input_norm="batch"`` couples a training
    batch's samples; its own tests, the hypothesis tests and the conformance suite's
    default cases run it)."""
    fields = spec.RULES[kind].model_fields
    kw = {"kind": kind, "dim": SIZES["dim"], "input_norm": "none"}
    if "heads" in fields:
        kw["heads"] = SIZES["heads"]
    if "dropout" in fields:
        kw["dropout"] = 0.0
    kw.update(overrides)
    return spec.parse(kw)


def perturbed_params(s, seed: int = 0, scale: float = 0.1) -> dict[str, np.ndarray]:
    """``init_params`` plus float32 noise, so zero biases and unit LayerNorm weights
    no longer hide a backend that ignores them."""
    rng = np.random.default_rng(seed + 1000)
    params = spec.init_params(s, seed=seed)
    return {
        name: (value + scale * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in params.items()
    }


def uniform_noise(s, batch: int, seed: int = 0, *, training: bool = True, **options):
    rng = np.random.default_rng(seed)
    return {n.name: rng.uniform(size=n.shape) for n in s.noise(batch, training=training, **options)}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
