"""The suite tests itself: every planted bug is caught, with a message pointing at it.

``test_planted_bug_is_killed`` runs each bug of the public catalogue
(``conformance/planted/``) through every check of its scope: it fails when the
bug survives, when a check the catalogue names for it passes it, or when its row
of ``docs/kill-matrix.md`` drifts. The other tests pin the messages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusion_spec import spec
from fusion_spec.conformance import broken, planted
from fusion_spec.conformance.suite import CATEGORIES, all_checks, run_check, select

PAGE = Path(__file__).resolve().parents[2] / "docs" / "kill-matrix.md"
REGENERATE = "rerun: python -m fusion_spec.conformance kill-matrix"


def page_rows() -> dict[str, str]:
    """The kill-matrix page's table rows, by bug name."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        m = re.match(r"\| `([a-z0-9-]+)` \|", line)
        if m:
            rows[m.group(1)] = line
    return rows


@pytest.mark.parametrize("bug", planted.BUGS, ids=lambda b: b.name)
def test_planted_bug_is_killed(bug):
    if bug.requires:
        pytest.importorskip(bug.requires, reason=f"{bug.name} plants its bug in {bug.requires}")
    kill = planted.run_bug(bug)
    assert kill.killed, f"{bug.name} survived all {len(kill.ran)} checks"
    # a crash of the planted adapter would count as a kill without showing the bug
    assert not kill.errors, f"{bug.name}: the adapter raised in {kill.errors}"
    missed = [c for c in bug.caught_by if c not in kill.caught]
    assert not missed, f"{bug.name} passes the checks named for it: {missed}"
    row = planted.render_row(kill)
    stored = page_rows().get(bug.name)
    assert stored is not None, f"{bug.name} missing from docs/kill-matrix.md; {REGENERATE}"
    assert planted.detail(kill) in PAGE.read_text().splitlines(), REGENERATE
    if bug.requires:
        # float32 rounding of a framework moves the count of checks near their
        # tolerance from machine to machine; the named checks and the verdict do not.
        assert stored.split(" | ")[-1] == row.split(" | ")[-1], REGENERATE
    else:
        assert stored == row, REGENERATE


def test_catalogue_covers_every_rule_and_category_and_the_page_lists_it():
    assert len(planted.BUGS) >= 40
    names = [b.name for b in planted.BUGS]
    assert len(set(names)) == len(names)
    assert list(page_rows()) == names, REGENERATE
    assert {r for b in planted.BUGS for r in b.rules} == set(spec.RULES)
    named = {c.split("/")[1] for b in planted.BUGS for c in b.caught_by}
    assert named == set(CATEGORIES)
    checks = {c.id for c in all_checks()}
    unknown = [c for b in planted.BUGS for c in b.caught_by if c not in checks]
    assert not unknown, f"named checks that do not exist: {unknown}"


def outcomes(adapter, *patterns):
    return {c.id: run_check(adapter, c) for c in select(all_checks(), patterns)}


def failing(results, status=("fail", "error")):
    return {i: o.message for i, o in results.items() if o.status in status}


def test_tanh_gelu():
    results = outcomes(broken.TanhGelu(), "*/forward/*")
    bad = failing(results)
    gelu_rules = {"simple", "concat_mlp", "transformer_concat", "cross_attention", "shomr"}
    assert {i.split("/")[0] for i in bad} >= gelu_rules
    assert not any(i.startswith(("gated/", "film/", "modality_dropout/")) for i in bad)
    assert "tanh GELU instead of the erf form" in bad["concat_mlp/forward/concat_mlp_default"]


def test_layer_norm_eps_1e_3():
    bad = failing(outcomes(broken.LayerNormEps1e3(), "*/forward/*"))
    assert "cross_attention/forward/cross_attention_l2" in bad
    assert not any(i.startswith(("concat_mlp/", "gated/", "film/")) for i in bad)
    assert "LayerNorm eps 1e-3 instead of 1e-5" in bad["simple/forward/simple_default"]


def test_transposed_square_weight():
    results = outcomes(broken.TransposedSquareWeight(), "film/*", "cross_attention/*")
    bad = failing(results)
    assert "film/forward/film_default" in bad
    assert "gamma.weight transposed" in bad["film/forward/film_default"]
    assert "(layout or transpose?)" in bad["film/property/params_roundtrip"]
    assert "attn.query.weight transposed" in bad["cross_attention/forward/cross_attention_default"]


def test_swapped_v_and_t():
    bad = {
        i: m
        for i, m in failing(outcomes(broken.SwappedInputs(), "*/forward/*_default")).items()
        if not i.endswith("_non_default")  # the every-field cases: not the defaults
    }
    # `simple` is symmetric: a position-free encoder over {v, t}, then the token mean.
    assert set(bad) == {f"{r}/forward/{r}_default" for r in spec.RULES if r != "simple"}
    # cross_attention's output is symmetric too; its aux weights of v and t are not.
    weights = bad.pop("cross_attention/forward/cross_attention_default")
    assert weights.startswith("attention_weights:")
    assert all(
        "hint: the output matches the reference with v and t swapped" in m for m in bad.values()
    )


def test_attention_scale_1_over_dim():
    bad = failing(outcomes(broken.AttentionScaleOneOverDim(), "*/forward/*"))
    assert "cross_attention/forward/cross_attention_heads1" in bad
    assert not any(
        i.startswith(("concat_mlp/", "gated/", "film/", "modality_dropout/")) for i in bad
    )
    message = bad["simple/forward/simple_default"]
    assert "attention scores scaled by 1/dim instead of 1/sqrt(dim/heads)" in message


@pytest.mark.parametrize("rule", ["shomr", "energy_aware_adaptive"])
def test_categorical_less_equal(rule):
    results = outcomes(broken.CategoricalLessEqual(), f"{rule}/*")
    bad = failing(results)
    name = f"{rule}/forward/{rule}_categorical_exact_boundary"
    assert set(bad) == {name}, "only the exact-boundary case can see <= versus <"
    assert "route: 2/6 samples differ" in bad[name]
    assert "no rounding excuses it" in bad[name]
    assert "got [0], expected [1]" in bad[name]
    assert "categorical draw with u <= cdf instead of u < cdf" in bad[name]


def test_categorical_reversed_cdf():
    bad = failing(outcomes(broken.CategoricalReversedCdf(), "shomr/*", "energy_aware_adaptive/*"))
    assert "shomr/forward/shomr_training" in bad
    assert "energy_aware_adaptive/forward/energy_aware_adaptive_training" in bad
    assert "categorical draw over the reversed CDF" in bad["shomr/forward/shomr_training"]
    # Walking the CDF backwards keeps each route's probability: only injected noise sees it.
    assert not any("/distribution/" in i for i in bad)


def test_sampling_in_eval():
    results = outcomes(broken.SamplingInEval(), "shomr/*", "energy_aware_adaptive/*")
    bad = failing(results)
    assert "eval must not draw randomness" in bad["shomr/property/eval_deterministic"]
    assert "the backend samples in eval" in bad["shomr/distribution/shomr_eval_is_argmax"]
    assert "route:" in bad["shomr/forward/shomr_default"]
    assert "energy_aware_adaptive/property/eval_deterministic" in bad
    assert not any("training" in i for i in bad), "training draws from noise: unaffected"


def test_temperature_ignored():
    bad = failing(outcomes(broken.TemperatureIgnored(), "shomr/*"))
    assert "route_probs:" in bad["shomr/forward/shomr_temperature_2"]
    assert "route_probs:" in bad["shomr/forward/shomr_temperature_half"]
    assert "route frequencies" in bad["shomr/distribution/shomr_route_frequencies_temperature_2"]
    assert "shomr/forward/shomr_default" not in bad


def test_energy_loss_averaged_wrongly():
    bad = failing(outcomes(broken.EnergyLossAveragedWrongly(), "energy_aware_adaptive/*"))
    name = "energy_aware_adaptive/forward/energy_aware_adaptive_energy_budget_split"
    assert name in bad
    assert bad[name].startswith("energy_loss:")
    assert all(m.startswith("energy_loss:") for m in bad.values())


def test_modality_drop_per_sample():
    bad = failing(outcomes(broken.ModalityDropPerSample(), "modality_dropout/*"))
    assert set(bad) == {"modality_dropout/distribution/modality_dropout_batch_rates"}
    assert "batches mix kept and dropped samples" in next(iter(bad.values()))
    assert "modality drop per sample?" in next(iter(bad.values()))


def test_unregistered_param():
    bad = failing(outcomes(broken.UnregisteredParam(), "*/property/params_roundtrip"))
    assert len(bad) == 9
    assert "params ['gate.bias'] are not registered" in bad["gated/property/params_roundtrip"]


def test_unregistered_param_torch():
    pytest.importorskip("torch", reason="the PyTorch variant needs torch")
    from fusion_spec.conformance.broken_torch import TorchUnregisteredParam

    bad = failing(outcomes(TorchUnregisteredParam(), "gated/*", "film/*"))
    assert "params ['gate.bias'] are not registered" in bad["gated/property/params_roundtrip"]
    assert (
        "no gradient for param 'gate.bias': not registered" in bad["gated/gradient/gated_default"]
    )
    assert "no gradient for param 'beta.bias'" in bad["film/gradient/film_default"]
    assert not any("/forward/" in i for i in bad), "the forward still reads the param"


def test_tanh_gelu_torch_float32():
    pytest.importorskip("torch", reason="the PyTorch variant needs torch")
    from fusion_spec.conformance.broken_torch import TorchTanhGelu

    bad = failing(outcomes(TorchTanhGelu(), "concat_mlp/*", "shomr/forward/*", "gated/*"))
    assert "concat_mlp/forward/concat_mlp_default" in bad
    assert "tanh GELU instead of the erf form" in bad["concat_mlp/forward/concat_mlp_default"]
    assert "concat_mlp/gradient/concat_mlp_hidden3_dim12" in bad
    assert not any(i.startswith("gated/") for i in bad)


def test_non_strict_threshold_is_caught_only_on_its_exact_boundary_and_named():
    from fusion_spec.conformance.planted import shomr

    bad = failing(outcomes(shomr.HardGreaterEqual(), "shomr/*"))
    name = "shomr/forward/shomr_hard_exact_boundary"
    assert set(bad) == {name}, "only the exact-boundary case can see >= versus >"
    assert "hard: 3/6 samples differ" in bad[name]
    assert "hint: the deciding quantity equals its threshold exactly there" in bad[name]


def test_shared_uniform_is_caught_by_the_joint_test_alone():
    from fusion_spec.conformance.planted import modality_dropout

    results = outcomes(modality_dropout.SharedUniform(), "modality_dropout/*")
    bad = failing(results)
    assert set(bad) == {
        "modality_dropout/distribution/modality_dropout_batch_rates",
        "modality_dropout/distribution/modality_dropout_sample_rates",
        # the present samples of the missing-modality trials draw both drops too
        "modality_dropout/distribution/modality_dropout_missing_rates",
        "modality_dropout/distribution/modality_dropout_missing_drop_rates",
    }
    for message in bad.values():
        assert message.startswith("keep_image x keep_text: joint counts")
        assert "one uniform shared by two draws?" in message
    stats = results["modality_dropout/distribution/modality_dropout_sample_rates"].stats
    assert stats["keep_image"]["p_value"] > 1e-6 and stats["keep_text"]["p_value"] > 1e-6
