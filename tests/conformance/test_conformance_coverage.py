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


# --- the coverage rule of issue 22: generated from the spec's declarations -------------

from fusion_spec.conformance.cases import (  # noqa: E402
    STRESS,
    STRESS_MISSING,
    _other_values,
    make_spec,
)
from fusion_spec.conformance.gradients import aux_cotangents  # noqa: E402


def _movable(rule: str, name: str) -> bool:
    """The field admits a value other than its default (``layer_norm_eps`` and one-value
    ``Literal`` fields admit none)."""
    f = spec.RULES[rule].model_fields[name]
    base = {"dim": 8, **({"heads": 2} if "heads" in spec.RULES[rule].model_fields else {})}
    for value in _other_values(name, f.default, f.annotation):
        try:
            make_spec(rule, **{**base, name: value})
        except spec.SpecError:
            continue
        return True
    return f.default is None  # an optional field: set is its other value


FIELDS = [
    (rule, name, mode)
    for rule, cls in spec.RULES.items()
    for name in cls.model_fields
    if name not in ("kind", "dim") and _movable(rule, name)
    for mode in ("eval", "training")
]


@pytest.mark.parametrize(("rule", "name", "mode"), FIELDS, ids=str)
def test_every_field_off_its_default_in_eval_and_in_training(rule, name, mode):
    default = spec.RULES[rule].model_fields[name].default
    training = mode == "training"
    cases = [
        c.name
        for c in cases_of(rule)
        if c.training is training and getattr(c.spec, name) != default
    ]
    assert cases, f"{rule}: no {mode} case with {name} off its default {default!r}"


CALL_OPTIONS = [
    (rule, o.name, mode)
    for rule, cls in spec.RULES.items()
    for o in cls.call_options
    for mode in ("eval", "training")
]


@pytest.mark.parametrize(("rule", "option", "mode"), CALL_OPTIONS, ids=str)
def test_every_call_option_given_in_eval_and_in_training(rule, option, mode):
    """A schedule input (``progress``) in eval too: an eval that applies it must fail."""
    training = mode == "training"
    cases = [
        c.name
        for c in cases_of(rule)
        if c.training is training and c.options.get(option) is not None
    ]
    assert cases, f"{rule}: no {mode} case passes {option}"


DIFFERENTIABLE_AUX = [
    (rule, a.name)
    for rule, cls in spec.RULES.items()
    for a in cls(dim=8, **({"heads": 2} if "heads" in cls.model_fields else {})).aux(
        1, training=True
    )
    if a.differentiable
]


def test_some_aux_output_is_declared_differentiable():
    assert DIFFERENTIABLE_AUX, (
        "no AuxSpec declares differentiable=True: the rule below tests nothing"
    )


@pytest.mark.parametrize(("rule", "aux"), DIFFERENTIABLE_AUX, ids=str)
def test_every_differentiable_aux_output_has_a_gradient_case(rule, aux):
    """Its gradient (``energy_loss`` to the router and a trainable ``energy_weight``) is checked
    where the output alone reaches neither: with straight_through=False and the weight trained."""
    cases = [c for c in cases_of(rule) if c.gradient and aux in aux_cotangents(c)]
    assert cases, f"{rule}: no gradient case holds {aux} in its loss"
    reached = set().union(*(c.spec.no_output_gradient() for c in cases))
    assert reached >= _reached_by_aux_only(rule), (
        f"{rule}: {sorted(_reached_by_aux_only(rule) - reached)} get gradient only from {aux}; "
        "no aux gradient case trains them"
    )


def _reached_by_aux_only(rule: str) -> set[str]:
    """What the output never reaches at the most: straight_through off, every weight trained."""
    fields = spec.RULES[rule].model_fields
    extra = {"heads": 2} if "heads" in fields else {}
    if "straight_through" in fields:
        extra["straight_through"] = False
    if "energy_weight_trainable" in fields:
        extra["energy_weight_trainable"] = True
    return spec.RULES[rule](dim=8, **extra).no_output_gradient()


STRESSED = [
    (rule, kind, missing)
    for rule in spec.RULES
    for kind in STRESS
    for missing in (False, True)
    if not missing or kind in STRESS_MISSING
]


@pytest.mark.parametrize(("rule", "kind", "missing"), STRESSED, ids=str)
def test_every_rule_under_every_stress_distribution(rule, kind, missing):
    """Inputs that stress numerics (a large common offset, tiny and huge scales, nearly equal
    values), for every rule, with and without missing modalities."""
    name = f"{rule}_{'missing_' if missing else ''}{kind}"
    found = [c for c in cases_of(rule) if c.name == name]
    assert found, f"{rule}: no case {name}"
    assert (found[0].present is not None) is missing


def _declared_noise(rule: str) -> set[tuple[str, str]]:
    """(noise name, mode) for every noise input some setting of the rule declares."""
    cls = spec.RULES[rule]
    out = set()
    for c in cases_of(rule):  # every setting the catalogue builds, in its own mode
        for training in (False, True):
            for n in c.spec.noise(1, training=training, **c.options):
                out.add((n.name, "training" if training else "eval"))
    base = {"dim": 8, **({"heads": 2} if "heads" in cls.model_fields else {})}
    for name, f in cls.model_fields.items():  # and every discrete field value alone
        for value in _values(f):
            s = cls(**{**base, name: value})
            for training in (False, True):
                options = (
                    {"progress": 0.5} if any(o.name == "progress" for o in cls.call_options) else {}
                )
                for n in s.noise(1, training=training, **options):
                    out.add((n.name, "training" if training else "eval"))
    return out


NOISE = [(rule, name, mode) for rule in spec.RULES for name, mode in sorted(_declared_noise(rule))]


@pytest.mark.parametrize(("rule", "noise", "mode"), NOISE, ids=str)
def test_every_noise_input_is_injected_in_every_mode_that_declares_it(rule, noise, mode):
    training = mode == "training"
    cases = [
        c.name for c in cases_of(rule) if c.training is training and c.noise and noise in c.noise
    ]
    assert cases, f"{rule}: no {mode} case injects noise {noise!r}"


AUX = [
    (rule, a.name, mode)
    for rule, cls in spec.RULES.items()
    for mode in ("eval", "training")
    for a in cls(dim=8, **({"heads": 2} if "heads" in cls.model_fields else {})).call_aux(
        1, training=mode == "training", present=True
    )
    if a.role != "margin"
]


@pytest.mark.parametrize(("rule", "aux", "mode"), AUX, ids=str)
def test_every_aux_output_is_compared_in_eval_and_in_training(rule, aux, mode):
    """The forward check compares every declared aux output of a case: each must be declared
    by some case of each mode (``neither``: a case with a presence mask)."""
    training = mode == "training"
    cases = [
        c.name
        for c in cases_of(rule)
        if c.training is training
        and aux
        in {
            a.name
            for a in c.spec.call_aux(
                c.v.shape[0], training=training, present=c.present is not None, **c.options
            )
        }
    ]
    assert cases, f"{rule}: no {mode} case declares aux output {aux!r}"


TOKEN_NEEDS = {
    "padding in every pattern": lambda c: c.image_mask is not None and c.text_mask is not None
    and not c.image_mask.all(1).all() and (~c.image_mask).all(1).any()
    and (~c.text_mask).all(1).any(),
    "padding with a presence mask": lambda c: c.image_mask is not None and c.present is not None,
    "token sequences without a mask": lambda c: c.v.ndim == 3 and c.image_mask is None,
}


@pytest.mark.parametrize("rule", list(spec.RULES))
@pytest.mark.parametrize("need", list(TOKEN_NEEDS))
def test_every_rule_on_token_sequences_under_forward_and_gradient_checks(rule, need):
    """Token inputs: padding (partial and whole: an absent modality), composed with
    ``present``, and unpadded sequences of unequal lengths, each a gradient case too."""
    found = [c for c in cases_of(rule) if TOKEN_NEEDS[need](c)]
    assert found, f"{rule}: no token case with {need}"
    assert any(c.gradient for c in found), f"{rule}: no gradient case with {need}"
    if need == "padding in every pattern":
        assert any(np.isnan(c.v[~c.image_mask]).all() for c in found)  # the padding never read


@pytest.mark.parametrize("rule", ["simple", "transformer_concat", "cross_attention"])
def test_every_missing_modality_value_of_the_attending_rules_on_tokens(rule):
    values = {c.spec.missing_modality for c in cases_of(rule) if c.image_mask is not None}
    assert values == set(spec.RULES[rule].missing_semantics), values
