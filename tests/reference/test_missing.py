"""The reference's presence mask: each rule's missing-modality semantics, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from fusion_spec.fusion_ref import _layers as L
from tests.backend_cases import (
    CASES,
    KIND_CASES,
    MISSING_VARIANTS,
    PRESENT,
    garbage_in_absent_rows,
    inputs,
    make_spec,
    perturbed_params,
)

ALL_SPECS = {case: CASES[case] for case in KIND_CASES} | MISSING_VARIANTS
IMAGE_ONLY, TEXT_ONLY, NEITHER = PRESENT[1], PRESENT[2], PRESENT[3]
ROWS = {
    "both": np.flatnonzero(PRESENT.all(1)),
    "image": np.flatnonzero(PRESENT[:, 0] & ~PRESENT[:, 1]),
    "text": np.flatnonzero(PRESENT[:, 1] & ~PRESENT[:, 0]),
    "neither": np.flatnonzero(~PRESENT.any(1)),
}


def setup(fields):
    s = spec.parse({"input_norm": "none", **fields})  # the rule pages' per-sample math
    return s, {k: v.astype(np.float64) for k, v in perturbed_params(s).items()}, *inputs(s)


def call(s, p, v, t, present, **kw):
    return fusion_ref.forward(s, p, v, t, present, return_aux=True, **kw)


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_all_true_mask_is_bit_identical_to_no_mask(case):
    s, p, v, t = setup(ALL_SPECS[case])
    out, aux = fusion_ref.forward(s, p, v, t, return_aux=True)
    masked, masked_aux = call(s, p, v, t, np.ones((len(v), 2), bool))
    assert np.array_equal(out, masked)
    assert set(masked_aux) == set(aux) | {"neither"}
    for name, value in aux.items():
        assert np.array_equal(value, masked_aux[name]), name


@pytest.mark.parametrize("fill", [np.nan, np.inf, -3e38, 0.0])
@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_absent_rows_never_matter(case, fill):
    s, p, v, t = setup(ALL_SPECS[case])
    out, aux = call(s, p, v, t, PRESENT)
    out2, aux2 = call(s, p, *garbage_in_absent_rows(v, t, PRESENT, fill), PRESENT)
    assert np.array_equal(out, out2)
    for name, value in aux.items():
        assert np.array_equal(value, aux2[name]), name
    assert np.all(np.isfinite(out))
    assert np.all(out[ROWS["neither"]] == 0.0)
    np.testing.assert_array_equal(aux["neither"], ~PRESENT.any(1))


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_samples_with_both_are_the_rule(case):
    s, p, v, t = setup(ALL_SPECS[case])
    out, _ = call(s, p, v, t, PRESENT)
    ref = fusion_ref.forward(s, p, v, t)
    np.testing.assert_array_equal(out[ROWS["both"]], ref[ROWS["both"]])


def test_gated_present_alone_outputs_the_present_modality():
    s, p, v, t = setup(CASES["gated"])
    out, aux = call(s, p, v, t, PRESENT)
    np.testing.assert_array_equal(out[ROWS["image"]], v[ROWS["image"]])
    np.testing.assert_array_equal(out[ROWS["text"]], t[ROWS["text"]])
    assert np.all(aux["gate"][ROWS["image"]] == 1.0) and np.all(aux["gate"][ROWS["text"]] == 0.0)


def test_gated_zero_fill_scales_the_lone_modality_by_its_gate():
    s, p, v, t = setup({**CASES["gated"], "missing_modality": "zero_fill"})
    out, aux = call(s, p, v, t, PRESENT)
    i = ROWS["image"]
    g = L.sigmoid(L.linear(p, "gate", np.concatenate([v[i], 0 * t[i]], axis=-1)))
    np.testing.assert_allclose(out[i], g * v[i], rtol=1e-13)  # float64: rounding only


def test_film_identity_without_text_and_shift_alone_without_image():
    s, p, v, t = setup({**CASES["film"], "missing_modality": "identity"})
    out, aux = call(s, p, v, t, PRESENT)
    np.testing.assert_array_equal(out[ROWS["image"]], v[ROWS["image"]])
    i = ROWS["text"]
    np.testing.assert_allclose(out[i], L.linear(p, "beta", t[i]), rtol=1e-13)
    assert np.all(aux["gamma"][ROWS["image"]] == 1.0) and np.all(aux["beta"][ROWS["image"]] == 0)


def test_film_zero_fill_modulates_the_image_by_the_biases():
    s, p, v, t = setup(CASES["film"])
    assert s.missing_modality == "zero_fill"  # the default
    out, _ = call(s, p, v, t, PRESENT)
    i = ROWS["image"]
    np.testing.assert_allclose(out[i], p["gamma.bias"] * v[i] + p["beta.bias"], rtol=1e-13)


def test_concat_mlp_zero_fills():
    s, p, v, t = setup(CASES["concat_mlp"])
    out, _ = call(s, p, v, t, PRESENT)
    v0, t0 = garbage_in_absent_rows(v, t, PRESENT, 0.0)
    keep = ~np.isin(np.arange(len(v)), ROWS["neither"])
    np.testing.assert_array_equal(out[keep], fusion_ref.forward(s, p, v0, t0)[keep])


def test_modality_dropout_drop_absent_is_dropped_in_eval_and_composes_with_training_drops():
    s, p, v, t = setup({**CASES["modality_dropout_sample"], "missing_modality": "drop"})
    out, aux = call(s, p, v, t, PRESENT)
    np.testing.assert_array_equal(aux["keep_image"], PRESENT[:, 0])
    np.testing.assert_array_equal(aux["keep_text"], PRESENT[:, 1])
    u = {"drop_image": np.linspace(0.05, 0.95, len(v)), "drop_text": np.linspace(0.9, 0.1, len(v))}
    out, aux = call(s, p, v, t, PRESENT, training=True, noise=u)
    drawn_v, drawn_t = u["drop_image"] >= s.p_img, u["drop_text"] >= s.p_txt
    np.testing.assert_array_equal(aux["keep_image"], drawn_v & PRESENT[:, 0])
    np.testing.assert_array_equal(aux["keep_text"], drawn_t & PRESENT[:, 1])
    assert np.all(np.isinf(aux["keep_image_margin"][~PRESENT[:, 0]]))
    # dropped by the draw or absent: the same input to the MLP
    dropped_v = np.where((drawn_v & PRESENT[:, 0])[:, None], v, 0.0)
    dropped_t = np.where((drawn_t & PRESENT[:, 1])[:, None], t, 0.0)
    h = np.concatenate([dropped_v, dropped_t], axis=-1)
    expected = L.linear(p, "mlp.1", L.relu(L.linear(p, "mlp.0", h)))
    rows = ~np.isin(np.arange(len(v)), ROWS["neither"])
    np.testing.assert_allclose(out[rows], expected[rows], rtol=1e-12)


def test_modality_dropout_zero_fill_keeps_follow_the_draws_alone():
    """'zero_fill' (the default): an absent modality goes through the draws like a
    present one, so the keeps are the draws (a sample with neither: 0); with no input
    norm its row is 0 and the output is 'drop''s."""
    s, p, v, t = setup(CASES["modality_dropout_sample"])
    assert s.missing_modality == "zero_fill"
    some = PRESENT.any(1)
    u = {"drop_image": np.linspace(0.05, 0.95, len(v)), "drop_text": np.linspace(0.9, 0.1, len(v))}
    out, aux = call(s, p, v, t, PRESENT, training=True, noise=u)
    np.testing.assert_array_equal(aux["keep_image"], (u["drop_image"] >= s.p_img) & some)
    np.testing.assert_array_equal(aux["keep_text"], (u["drop_text"] >= s.p_txt) & some)
    assert np.all(np.isinf(aux["keep_image_margin"][~some]))
    assert np.all(np.isfinite(aux["keep_image_margin"][some]))
    dropped, _ = call(s.replace(missing_modality="drop"), p, v, t, PRESENT, training=True, noise=u)
    np.testing.assert_array_equal(out, dropped)
    eval_keeps = call(s, p, v, t, PRESENT)[1]["keep_text"]
    np.testing.assert_array_equal(eval_keeps, some)


@pytest.mark.parametrize("kind", ["simple", "transformer_concat"])
def test_encoder_key_mask_reads_the_present_token_alone(kind):
    s, p, v, t = setup({**CASES[kind], "missing_modality": "key_mask"})
    out, _ = call(s, p, v, t, PRESENT)
    for rows, x, k in ((ROWS["image"], v, 0), (ROWS["text"], t, 1)):
        seq = x[rows][:, None]  # (N, 1, D): the present token alone
        if kind == "transformer_concat":
            seq = seq + p["modality_embedding"][k]
        for i in range(s.layers):
            seq = L.encoder_layer(p, f"encoder.{i}", seq, s.heads, s.layer_norm_eps)
        np.testing.assert_allclose(out[rows], seq[:, 0], rtol=1e-10, atol=1e-12)


def test_cross_attention_key_mask_attends_to_the_present_token_only():
    s, p, v, t = setup(CASES["cross_attention"])
    out, aux = call(s, p, v, t, PRESENT)
    w = aux["attention_weights"]  # (B, h, 2)
    assert np.all(w[ROWS["image"], :, 1] == 0.0) and np.all(w[ROWS["image"], :, 0] == 1.0)
    assert np.all(w[ROWS["text"], :, 0] == 0.0) and np.all(w[ROWS["neither"]] == 0.0)
    i = ROWS["text"]
    # one key: z is the value projection of t, passed through the output projection
    z = L.linear(p, "attn.output", L.linear(p, "attn.value", t[i]))
    expected = z + L.feed_forward(p, "ffn", L.layer_norm(p, "norm2", z, s.layer_norm_eps))
    np.testing.assert_allclose(out[i], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"use_hard_routing": False}, {"use_hard_routing": True}])
def test_shomr_routes_a_lone_modality_to_its_own_path(options):
    s, p, v, t = setup(CASES["shomr"])
    for training in (False, True):
        noise = {"route": np.linspace(0.01, 0.99, len(v))} if training else None
        out, aux = call(s, p, v, t, PRESENT, training=training, noise=noise, **options)
        for key, x, k in (("image", v, 0), ("text", t, 1)):
            i = ROWS[key]
            np.testing.assert_array_equal(aux["route"][i], k)
            np.testing.assert_array_equal(aux["hard"][i], 1.0)
            np.testing.assert_array_equal(aux["route_probs"][i], np.eye(3)[[k] * len(i)])
            np.testing.assert_allclose(out[i], L.gelu(L.linear(p, "single", x[i])), rtol=1e-13)
        assert np.all(aux["route"][ROWS["neither"]] == -1)
        assert np.all(aux["route_probs"][ROWS["neither"]] == 0)


def test_energy_aware_adaptive_routes_a_lone_modality_to_itself():
    s, p, v, t = setup(CASES["energy_aware_adaptive"])
    for training in (False, True):
        noise = {"route": np.linspace(0.01, 0.99, len(v))} if training else None
        out, aux = call(s, p, v, t, PRESENT, training=training, noise=noise)
        np.testing.assert_array_equal(out[ROWS["image"]], v[ROWS["image"]])
        np.testing.assert_array_equal(out[ROWS["text"]], t[ROWS["text"]])
        np.testing.assert_array_equal(aux["route"][ROWS["image"]], 0)
        np.testing.assert_array_equal(aux["route"][ROWS["text"]], 1)
        costs = np.asarray(s.energy_costs_mJ)
        np.testing.assert_array_equal(aux["expected_energy"][ROWS["image"]], costs[0])
        np.testing.assert_array_equal(aux["expected_energy"][ROWS["neither"]], 0.0)


def test_present_accepts_integer_zero_one():
    s, p, v, t = setup(CASES["gated"])
    out, _ = call(s, p, v, t, PRESENT)
    out2, _ = call(s, p, v, t, PRESENT.astype(np.int64))
    assert np.array_equal(out, out2)


@pytest.mark.parametrize(
    "present, message",
    [
        (np.ones((8, 3), bool), r"argument 'present' expected shape \(B, 2\); received shape \(8, 3\)"),
        (np.ones((7, 2), bool), r"'v' and 'present' expected equal batch sizes"),
        (np.full((8, 2), 2), r"'present' expected booleans \(or 0/1\); received values \[2\]"),
        (np.ones((8, 2), np.float32), r"'present' expected a bool or an integer dtype; .*float32"),
    ],
)
def test_bad_present_is_named(present, message):
    s, p, v, t = setup(CASES["gated"])
    with pytest.raises(spec.InputError, match="gated: .*" + message):
        fusion_ref.forward(s, p, v, t, present)


def test_every_rule_documents_each_missing_modality_value():
    for kind, cls in spec.RULES.items():
        values = set(cls.model_fields["missing_modality"].annotation.__args__)
        assert set(cls.missing_semantics) == values, kind
        assert all("$" in text for text in cls.missing_semantics.values()), kind
        assert make_spec(kind).missing_modality in values


def _normalised(s, p, x, present, modality):
    """``x`` standardised by hand with the running statistics (an eval call)."""
    mean = p[f"input_norm.{modality}.running_mean"]
    std = np.sqrt(p[f"input_norm.{modality}.running_var"] + s.input_norm_eps)
    y = (x.astype(np.float64) - mean) / std
    fill = -mean / std if s.input_norm_absent == "zero" else np.zeros_like(mean)
    return np.where(present[:, None], y, fill)


@pytest.mark.parametrize("absent", ["zero", "mean"])
@pytest.mark.parametrize("kind", ["film", "concat_mlp", "modality_dropout"])
def test_input_norm_puts_an_absent_row_where_input_norm_absent_says(kind, absent):
    """Eval with running statistics: a zero-filling rule under the mask computes the rule,
    without a norm, on the rows normalised by hand, an absent one at ``-mu / sigma``
    ("zero") or at 0 ("mean")."""
    s, p, v, t = setup(CASES[kind])
    s = s.replace(input_norm="batch", input_norm_absent=absent)
    rng = np.random.default_rng(3)
    for modality in ("image", "text"):  # statistics off zero, or the fills coincide
        p[f"input_norm.{modality}.running_mean"] = 2.0 + rng.standard_normal(s.dim)
        p[f"input_norm.{modality}.running_var"] = rng.uniform(0.5, 2.0, s.dim)
    out, _ = call(s, p, v, t, PRESENT)
    plain = s.replace(input_norm="none")
    by_hand = fusion_ref.forward(
        plain,
        {k: a for k, a in p.items() if not k.startswith("input_norm.")},
        _normalised(s, p, np.nan_to_num(v), PRESENT[:, 0], "image"),
        _normalised(s, p, np.nan_to_num(t), PRESENT[:, 1], "text"),
    )
    some = PRESENT.any(1)  # a sample with neither outputs zeros
    np.testing.assert_allclose(out[some], by_hand[some], rtol=1e-12, atol=1e-12)
    assert not np.allclose(out[~PRESENT.all(1) & some], fusion_ref.forward(
        s.replace(input_norm_absent="zero" if absent == "mean" else "mean"), p, v, t, PRESENT
    )[~PRESENT.all(1) & some])  # and the other fill computes something else


@pytest.mark.parametrize(
    "kind, fields",
    [("gated", {}), ("modality_dropout", {"missing_modality": "drop"}), ("shomr", {}),
     ("cross_attention", {})],
)
def test_rules_that_never_read_an_absent_row_ignore_input_norm_absent(kind, fields):
    """A gate, a drop, a route or a key mask never reads the absent row: both fills
    compute the same, bit for bit (the field changes only the zero-filling rules)."""
    s, p, v, t = setup({**CASES[kind], **fields})
    s = s.replace(input_norm="batch")
    p = {**p, **{k: np.full(s.dim, 2.0) if k.endswith("mean") else np.ones(s.dim)
                 for k in (f"input_norm.{m}.running_{x}" for m in ("image", "text")
                           for x in ("mean", "var"))}}
    a = call(s, p, v, t, PRESENT)
    b = call(s.replace(input_norm_absent="mean"), p, v, t, PRESENT)
    assert np.array_equal(a[0], b[0])
