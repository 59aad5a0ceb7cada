"""Hints for a failing output: which known bug reproduces the backend's numbers.

When a forward check fails, the reference is re-run with each planted-bug
mutation of ``fusion_spec.conformance.broken`` (and every square weight transposed in turn);
a mutation whose output matches the backend's within the tolerance is named in
the failure message ("hint: matches the reference with v and t swapped").
Only run on failure, so a passing backend pays nothing.
"""

from __future__ import annotations

import contextlib

import numpy as np

from fusion_spec import fusion_ref

from . import broken
from .cases import Case
from .compare import compare_values


def _hypotheses(case: Case):
    s = case.spec
    if case.v.shape == case.t.shape:  # with different widths a swap cannot even run
        yield "v and t swapped", s, case.params, case.t, case.v, None
    yield (
        "tanh GELU instead of the erf form",
        s,
        case.params,
        case.v,
        case.t,
        ("gelu", broken.tanh_gelu),
    )
    if hasattr(s, "layer_norm_eps"):
        yield (
            "LayerNorm eps 1e-3 instead of 1e-5",
            s,
            case.params,
            case.v,
            case.t,
            ("layer_norm", broken.layer_norm_eps_1e3),
        )
    if hasattr(s, "heads"):
        yield (
            "attention scores scaled by 1/dim instead of 1/sqrt(dim/heads)",
            s,
            case.params,
            case.v,
            case.t,
            ("attention", broken.attention_scale_one_over_dim),
        )
    if getattr(s, "routing_temperature", 1.0) != 1.0:
        yield (
            "routing temperature ignored",
            s.model_copy(update={"routing_temperature": 1.0}),
            case.params,
            case.v,
            case.t,
            None,
        )
    if case.noise and "route" in case.noise:
        yield (
            "categorical draw with u <= cdf instead of u < cdf",
            s,
            case.params,
            case.v,
            case.t,
            ("categorical", broken.categorical_less_equal),
        )
        yield (
            "categorical draw over the reversed CDF",
            s,
            case.params,
            case.v,
            case.t,
            ("categorical", broken.categorical_reversed_cdf),
        )
    for p in s.params():
        if p.name.endswith(".weight") and len(p.shape) == 2 and p.shape[0] == p.shape[1]:
            params = dict(case.params)
            params[p.name] = np.ascontiguousarray(params[p.name].T)
            yield f"{p.name} transposed", s, params, case.v, case.t, None


def diagnose(case: Case, output: np.ndarray, dtype: str) -> list[str]:
    """Names of the known bugs whose reference output matches ``output``."""
    matches = []
    for name, s, params, v, t, patch in _hypotheses(case):
        with broken.patched(*patch) if patch else contextlib.nullcontext():
            expected = fusion_ref.forward(
                s,
                params,
                v,
                t,
                case.present,
                training=case.training,
                noise=case.noise,
                **case.options,
            )
        if compare_values("output", output, expected, dtype).ok:
            matches.append(name)
    return matches
