"""One tiny case per rule with expected numbers worked out by hand.

Each case sets most weights to zero or the identity so that the output reduces
to a few scalar operations; the numbers in the comments were computed with
``math`` from those reductions, not with the reference. Every spec sets
``input_norm="none"``: the rule's own math, without the default's standardisation.
"""

import math

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec

EPS = 1e-5
GELU_1 = 0.8413447460685429  # 1 * Phi(1)
GELU_M1 = -0.15865525393145707


def zeros(s):
    return {p.name: np.zeros(p.shape) for p in s.params()} | {
        p.name: np.ones(p.shape)
        for p in s.params()
        if p.name.endswith("norm1.weight")
        or p.name.endswith("norm2.weight")
        or p.name == "norm.weight"
    }


def run(s, params, v, t, **kw):
    return fusion_ref.forward(s, params, np.array(v, float), np.array(t, float), **kw)


def test_gated_literal():
    s = spec.parse({"input_norm": "none", "kind": "gated", "dim": 1})
    p = {"gate.weight": np.array([[1.0, -1.0]]), "gate.bias": np.array([0.0])}
    # g = sigmoid(2 - 1) = 0.7310585786300049; out = 2 g + (1 - g)
    out, aux = run(s, p, [[2.0]], [[1.0]], return_aux=True)
    np.testing.assert_allclose(out, [[1.7310585786300048]], rtol=1e-15)
    np.testing.assert_allclose(aux["gate"], [[0.7310585786300049]], rtol=1e-15)


def test_film_literal_and_zero_weights_return_bias():
    s = spec.parse({"input_norm": "none", "kind": "film", "dim": 2})
    p = {
        "gamma.weight": np.eye(2),
        "gamma.bias": np.zeros(2),
        "beta.weight": np.zeros((2, 2)),
        "beta.bias": np.array([1.0, 2.0]),
    }
    # gamma = t = [3, 4]; out = [3 * 1 + 1, 4 * 1 + 2]
    np.testing.assert_allclose(run(s, p, [[1.0, 1.0]], [[3.0, 4.0]]), [[4.0, 6.0]])
    z = {
        "gamma.weight": np.zeros((2, 2)),
        "gamma.bias": np.zeros(2),
        "beta.weight": np.zeros((2, 2)),
        "beta.bias": np.array([5.0, 6.0]),
    }
    np.testing.assert_allclose(run(s, z, [[7.0, -3.0]], [[1.0, 2.0]]), [[5.0, 6.0]])


def test_concat_mlp_literal():
    one = spec.parse({"input_norm": "none", "kind": "concat_mlp", "dim": 1, "layers": 1})
    # 2 v + 3 t + 1
    np.testing.assert_allclose(
        run(
            one,
            {"mlp.0.weight": np.array([[2.0, 3.0]]), "mlp.0.bias": np.array([1.0])},
            [[1.0]],
            [[1.0]],
        ),
        [[6.0]],
    )
    two = spec.parse({"input_norm": "none", "kind": "concat_mlp", "dim": 1, "layers": 2, "hidden_mult": 1})
    p = {
        "mlp.0.weight": np.array([[1.0, 1.0]]),
        "mlp.0.bias": np.array([0.0]),
        "mlp.1.weight": np.array([[2.0]]),
        "mlp.1.bias": np.array([0.0]),
    }
    # 2 * GELU(0.5 + 0.5)
    np.testing.assert_allclose(run(two, p, [[0.5]], [[0.5]]), [[2 * GELU_1]], rtol=1e-15)


def test_modality_dropout_literal():
    s = spec.parse({"input_norm": "none", "kind": "modality_dropout", "dim": 1})
    p = {
        "mlp.0.weight": np.array([[1.0, 1.0]]),
        "mlp.0.bias": np.array([0.0]),
        "mlp.1.weight": np.array([[1.0]]),
        "mlp.1.bias": np.array([0.0]),
    }
    v, t = [[2.0], [2.0]], [[3.0], [3.0]]
    np.testing.assert_allclose(run(s, p, v, t), [[5.0], [5.0]])  # eval: relu(2 + 3)
    # drop_image 0.1 < 0.3 drops v for the whole batch; drop_text 0.9 keeps t
    noise = {"drop_image": np.array([0.1]), "drop_text": np.array([0.9])}
    out, aux = run(s, p, v, t, training=True, noise=noise, return_aux=True)
    np.testing.assert_allclose(out, [[3.0], [3.0]])
    assert aux["keep_image"].tolist() == [0.0, 0.0] and aux["keep_text"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(aux["keep_image_margin"], [0.2, 0.2])
    per = spec.parse({"input_norm": "none", "kind": "modality_dropout", "dim": 1, "drop_granularity": "sample"})
    noise = {"drop_image": np.array([0.1, 0.5]), "drop_text": np.array([0.9, 0.3])}
    # sample 0: v dropped -> 3; sample 1: u == p_txt keeps t (drop only where u < p) -> 5
    np.testing.assert_allclose(run(per, p, v, t, training=True, noise=noise), [[3.0], [5.0]])


def _encoder_case(s):
    p = zeros(s)
    for i in range(s.layers):
        p[f"encoder.{i}.attn.output.bias"] = np.array([1.0, 0.0, -1.0])
        p[f"encoder.{i}.ffn.down.bias"] = np.array([0.0, 2.0, 0.0])
    return p


def test_simple_literal():
    # attention and FFN weights are zero: each layer is x -> LN(LN(x + [1,0,-1]) + [0,2,0])
    # worked with math.sqrt per token, then the mean of the two tokens
    s1 = spec.parse({"input_norm": "none", "kind": "simple", "dim": 3, "heads": 1, "layers": 1})
    out = run(s1, _encoder_case(s1), [[3.0, 1.0, 0.0]], [[0.0, 2.0, 5.0]])
    np.testing.assert_allclose(
        out, [[-0.45704440770965904, 0.8833408009388652, -0.4262963932292063]], rtol=1e-12
    )
    s2 = spec.parse({"input_norm": "none", "kind": "simple", "dim": 3, "heads": 3, "layers": 2})
    out = run(s2, _encoder_case(s2), [[3.0, 1.0, 0.0]], [[0.0, 2.0, 5.0]])
    np.testing.assert_allclose(
        out, [[-0.27814151359049855, 1.2852304970418655, -1.007088983451367]], rtol=1e-12
    )


def test_transformer_concat_literal():
    s = spec.parse({"input_norm": "none", "kind": "transformer_concat", "dim": 3, "heads": 1, "layers": 1})
    p = _encoder_case(s)
    p["modality_embedding"] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    # tokens become [4, 1, 0] and [0, 2, 4], then as in test_simple_literal
    out = run(s, p, [[3.0, 1.0, 0.0]], [[0.0, 2.0, 5.0]])
    np.testing.assert_allclose(
        out, [[-0.4176395035462879, 0.9156475230012292, -0.4980080194549414]], rtol=1e-12
    )


def test_cross_attention_literal():
    s = spec.parse({"input_norm": "none", "kind": "cross_attention", "dim": 2, "heads": 1})
    p = zeros(s)
    for proj in ("query", "key", "value", "output"):
        p[f"attn.{proj}.weight"] = np.eye(2)
    # q = LN([1, 0]) = [a, -a], a = 0.5 / sqrt(0.25 + eps); scores q.k / sqrt(2): [2a/sqrt 2, 0]
    # w_v = sigmoid(sqrt(2) a) = 0.8044252328479342; z = w_v [2, 0]; FFN is zero
    out, aux = run(s, p, [[2.0, 0.0]], [[0.0, 0.0]], return_aux=True)
    np.testing.assert_allclose(out, [[1.6088504656958684, 0.0]], rtol=1e-12)
    np.testing.assert_allclose(
        aux["attention_weights"], [[[0.8044252328479342, 0.1955747671520658]]], rtol=1e-12
    )
    # zero key weights: uniform attention, z = mean of the values; FFN adds its output bias
    p["attn.key.weight"] = np.zeros((2, 2))
    p["ffn.down.bias"] = np.array([0.25, 0.5])
    np.testing.assert_allclose(run(s, p, [[1.0, 2.0]], [[3.0, -2.0]]), [[2.25, 0.5]], rtol=1e-12)


def _shomr_case(conf_bias, router_bias):
    s = spec.parse({"input_norm": "none", "kind": "shomr", "dim": 2, "heads": 1, "dropout": 0.0})
    p = zeros(s)
    p["confidence.out.bias"] = np.array(conf_bias)
    p["router.out.bias"] = np.array(router_bias)
    p["single.weight"] = np.eye(2)
    return s, p


def test_shomr_literal_hard_and_soft():
    v, t = [[1.0, -1.0]], [[3.0, 1.0]]
    # confidence softmax([5, 0]) = 0.9933 > 0.6: hard; router logits [10, 0, 0]: route 0 -> GELU(v)
    s, p = _shomr_case([5.0, 0.0], [10.0, 0.0, 0.0])
    out, aux = run(s, p, v, t, return_aux=True)
    np.testing.assert_allclose(out, [[GELU_1, GELU_M1]], rtol=1e-15)
    assert aux["hard"].tolist() == [1.0] and aux["route"].tolist() == [0]
    np.testing.assert_allclose(aux["hard_margin"], [1 / (1 + math.exp(-5)) - 0.6], rtol=1e-12)
    # route 1 -> GELU(t) = [GELU(3), GELU(1)]; GELU(3) = 3 Phi(3) = 2.99595030590511 (math.erf)
    s, p = _shomr_case([5.0, 0.0], [0.0, 10.0, 0.0])
    np.testing.assert_allclose(run(s, p, v, t), [[2.99595030590511, GELU_1]], rtol=1e-12)
    # equal confidence 0.5 <= 0.6: soft; attention and FFN are zero: LN((v + t) / 2) = LN([2, 0])
    s, p = _shomr_case([0.0, 0.0], [10.0, 0.0, 0.0])
    out, aux = run(s, p, v, t, return_aux=True)
    np.testing.assert_allclose(out, [[0.9999950000374997, -0.9999950000374997]], rtol=1e-12)
    assert aux["hard"].tolist() == [0.0] and aux["fallback"].tolist() == [0.0]


def test_energy_aware_adaptive_literal():
    s = spec.parse({"input_norm": "none", "kind": "energy_aware_adaptive", "dim": 2, "heads": 1,
                    "energy_budget_mJ": 1.0, "energy_weight": 0.01})
    p = zeros(s)
    p["router.out.bias"] = np.array([0.0, 10.0, 0.0])
    v, t = [[1.0, 2.0]], [[-3.0, 4.0]]
    out, aux = run(s, p, v, t, return_aux=True)
    np.testing.assert_allclose(out, t)  # route 1 returns t itself
    # r = softmax([0, 10, 0]); E = 3.2 r0 + 4.1 r1 + 9.8 r2; loss = 0.01 (E - 1)
    np.testing.assert_allclose(
        aux["route_probs"],
        [[4.539580782951091e-05, 0.9999092083843409, 4.539580782951091e-05]],
        rtol=1e-12,
    )
    np.testing.assert_allclose(aux["expected_energy"], [4.100217899877581], rtol=1e-12)
    np.testing.assert_allclose(aux["energy_loss"], 0.03100217899877581, rtol=1e-12)
    # route 2: FFN(LN(...)) with zero up weight: down(GELU(up.bias)); up.bias[0] = 1, down.weight[0, 0] = 1
    p["router.out.bias"] = np.array([0.0, 0.0, 10.0])
    p["ffn.up.bias"] = np.eye(8)[0]
    p["ffn.down.weight"] = np.eye(2, 8)
    p["ffn.down.bias"] = np.array([0.0, 0.5])
    np.testing.assert_allclose(run(s, p, v, t), [[GELU_1, 0.5]], rtol=1e-15)


@pytest.mark.parametrize(
    "progress, gate_u, expected_kept",
    [(0.0, 0.05, [0, 0, 0, 1]), (0.0, 0.15, [1, 1, 1, 1]), (1.0, 0.35, [0, 0, 0, 1])],
)
def test_energy_aware_adaptive_output_dropout_literal(progress, gate_u, expected_kept):
    s = spec.parse({"input_norm": "none", "kind": "energy_aware_adaptive", "dim": 2, "heads": 1, "dropout": 0.0})
    p = zeros(s)
    p["router.out.bias"] = np.array([10.0, 0.0, 0.0])  # route 0: out = v
    v = np.ones((4, 2))
    # p(progress) = min(0.4, 0.1 + 0.3 progress); a sample is zeroed when either flag < 0.5
    noise = {
        "route": np.zeros(4),
        "output_drop_gate": np.array([gate_u]),
        "output_drop_flags": np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.3], [0.5, 0.7]]),
    }
    out, aux = run(s, p, v, v, training=True, noise=noise, progress=progress, return_aux=True)
    assert aux["output_kept"].tolist() == expected_kept
    np.testing.assert_allclose(out, np.array(expected_kept, float)[:, None] * v)
