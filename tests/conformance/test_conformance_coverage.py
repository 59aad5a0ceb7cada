"""The catalogue's coverage rule (docs/conformance-coverage in writing-a-backend.md), enforced.

Everything enumerated here comes from the spec models, not from a list in this
file: each rule's declared ``comparisons``, its boolean and ``Literal`` fields
(every allowed value), its call options, its ``routing_dependent`` fields and
the ``decision`` outputs of ``aux()``. A new comparison, option or decision
without its case fails here.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from fusion_spec import spec
from fusion_spec.conformance import planted
from fusion_spec.conformance.cases import cases_of
from fusion_spec.conformance.suite import reference

COMPARISONS = [(rule, c) for rule, cls in spec.RULES.items() for c in cls.comparisons]


@pytest.mark.parametrize(("rule", "comparison"), COMPARISONS, ids=lambda x: getattr(x, "name", x))
def test_every_comparison_has_an_exact_boundary_case(rule, comparison):
    """A planted bug makes the comparison non-strict, and an exact case decides differently."""
    key = f"{rule}.{comparison.name}"
    bugs = [b for b in planted.BUGS if key in b.flips]
    assert bugs, f"no planted bug flips {key} ({comparison.describe()})"
    adapter = bugs[0].load()
    differs = []
    for c in cases_of(rule):
        if not c.exact_decisions:
            continue
        model = adapter.build(c.spec, c.params)
        _, aux = adapter.forward(
            model, c.v.copy(), c.t.copy(), training=c.training, noise=c.noise, options=c.options
        )
        if not np.array_equal(aux[comparison.decision], reference(c.name)[1][comparison.decision]):
            differs.append(c.name)
    assert differs, (
        f"{key}: no exact_decisions case of {rule} puts {comparison.left} exactly on "
        f"{comparison.right or 'a tie'} ({comparison.describe()})"
    )


def _values(field) -> list[object]:
    """Every value of a boolean or ``Literal`` field with more than one; else none."""
    if field.annotation is bool:
        return [False, True]
    if typing.get_origin(field.annotation) is typing.Literal:
        args = list(typing.get_args(field.annotation))
        return args if len(args) > 1 else []
    return []


def _option_values(option) -> list[object]:
    """Values of a call option, from its declared type: ``bool | None`` gives None, True, False;
    a float stands for "given" (any float)."""
    values: list[object] = []
    if "None" in option.type:
        values.append(None)
    if "bool" in option.type:
        values += [True, False]
    if "float" in option.type:
        values.append(float)
    return values


def _has(c, name, value) -> bool:
    got = (
        c.options.get(name)
        if name in {o.name for o in c.spec.call_options}
        else getattr(c.spec, name)
    )
    if value is float:
        return isinstance(got, float)
    return got is value or (got == value and type(got) is type(value))


OPTIONS = [
    (rule, name, value)
    for rule, cls in spec.RULES.items()
    for name, f in cls.model_fields.items()
    if name != "kind"
    for value in _values(f)
] + [
    (rule, o.name, value)
    for rule, cls in spec.RULES.items()
    for o in cls.call_options
    for value in _option_values(o)
]


@pytest.mark.parametrize(("rule", "name", "value"), OPTIONS, ids=str)
def test_every_option_value_under_forward_and_gradient_checks(rule, name, value):
    cases = [c for c in cases_of(rule) if _has(c, name, value)]
    assert cases, f"{rule}: no case with {name}={value}"
    assert any(c.gradient for c in cases), f"{rule}: no gradient case with {name}={value}"


ROUTING = [
    (rule, field, value, mode)
    for rule, cls in spec.RULES.items()
    for field in cls.routing_dependent
    for value in _values(cls.model_fields[field])
    for o in cls.call_options
    if o.name == "use_hard_routing"
    for mode in _option_values(o)
]


@pytest.mark.parametrize(("rule", "field", "value", "mode"), ROUTING, ids=str)
def test_routing_dependent_options_in_every_routing_mode(rule, field, value, mode):
    cases = [
        c
        for c in cases_of(rule)
        if getattr(c.spec, field) == value and c.options.get("use_hard_routing") is mode
    ]
    assert cases, f"{rule}: no case with {field}={value} and use_hard_routing={mode}"
    assert any(c.gradient for c in cases), (
        f"{rule}: no gradient case with {field}={value} and use_hard_routing={mode}"
    )


DECISIONS = [
    (rule, a)
    for rule, cls in spec.RULES.items()
    for a in cls(dim=8, **({"heads": 2} if "heads" in cls.model_fields else {})).aux(
        1, training=True
    )
    if a.role == "decision"
]


@pytest.mark.parametrize(("rule", "decision"), DECISIONS, ids=lambda x: getattr(x, "name", x))
def test_every_decision_takes_every_value(rule, decision):
    seen, classes = set(), None
    for c in cases_of(rule):
        aux = reference(c.name)[1]
        if decision.name in aux:
            seen |= set(np.asarray(aux[decision.name]).ravel().tolist())
            if decision.dtype == "int":
                classes = aux["route_probs"].shape[-1]
    want = set(range(classes)) if decision.dtype == "int" else {0.0, 1.0}
    assert seen >= want, f"{rule}.{decision.name} takes only {sorted(seen)}; want {sorted(want)}"


def test_fallback_fires_beside_hard_samples_in_one_batch():
    fires = []
    for c in cases_of("shomr"):
        aux = reference(c.name)[1]
        if aux["fallback"].any() and (aux["hard"] > 0).any():
            fires.append(c.name)
    assert fires


def test_output_drop_schedule_at_progress_zero_and_where_the_cap_binds():
    progress = {}
    for c in cases_of("energy_aware_adaptive"):
        p = c.options.get("progress")
        if p is not None and c.training:
            s = c.spec
            progress[c.name] = (p, s.output_drop_start + s.output_drop_ramp * p > s.output_drop_max)
    assert any(p == 0.0 for p, _ in progress.values()), "no case at progress 0"
    assert any(binds for _, binds in progress.values()), "no case where the cap binds"
    assert any(0.0 < p < 1.0 and p != 0.5 for p, _ in progress.values()), (
        "no progress where start + ramp * p and start + ramp * (1 - p) differ"
    )
