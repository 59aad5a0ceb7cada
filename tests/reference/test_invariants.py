import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from fusion_spec.fusion_ref import _layers as L
from tests.conftest import make_spec, perturbed_params, uniform_noise

KINDS = list(spec.RULES)
B, D = 6, 12


def inputs(seed=0, batch=B, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((batch, D)), scale * rng.standard_normal((batch, D))


def options(kind):
    return {"progress": 0.7} if kind == "energy_aware_adaptive" else {}


@pytest.mark.parametrize("kind", KINDS)
def test_every_rule_runs_in_eval_and_training(kind):
    s = make_spec(kind)
    p = perturbed_params(s)
    v, t = inputs()
    out, aux = fusion_ref.forward(s, p, v, t, return_aux=True)
    assert out.shape == (B, D) and out.dtype == np.float64
    assert {a.name for a in s.aux(B)} == set(aux)
    for a in s.aux(B):
        assert np.shape(aux[a.name]) == a.shape
    noise = uniform_noise(s, B, **options(kind))
    out_t, aux_t = fusion_ref.forward(
        s, p, v, t, training=True, noise=noise, return_aux=True, **options(kind)
    )
    assert out_t.shape == (B, D) and set(aux_t) == set(aux)
    assert np.array_equal(fusion_ref.forward(s, p, v, t), out)  # deterministic eval


@pytest.mark.parametrize("kind", KINDS)
def test_empty_batch_and_large_inputs(kind):
    s = make_spec(kind)
    p = perturbed_params(s)
    v, t = inputs(batch=0)
    out, aux = fusion_ref.forward(s, p, v, t, return_aux=True)
    assert out.shape == (0, D)
    for a in s.aux(0):
        assert np.shape(aux[a.name]) == a.shape
    v, t = inputs(scale=1e4)
    out = fusion_ref.forward(s, p, v, t)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("kind", KINDS)
def test_float32_inputs_compute_in_float64(kind):
    s = make_spec(kind)
    p = perturbed_params(s)
    v, t = inputs()
    a = fusion_ref.forward(s, p, v.astype(np.float32), t.astype(np.float32))
    b = fusion_ref.forward(
        s,
        {k: x.astype(np.float64) for k, x in p.items()},
        v.astype(np.float32).astype(np.float64),
        t.astype(np.float32).astype(np.float64),
    )
    assert a.dtype == np.float64 and np.array_equal(a, b)


def test_gated_output_lies_between_v_and_t():
    s = make_spec("gated")
    v, t = inputs(3)
    out = fusion_ref.forward(s, perturbed_params(s, scale=1.0), v, t)
    lo, hi = np.minimum(v, t), np.maximum(v, t)
    assert np.all(out >= lo - 1e-15) and np.all(out <= hi + 1e-15)


def test_film_with_zero_weights_returns_its_bias():
    s = make_spec("film")
    p = perturbed_params(s)
    p["gamma.weight"][:] = 0
    p["gamma.bias"][:] = 0
    p["beta.weight"][:] = 0
    v, t = inputs()
    np.testing.assert_array_equal(
        fusion_ref.forward(s, p, v, t), np.broadcast_to(p["beta.bias"], (B, D))
    )


def test_film_is_asymmetric_and_simple_is_symmetric():
    v, t = inputs()
    f = make_spec("film")
    pf = perturbed_params(f)
    assert not np.allclose(fusion_ref.forward(f, pf, v, t), fusion_ref.forward(f, pf, t, v))
    s = make_spec("simple")
    ps = perturbed_params(s)
    np.testing.assert_allclose(
        fusion_ref.forward(s, ps, v, t), fusion_ref.forward(s, ps, t, v), atol=1e-12
    )
    tc = make_spec("transformer_concat")
    pt = perturbed_params(tc)
    assert not np.allclose(fusion_ref.forward(tc, pt, v, t), fusion_ref.forward(tc, pt, t, v))


def test_transformer_concat_without_embeddings_equals_simple():
    tc = make_spec("transformer_concat", modality_embeddings=False, layers=2)
    s = make_spec("simple", layers=2)
    p = perturbed_params(s)
    v, t = inputs()
    np.testing.assert_array_equal(fusion_ref.forward(tc, p, v, t), fusion_ref.forward(s, p, v, t))


@pytest.mark.parametrize("kind", ["shomr", "energy_aware_adaptive"])
def test_probabilities_sum_to_one(kind):
    s = make_spec(kind)
    v, t = inputs()
    _, aux = fusion_ref.forward(s, perturbed_params(s), v, t, return_aux=True)
    np.testing.assert_allclose(aux["route_probs"].sum(-1), 1.0, rtol=1e-15)
    assert np.all(aux["route_probs"] > 0)
    if kind == "shomr":
        np.testing.assert_allclose(aux["confidence"].sum(-1), 1.0, rtol=1e-15)


def _shomr_paths(s, p, v, t):
    """The soft and the three hard paths, written out from the spec's docstring."""
    eps = s.layer_norm_eps
    h = np.concatenate([v, t], -1)
    c = L.softmax(L.linear(p, "confidence.out", L.gelu(L.linear(p, "confidence.hidden", h))))
    x = L.tokens(v, t)
    a = L.attention(p, "attn", x, x, s.heads)[0].mean(1)
    soft = L.layer_norm(p, "norm1", c[:, :1] * v + c[:, 1:] * t + a, eps)
    g = L.sigmoid(L.linear(p, "gate", h))
    both = L.layer_norm(p, "norm2", g * v + (1 - g) * t + a, eps)
    return {
        "soft": soft + L.feed_forward(p, "ffn", soft),
        0: L.gelu(L.linear(p, "single", v)),
        1: L.gelu(L.linear(p, "single", t)),
        2: both + L.feed_forward(p, "ffn", both),
    }


def test_shomr_forced_routing_takes_the_documented_paths():
    s = make_spec("shomr", routing_temperature=0.7)
    p = perturbed_params(s, scale=0.5)
    v, t = inputs(5)
    paths = _shomr_paths(s, p, v, t)
    out, aux = fusion_ref.forward(s, p, v, t, use_hard_routing=False, return_aux=True)
    assert aux["hard"].tolist() == [0.0] * B
    np.testing.assert_allclose(out, paths["soft"], rtol=1e-13)
    out, aux = fusion_ref.forward(s, p, v, t, use_hard_routing=True, return_aux=True)
    assert aux["hard"].tolist() == [1.0] * B and np.all(np.isinf(aux["hard_margin"]))
    expected = np.stack([paths[k][b] for b, k in enumerate(aux["route"])])
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    # training: each of the three routes taken, from the noise
    r = aux["route_probs"]
    u = np.where(np.arange(B) % 2 == 0, 0.0, 1.0 - r[:, 2] / 2)  # inside route 0, inside route 2
    noise = {"route": u}
    cdf0 = r[:, 0]
    out, aux = fusion_ref.forward(
        s, p, v, t, training=True, noise=noise, use_hard_routing=True, return_aux=True
    )
    assert set(aux["route"][[0, 2, 4]]) == {0} and set(aux["route"][[1, 3, 5]]) == {2}
    np.testing.assert_allclose(aux["route_margin"][[0, 2, 4]], cdf0[[0, 2, 4]], rtol=1e-12)
    np.testing.assert_allclose(aux["route_margin"][[1, 3, 5]], r[[1, 3, 5], 2] / 2, rtol=1e-9)
    expected = np.stack([paths[k][b] for b, k in enumerate(aux["route"])])
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_shomr_automatic_routing_mixes_hard_and_soft():
    s = make_spec("shomr", confidence_threshold=0.55)
    p = perturbed_params(s, scale=0.5)
    v, t = inputs(2, batch=40)
    out, aux = fusion_ref.forward(s, p, v, t, return_aux=True)
    hard = aux["hard"].astype(bool)
    assert hard.any() and (~hard).any()
    np.testing.assert_array_equal(hard, aux["confidence"].max(-1) > 0.55)
    np.testing.assert_allclose(aux["hard_margin"], np.abs(aux["confidence"].max(-1) - 0.55))
    soft_only = fusion_ref.forward(s, p, v, t, use_hard_routing=False)
    hard_only = fusion_ref.forward(s, p, v, t, use_hard_routing=True)
    np.testing.assert_array_equal(out, np.where(hard[:, None], hard_only, soft_only))


def test_shomr_fallback_unreachable_by_default_and_fires_when_threshold_raised():
    v, t = inputs(batch=20)
    s = make_spec("shomr")
    _, aux = fusion_ref.forward(
        s, perturbed_params(s), v, t, use_hard_routing=False, return_aux=True
    )
    assert aux["confidence"].max(-1).min() >= 0.5 and not aux["fallback"].any()
    high = make_spec("shomr", fallback_threshold=1.0)
    out, aux = fusion_ref.forward(
        high, perturbed_params(high), v, t, use_hard_routing=False, return_aux=True
    )
    assert aux["fallback"].all()
    np.testing.assert_array_equal(out, 0.5 * (v + t))
    off = make_spec("shomr", fallback_threshold=1.0, fallback=False)
    _, aux = fusion_ref.forward(
        off, perturbed_params(off), v, t, use_hard_routing=False, return_aux=True
    )
    assert not aux["fallback"].any()


def test_shomr_temperature_changes_route_probs():
    v, t = inputs()
    base = make_spec("shomr")
    p = perturbed_params(base, scale=0.5)
    _, a1 = fusion_ref.forward(base, p, v, t, return_aux=True)
    _, a2 = fusion_ref.forward(
        make_spec("shomr", routing_temperature=0.25), p, v, t, return_aux=True
    )
    logits = np.log(a1["route_probs"])
    np.testing.assert_allclose(a2["route_probs"], L.softmax(logits / 0.25), rtol=1e-10)


def test_energy_aware_adaptive_routes_and_energy():
    s = make_spec("energy_aware_adaptive", energy_budget_mJ=3.0)
    p = perturbed_params(s, scale=0.5)
    v, t = inputs(batch=30)
    out, aux = fusion_ref.forward(s, p, v, t, return_aux=True)
    r = aux["route_probs"]
    np.testing.assert_array_equal(aux["route"], r.argmax(-1))
    expected = r @ np.array([3.2, 4.1, 9.8])
    np.testing.assert_allclose(aux["expected_energy"], expected, rtol=1e-15)
    np.testing.assert_allclose(
        aux["energy_loss"], s.energy_weight * max(0.0, expected.mean() - 3.0), rtol=1e-14
    )
    # forced routes through the noise: route 0 returns v and route 1 returns t bit for bit
    noise = {"route": np.zeros(30)}
    out0 = fusion_ref.forward(s, p, v, t, training=True, noise=noise)
    np.testing.assert_array_equal(out0, v)
    out1 = fusion_ref.forward(s, p, v, t, training=True, noise={"route": r[:, 0] + 1e-9})
    np.testing.assert_array_equal(out1, t)
    generous = make_spec("energy_aware_adaptive", energy_budget_mJ=100.0)
    _, aux = fusion_ref.forward(generous, p, v, t, return_aux=True)
    assert aux["energy_loss"] == 0.0
    trainable = make_spec(
        "energy_aware_adaptive", energy_budget_mJ=3.0, energy_weight_trainable=True
    )
    pt = {**p, "energy_weight": np.array(0.5, np.float32)}
    _, aux_t = fusion_ref.forward(trainable, pt, v, t, return_aux=True)
    np.testing.assert_allclose(
        aux_t["energy_loss"],
        50 * aux["energy_loss"] if aux["energy_loss"] else 0.5 * max(0.0, expected.mean() - 3.0),
        rtol=1e-12,
    )


def test_energy_aware_adaptive_eval_sampling_is_opt_in():
    s = make_spec("energy_aware_adaptive", eval_routing="sample")
    p = perturbed_params(s)
    v, t = inputs()
    with pytest.raises(ValueError, match="pass noise=.*route"):
        fusion_ref.forward(s, p, v, t)
    out = fusion_ref.forward(s, p, v, t, noise={"route": np.zeros(B)})
    np.testing.assert_array_equal(out, v)


def test_modality_dropout_batch_mode_drops_the_whole_batch():
    s = make_spec("modality_dropout", p_img=0.5, p_txt=0.5)
    p = perturbed_params(s)
    v, t = inputs()
    _, aux = fusion_ref.forward(
        s,
        p,
        v,
        t,
        training=True,
        return_aux=True,
        noise={"drop_image": np.array([0.2]), "drop_text": np.array([0.7])},
    )
    assert aux["keep_image"].tolist() == [0.0] * B and aux["keep_text"].tolist() == [1.0] * B
    out = fusion_ref.forward(
        s,
        p,
        v,
        t,
        training=True,
        noise={"drop_image": np.array([0.2]), "drop_text": np.array([0.2])},
    )
    np.testing.assert_allclose(out, fusion_ref.forward(s, p, 0 * v, 0 * t))


@pytest.mark.parametrize(
    "v_shape, t_shape, dtype, match",
    [
        (
            (4, 11),
            (4, 12),
            np.float64,
            r"gated: argument 'v' expected shape \(B, 12\) or \(B, L_v, 12\); received shape \(4, 11\)",
        ),
        (
            (4, 12),
            (12,),
            np.float64,
            r"gated: argument 't' expected shape \(B, 12\) or \(B, L_t, 12\); received shape \(12,\)",
        ),
        (
            (4, 12),
            (3, 12),
            np.float64,
            r"gated: arguments 'v' and 't' expected equal batch sizes; received v \(4, 12\) and t \(3, 12\)",
        ),
        (
            (4, 12),
            (4, 12),
            np.int64,
            r"gated: argument 'v' expected a floating dtype; received int64",
        ),
    ],
)
def test_input_errors_name_rule_argument_expected_and_received(v_shape, t_shape, dtype, match):
    s = make_spec("gated")
    with pytest.raises(ValueError, match=match):
        fusion_ref.forward(
            s, spec.init_params(s), np.zeros(v_shape, dtype), np.zeros(t_shape, dtype)
        )


def test_noise_errors():
    s = make_spec("shomr")
    p = spec.init_params(s)
    v, t = inputs()
    with pytest.raises(ValueError, match=r"shomr: this call is stochastic.*route \(6,\)"):
        fusion_ref.forward(s, p, v, t, training=True)
    with pytest.raises(ValueError, match=r"noise 'route' expected shape \(6,\); received \(5,\)"):
        fusion_ref.forward(s, p, v, t, training=True, noise={"route": np.zeros(5)})
    with pytest.raises(
        ValueError, match=r"noise 'route' expected values in \[0, 1\); received min 0.0, max 1.0"
    ):
        fusion_ref.forward(
            s, p, v, t, training=True, noise={"route": np.array([0, 0, 0, 0, 0, 1.0])}
        )
    with pytest.raises(
        spec.InputError,
        match=r"argument 'noise' expected names \['route'\] for this call; "
        r"received \['other', 'route'\] \(unexpected \['other'\]\)",
    ):
        fusion_ref.forward(
            s, p, v, t, training=True, noise={"route": np.zeros(6), "other": np.zeros(1)}
        )
    with pytest.raises(
        spec.InputError,
        match=r"argument 'noise' expected names \[\] for this call; received \['route'\]",
    ):
        fusion_ref.forward(s, p, v, t, noise={"route": np.zeros(6)})


def test_training_requires_dropout_zero():
    s = make_spec("cross_attention", dropout=0.1)
    with pytest.raises(
        ValueError,
        match=r"cross_attention: training mode with dropout=0.1.*expected 0.0, received 0.1",
    ):
        fusion_ref.forward(s, spec.init_params(s), *inputs(), training=True)
    fusion_ref.forward(s, spec.init_params(s), *inputs())  # eval ignores dropout
    one = make_spec("concat_mlp", layers=1, dropout=0.5)  # a single linear has no dropout
    fusion_ref.forward(one, spec.init_params(one), *inputs(), training=True)


def test_params_are_checked():
    s = make_spec("film")
    p = spec.init_params(s)
    del p["beta.bias"]
    with pytest.raises(
        spec.WeightsError, match=r"film: params do not match the spec: missing \['beta.bias'\]"
    ):
        fusion_ref.forward(s, p, *inputs())
