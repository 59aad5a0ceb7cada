"""The Keras layers compute the reference function, on the Keras backend of this process."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import (
    BATCH,
    CALL_IDS,
    CALLS,
    CASES,
    TOL,
    assert_matches_reference,
    inputs,
    legacy_state_dict,
    make_spec,
    perturbed_params,
    to_numpy,
    uniform_noise,
)

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk
from tests.backend_cases import LEGACY


@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_eval_matches_reference(case, options):
    s = make_spec(case)
    params = perturbed_params(s)
    v, t = inputs(s)
    layer = bk.build(s, params)
    # energy_aware_adaptive with eval_routing="sample" draws its route in eval too
    noise = uniform_noise(s, BATCH, training=False, **options) or None
    out, aux = layer(v, t, noise=noise, return_aux=True, **options)
    ref, ref_aux = fusion_ref.forward(s, params, v, t, noise=noise, return_aux=True, **options)
    assert_matches_reference(s, out, aux, ref, ref_aux, training=False, **options)


@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_training_with_injected_noise_matches_reference(case, options):
    s = make_spec(case)
    params = perturbed_params(s, seed=1)
    v, t = inputs(s, seed=1)
    noise = uniform_noise(s, BATCH, seed=1, training=True, **options)
    layer = bk.build(s, params)
    out, aux = layer(v, t, training=True, noise=noise or None, return_aux=True, **options)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, training=True, noise=noise, return_aux=True, **options
    )
    assert_matches_reference(s, out, aux, ref, ref_aux, training=True, **options)


@pytest.mark.parametrize("kind", list(LEGACY))
def test_legacy_checkpoint_matches_reference(kind):
    sizes = dict(LEGACY[kind])
    dim, heads = sizes.pop("dim"), sizes.pop("heads", None)
    state_dict = legacy_state_dict(kind, dim, **sizes)
    s, params = spec.from_legacy(kind, state_dict, **({"heads": heads} if heads else {}))
    assert s.dim == dim
    v, t = inputs(s, seed=2)
    layer = bk.build(s, params)
    out, aux = layer(v, t, return_aux=True)
    ref, ref_aux = fusion_ref.forward(s, params, v, t, return_aux=True)
    assert_matches_reference(s, out, aux, ref, ref_aux, training=False)


def test_injected_noise_covers_every_decision():
    """The cases above are not vacuous: both soft and hard samples, all three routes."""
    s = make_spec("shomr")
    v, t = inputs(s, seed=1, batch=64)
    noise = uniform_noise(s, 64, seed=1, training=True)
    _, aux = bk.build(s, perturbed_params(s, seed=1))(
        v, t, training=True, noise=noise, return_aux=True
    )
    assert set(np.unique(to_numpy(aux["hard"]))) == {0.0, 1.0}
    assert set(np.unique(to_numpy(aux["route"]))) == {0, 1, 2}


def test_training_draws_its_own_noise_with_the_seed_generator():
    s = make_spec("modality_dropout_sample")
    params = perturbed_params(s)
    v, t = inputs(s, batch=64)
    first = bk.build(s, params, seed=7)(v, t, training=True, return_aux=True)
    again = bk.build(s, params, seed=7)(v, t, training=True, return_aux=True)
    keep_v, keep_t = to_numpy(first[1]["keep_image"]), to_numpy(first[1]["keep_text"])
    np.testing.assert_array_equal(to_numpy(first[0]), to_numpy(again[0]))
    # p = 0.5 per sample: 64 draws that all agree would mean no randomness
    assert 0 < keep_v.sum() < 64 and 0 < keep_t.sum() < 64
    # the drawn masks are applied as the reference applies them
    # (p = 0.5: kept where u >= 0.5, so u = 0.9 keeps and u = 0.1 drops)
    mask_noise = {"drop_image": 0.1 + 0.8 * keep_v, "drop_text": 0.1 + 0.8 * keep_t}
    ref = fusion_ref.forward(s, params, v, t, training=True, noise=mask_noise)
    np.testing.assert_allclose(to_numpy(first[0]), ref, **TOL)


def test_shomr_route_draw_without_noise_is_a_valid_route():
    s = make_spec("shomr")
    layer = bk.build(s, perturbed_params(s), seed=3)
    v, t = inputs(s, batch=64)
    _, aux = layer(v, t, training=True, return_aux=True, use_hard_routing=True)
    route = to_numpy(aux["route"])
    assert route.dtype.kind == "i" and set(np.unique(route)) <= {0, 1, 2}
    assert len(np.unique(route)) > 1


def test_elementwise_dropout_acts_in_training_only():
    s = spec.parse(dict(CASES["simple"], dropout=0.5))
    layer = bk.build(s, perturbed_params(s), seed=0)
    v, t = inputs(s)
    eval_out = to_numpy(layer(v, t))
    np.testing.assert_allclose(eval_out, fusion_ref.forward(s, perturbed_params(s), v, t), **TOL)
    train_out = to_numpy(layer(v, t, training=True))
    assert np.all(np.isfinite(train_out))
    assert not np.allclose(train_out, eval_out, atol=1e-3)


def test_literal_gated():
    """Worked by hand: dim 1, W_g = [[1, -1]], b_g = 0: v = 2, t = 2 gives g = 1/2, f = 2;
    v = 1, t = 0 gives g = sigmoid(1) = 0.7310586, f = 0.7310586."""
    s = spec.parse({"kind": "gated", "dim": 1, "input_norm": "none"})  # the rule alone
    layer = bk.build(s, {"gate.weight": np.array([[1.0, -1.0]]), "gate.bias": np.array([0.0])})
    out = to_numpy(layer(np.array([[2.0], [1.0]]), np.array([[2.0], [0.0]])))
    np.testing.assert_allclose(out, [[2.0], [0.7310586]], rtol=1e-6)


def test_literal_film_non_square_layout():
    """dim 2, W_gamma = [[1, 2], [0, 0]] (out, in), b_gamma = [0, 1], beta = 0:
    t = [1, 1] gives gamma = [3, 1]; v = [2, 5] gives f = [6, 5]. The transposed
    kernel would give gamma = [1, 3], f = [2, 15]."""
    s = spec.parse({"kind": "film", "dim": 2, "input_norm": "none"})  # the rule alone
    params = {
        "gamma.weight": np.array([[1.0, 2.0], [0.0, 0.0]]),
        "gamma.bias": np.array([0.0, 1.0]),
        "beta.weight": np.zeros((2, 2)),
        "beta.bias": np.zeros(2),
    }
    out = to_numpy(bk.build(s, params)(np.array([[2.0, 5.0]]), np.array([[1.0, 1.0]])))
    np.testing.assert_allclose(out, [[6.0, 5.0]], rtol=1e-6)


def test_exact_gelu_and_spec_epsilon():
    """GELU is the erf form and LayerNorm uses eps 1e-5: tanh GELU or eps 1e-3 are off by more.

    (Keras's own default, ``approximate=True``, is the tanh form: it must differ.)"""
    s = spec.parse({"kind": "cross_attention", "dim": 4, "heads": 1, "dropout": 0.0})
    params = perturbed_params(s)
    # small-variance inputs make the epsilon visible
    v = np.full((2, 4), 0.01, np.float32) + np.float32(0.003) * np.arange(4, dtype=np.float32)
    t = -v
    out = to_numpy(bk.build(s, params)(v, t))
    np.testing.assert_allclose(out, fusion_ref.forward(s, params, v, t), **TOL)
    assert keras.ops.convert_to_numpy(keras.ops.gelu(np.float32(1.0), approximate=False)) != (
        keras.ops.convert_to_numpy(keras.ops.gelu(np.float32(1.0), approximate=True))
    )
