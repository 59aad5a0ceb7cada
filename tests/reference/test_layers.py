import math

import numpy as np

from fusion_spec.fusion_ref._layers import argmax, categorical, erf, gelu, layer_norm, softmax


def test_erf_matches_math_erf_to_float64_rounding():
    x = np.concatenate(
        [
            np.linspace(-7.0, 7.0, 200_001),
            np.geomspace(1e-300, 7.0, 20_001),
            -np.geomspace(1e-300, 7.0, 20_001),
            [0.0, -0.0, 2.9999999999, 3.0, 3.0000000001, 30.0, -30.0, np.inf, -np.inf],
        ]
    )
    expected = np.array([math.erf(a) for a in x])
    got = erf(x)
    nonzero = expected != 0
    rel = np.abs(got[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])
    assert rel.max() <= 1e-14, rel.max()
    assert np.all(got[~nonzero] == 0)


def test_gelu_is_the_exact_erf_form():
    # Phi(1) = 0.8413447460685429 (standard normal CDF); tanh form gives 0.8411919906082768
    np.testing.assert_allclose(
        gelu(np.array([1.0, -1.0, 0.0])),
        [0.8413447460685429, -0.15865525393145707, 0.0],
        rtol=1e-15,
        atol=0,
    )


def test_softmax_is_stable_for_large_logits():
    p = softmax(np.array([[1e4, 0.0, -1e4], [1e300, 1e300, 0.0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1, 0, 0], [0.5, 0.5, 0]])


def test_layer_norm_literal():
    p = {"n.weight": np.array([1.0, 2.0]), "n.bias": np.array([0.0, 1.0])}
    # x = [3, 1]: mean 2, biased variance 1 -> [1, -1] / sqrt(1 + eps)
    s = 1 / math.sqrt(1 + 1e-5)
    np.testing.assert_allclose(
        layer_norm(p, "n", np.array([[3.0, 1.0]]), 1e-5), [[s, -2 * s + 1]], rtol=1e-15
    )


def test_categorical_uses_strict_inequality_and_reports_margin():
    p = np.array([[0.25, 0.25, 0.5]] * 6)
    u = np.array([0.0, 0.2499, 0.25, 0.4, 0.5, 0.999999])
    route, margin = categorical(p, u)
    # u == cdf_0 = 0.25 is not < 0.25, so it falls in route 1
    assert route.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(margin, [0.25, 0.0001, 0.0, 0.1, 0.0, 0.499999], atol=1e-12)


def test_categorical_falls_back_to_last_route_when_rounding_leaves_none():
    p = np.array([[0.3, 0.3, 0.3999999]])  # sums to 0.9999999
    route, _ = categorical(p, np.array([0.99999995]))
    assert route.tolist() == [2]


def test_argmax_takes_first_of_ties_and_reports_gap():
    route, margin = argmax(np.array([[0.4, 0.4, 0.2], [0.1, 0.3, 0.6]]))
    assert route.tolist() == [0, 2]
    np.testing.assert_allclose(margin, [0.0, 0.3])
