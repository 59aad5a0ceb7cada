"""The case catalogue: unique names, and each case really has the property it was built for."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from fusion_spec.conformance.cases import BOUNDARY_NOISE, EXPORTS, all_cases, cases_of
from fusion_spec.conformance.suite import reference


def aux_of(name):
    return reference(name)[1]


def test_names_unique_and_match_their_export():
    names = [c.name for c in all_cases()]
    assert len(names) == len(set(names)) == len(EXPORTS)
    assert names == list(EXPORTS)


def test_every_rule_has_defaults_batch1_l2_zeros_and_large():
    for rule in spec.RULES:
        names = {c.name for c in cases_of(rule)}
        for variant in ("default", "batch1", "l2", "zeros", "large"):
            assert f"{rule}_{variant}" in names


def test_inputs_are_float32_and_noise_in_unit_interval():
    for c in all_cases():
        assert c.v.dtype == c.t.dtype == np.float32
        for u in (c.noise or {}).values():
            assert u.dtype == np.float32 and np.all((u >= 0) & (u < 1))


def test_defaults_keep_every_spec_default_but_dim():
    """``{rule}_default``: the defaults but dim and input_norm (the per-sample math);
    ``{rule}_spec_defaults``: exactly what ``build(rule, dim=8)`` computes (in training,
    dropout 0)."""
    for rule, cls in spec.RULES.items():
        c = cases_of(rule)[0]
        assert c.name == f"{rule}_default"
        defaults = cls(dim=c.spec.dim).model_dump()
        assert c.spec.model_dump() == defaults | {"input_norm": "none"}
        by_name = {c.name: c for c in cases_of(rule)}
        assert by_name[f"{rule}_spec_defaults"].spec.model_dump() == cls(dim=8).model_dump()
        trained = by_name[f"{rule}_spec_defaults_training"]
        assert trained.training and trained.gradient
        dropout = {"dropout": 0.0} if "dropout" in cls.model_fields else {}
        assert trained.spec.model_dump() == cls(dim=8, **dropout).model_dump()


def test_every_route_is_taken_in_eval_and_training():
    for rule in ("shomr", "energy_aware_adaptive"):
        for training in (False, True):
            routes = set()
            for c in cases_of(rule):
                if c.training == training:
                    aux = aux_of(c.name)
                    hard = aux.get("hard", np.ones_like(aux["route"]))
                    # route -1: a sample with neither modality (missing-modality cases)
                    routes |= set(aux["route"][(hard > 0) & (aux["route"] >= 0)].tolist())
            assert routes == {0, 1, 2}, (rule, training)


def test_shomr_automatic_routing_mixes_hard_and_soft():
    for name in ("shomr_automatic_mixed", "shomr_training_automatic"):
        assert set(aux_of(name)["hard"].tolist()) == {0.0, 1.0}


def test_shomr_fallback_fires():
    assert aux_of("shomr_fallback_fires")["fallback"].any()


@pytest.mark.parametrize("rule", ["shomr", "energy_aware_adaptive"])
def test_exact_boundary_noise_sits_on_the_cdf(rule):
    aux = aux_of(f"{rule}_categorical_exact_boundary")
    probs = aux["route_probs"].astype(np.float32)
    assert np.all(probs == np.float32([0.5, 0.5, 0.0]))
    assert np.any(BOUNDARY_NOISE == np.cumsum(probs, axis=1)[:, 0])
    assert aux["route"][BOUNDARY_NOISE == 0.5].tolist() == [1, 1]


def test_energy_budget_split_straddles_the_budget():
    c = next(c for c in all_cases() if c.name == "energy_aware_adaptive_energy_budget_split")
    energy = aux_of(c.name)["expected_energy"]
    assert energy.min() < c.spec.energy_budget_mJ < energy.max()


def test_temperature_changes_the_route_probabilities():
    for name in ("shomr_temperature_half", "shomr_temperature_2"):
        c = next(c for c in all_cases() if c.name == name)
        plain = c.spec.model_copy(update={"routing_temperature": 1.0})
        _, aux = fusion_ref.forward(plain, c.params, c.v, c.t, return_aux=True, **c.options)
        assert np.max(np.abs(aux["route_probs"] - aux_of(name)["route_probs"])) > 0.05


def test_gradient_cases_sit_away_from_every_boundary():
    for c in all_cases():
        if not c.gradient:
            continue
        aux = aux_of(c.name)
        for a in c.spec.aux(c.v.shape[0], training=c.training, **c.options):
            if a.role == "margin":
                assert np.min(aux[a.name]) > 1e-3, (c.name, a.name)


def test_every_rule_has_a_gradient_case_and_training_case():
    for rule in spec.RULES:
        assert any(c.gradient for c in cases_of(rule)), rule
        assert any(c.training for c in cases_of(rule)), rule
