"""The Keras layers with a presence mask: reference, bit-exactness, NaN rows, zero
gradients, the mask as an input of functional models and of ``.keras`` files."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import (
    BACKEND,
    BATCH,
    CAN_TRAIN,
    CASES,
    KIND_CASES,
    TOL,
    inputs,
    perturbed_params,
    to_numpy,
)

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk
from tests.backend_cases import MISSING_VARIANTS, PRESENT, garbage_in_absent_rows

ALL = {case: CASES[case] for case in KIND_CASES} | MISSING_VARIANTS
#: Training differs from eval (at dropout 0) only for the rules that draw noise.
STOCHASTIC = ("modality_dropout", "shomr", "energy_aware_adaptive")
CALLS = [(case, False) for case in ALL] + [
    (case, True) for case in STOCHASTIC if CAN_TRAIN
]


def build(fields):
    s = spec.parse(fields)
    params = perturbed_params(s)
    return s, params, bk.build(s, params, seed=0)


def noise_for(s, training):
    rng = np.random.default_rng(0)
    declared = s.noise(BATCH, training=training)
    return {n.name: rng.uniform(size=n.shape).astype(np.float32) for n in declared} or None


@pytest.mark.parametrize("case, training", CALLS)
def test_matches_reference_bit_exact_all_true_and_ignores_absent_rows(case, training):
    s, params, layer = build(ALL[case])
    v, t = inputs(s)
    noise = noise_for(s, training)
    kw = dict(training=training, noise=noise, return_aux=True)
    out, aux = layer(v, t, **kw)
    out_true, aux_true = layer(v, t, np.ones((BATCH, 2), bool), **kw)
    np.testing.assert_array_equal(to_numpy(out_true), to_numpy(out))
    for name, value in aux.items():
        np.testing.assert_array_equal(to_numpy(aux_true[name]), to_numpy(value), name)
    masked, masked_aux = layer(v, t, PRESENT, **kw)
    nan, nan_aux = layer(*garbage_in_absent_rows(v, t, PRESENT), PRESENT, **kw)
    np.testing.assert_array_equal(to_numpy(nan), to_numpy(masked))
    for name, value in masked_aux.items():
        np.testing.assert_array_equal(to_numpy(nan_aux[name]), to_numpy(value), name)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, PRESENT, training=training, noise=noise, return_aux=True
    )
    sure = np.ones(BATCH, bool)
    for a in s.call_aux(BATCH, training=training, present=True):
        if a.role == "decision" and a.margin:
            sure &= np.broadcast_to(ref_aux[a.margin] >= 1e-4, (BATCH,))
    np.testing.assert_allclose(to_numpy(masked)[sure], ref[sure], **TOL)
    for name, value in masked_aux.items():
        value = to_numpy(value)
        expected = ref_aux[name]
        if value.ndim:
            value, expected = value[sure], expected[sure]
        np.testing.assert_allclose(value, expected, **TOL, err_msg=name)


@pytest.mark.parametrize("case", ["gated", "cross_attention", "shomr", "energy_aware_adaptive"])
def test_the_mask_is_an_input_of_functional_models_and_keras_files(case, tmp_path):
    s, params, layer = build(CASES[case])
    v_in, t_in = keras.Input((s.dim,), name="v"), keras.Input((s.dim,), name="t")
    p_in = keras.Input((2,), dtype="bool", name="present")
    model = keras.Model([v_in, t_in, p_in], layer(v_in, t_in, p_in))
    v, t = garbage_in_absent_rows(*inputs(s), PRESENT)
    got = to_numpy(model.predict_on_batch([v, t, PRESENT]))
    np.testing.assert_allclose(got, fusion_ref.forward(s, params, v, t, PRESENT), **TOL)
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded.predict_on_batch([v, t, PRESENT])), got)


def test_symbolic_aux_includes_neither():
    s, _, layer = build(CASES["shomr"])
    v_in, t_in = keras.Input((s.dim,)), keras.Input((s.dim,))
    fused, aux = layer(v_in, t_in, keras.Input((2,), dtype="bool"), return_aux=True)
    assert fused.shape == (None, s.dim) and tuple(aux["neither"].shape) == (None,)


def test_bad_present_is_named():
    s, _, layer = build(CASES["gated"])
    v, t = inputs(s)
    with pytest.raises(spec.InputError, match=r"gated: argument 'present' expected shape \(B, 2\)"):
        layer(v, t, np.ones((8, 3), bool))
    with pytest.raises(spec.InputError, match=r"expected a bool or an integer dtype"):
        layer(v, t, np.ones((8, 2), np.float32))


@pytest.mark.skipif(not CAN_TRAIN, reason=f"the Keras {BACKEND} backend has no gradients")
@pytest.mark.parametrize("case", KIND_CASES)
def test_no_gradient_reaches_an_absent_row(case):
    from fusion_spec.conformance.adapters.keras import KerasAdapter

    s, params, _ = build(CASES[case])
    adapter = KerasAdapter()
    v, t = garbage_in_absent_rows(*inputs(s), PRESENT)
    cot = np.random.default_rng(0).standard_normal((BATCH, s.dim)).astype(np.float32)
    grads = adapter.gradients(
        adapter.build(s, params), v, t, cot, training=True, noise=noise_for(s, True),
        options={}, present=PRESENT,
    )
    assert np.all(grads["v"][~PRESENT[:, 0]] == 0) and np.all(grads["t"][~PRESENT[:, 1]] == 0)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.skipif(not CAN_TRAIN, reason=f"the Keras {BACKEND} backend has no gradients")
@pytest.mark.parametrize("training", [False, True])
def test_lone_gradient_stop_cuts_a_lone_sample_s_input_gradient_not_the_rule_s(training):
    """``cross_attention``'s ``lone_gradient``: the same output under "stop" and "pass";
    a lone sample's own output reaches no input row under "stop" (with the default
    ``input_norm="batch"``, in training too), and the rule's parameters learn the same."""
    from fusion_spec.conformance.adapters.keras import KerasAdapter

    lone = PRESENT[:, 0] ^ PRESENT[:, 1]
    adapter = KerasAdapter()
    seen = {}
    for value in ("stop", "pass"):
        s, params, _ = build({**CASES["cross_attention"], "lone_gradient": value,
                              "input_norm": "batch", "dropout": 0.0})
        v, t = garbage_in_absent_rows(*inputs(s), PRESENT)
        cot = np.random.default_rng(0).standard_normal((BATCH, s.dim)).astype(np.float32)
        cot[~lone] = 0.0  # the lone samples' outputs alone
        model = adapter.build(s, params)
        out = adapter.forward(model, v, t, training=training, noise=None, options={},
                              present=PRESENT)[0]
        grads = adapter.gradients(adapter.build(s, params), v, t, cot, training=training,
                                  noise=None, options={}, present=PRESENT)
        seen[value] = (np.asarray(out), grads)
    (out_s, g_s), (out_p, g_p) = seen["stop"], seen["pass"]
    np.testing.assert_array_equal(out_s, out_p)
    assert np.all(g_s["v"] == 0) and np.all(g_s["t"] == 0)
    assert np.abs(g_p["v"][lone & PRESENT[:, 0]]).max() > 0
    assert np.abs(g_p["t"][lone & PRESENT[:, 1]]).max() > 0
    rule = {p.name for p in s.rule_params()}
    assert rule <= set(g_s)
    for name in rule:
        np.testing.assert_allclose(g_s[name], g_p[name], rtol=1e-6, atol=1e-7, err_msg=name)
