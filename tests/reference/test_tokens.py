"""The reference on token sequences ``(B, L, D)`` with padding masks.

What a rule does with tokens (docs/conventions.md, "Token sequences"): ``simple``,
``transformer_concat`` and ``cross_attention`` attend over every real token; the
others read each modality's masked mean. Padding is never read; a modality whose
tokens are all padding is absent; one token without a mask is the vector rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from tests.backend_cases import (
    BATCH,
    CASES,
    IMAGE_MASK,
    MISSING_VARIANTS,
    PRESENT,
    TEXT_MASK,
    garbage_in_padding,
    inputs,
    perturbed_params,
    token_inputs,
)

ALL_SPECS = CASES | MISSING_VARIANTS
ATTENDING = {"simple", "transformer_concat", "cross_attention"}


def setup(fields, **extra):
    s = spec.parse({**fields, **extra})
    return s, {k: a.astype(np.float64) for k, a in perturbed_params(s).items()}


def noise(s, batch, training, seed=0, **options):
    rng = np.random.default_rng(seed + 7)
    return {n.name: rng.random(n.shape) for n in s.noise(batch, training=training, **options)}


def call(s, p, v, t, present=None, *, training=False, u=None, **kw):
    if u is None and s.noise(v.shape[0], training=training):
        u = noise(s, v.shape[0], training)
    return fusion_ref.forward(
        s, p, v, t, present, training=training, noise=u, return_aux=True, **kw
    )


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=k)


@pytest.mark.parametrize("case", list(ALL_SPECS))
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("with_present", [False, True])
def test_one_token_without_mask_is_the_vector_rule_bit_for_bit(case, training, with_present):
    s, p = setup(ALL_SPECS[case])
    v, t = inputs(s)
    present = PRESENT if with_present else None
    u = noise(s, BATCH, training)
    vector = call(s, p, v, t, present, training=training, u=u)
    assert_same(call(s, p, v[:, None], t[:, None], present, training=training, u=u), vector)
    assert_same(call(s, p, v[:, None], t, present, training=training, u=u), vector)


@pytest.mark.parametrize("case", list(ALL_SPECS))
@pytest.mark.parametrize("fill", [np.nan, np.inf, 1e30])
def test_padding_tokens_are_never_read(case, fill):
    s, p = setup(ALL_SPECS[case])
    v, t = token_inputs(s)
    masks = dict(image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    clean = call(s, p, v, t, **masks)
    assert np.isfinite(clean[0]).all()
    assert_same(call(s, p, *garbage_in_padding(v, t, IMAGE_MASK, TEXT_MASK, fill), **masks), clean)


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_each_sample_is_its_real_tokens_alone(case):
    """Sample b equals a batch of one holding only its real tokens (no padding at all):
    padding changes neither the result nor other samples'."""
    s, p = setup(ALL_SPECS[case])
    v, t = token_inputs(s)
    u = noise(s, BATCH, False)
    out, aux = call(s, p, v, t, u=u, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    for b in range(BATCH):
        vb, tb = v[b : b + 1, IMAGE_MASK[b]], t[b : b + 1, TEXT_MASK[b]]
        present = np.array([[vb.shape[1] > 0, tb.shape[1] > 0]])
        # an empty sequence is a missing modality: give it one (zero, absent) token
        vb = vb if vb.shape[1] else np.zeros((1, 1, v.shape[2]), np.float32)
        tb = tb if tb.shape[1] else np.zeros((1, 1, t.shape[2]), np.float32)
        ub = {k: x[b : b + 1] if x.shape[0] == BATCH else x for k, x in u.items()}
        alone, alone_aux = call(s, p, vb, tb, present, u=ub)
        np.testing.assert_allclose(out[b], alone[0], rtol=1e-12, atol=1e-12, err_msg=f"sample {b}")
        for k, a in alone_aux.items():
            if k == "attention_weights":  # the weights of sample b's keys, in order
                zero_fill = s.missing_modality == "zero_fill"
                keys, alone_keys = [], []
                for mask, x in ((IMAGE_MASK[b], vb), (TEXT_MASK[b], tb)):
                    absent = not mask.any()
                    keys.append(mask | (absent and zero_fill) * (np.arange(mask.size) == 0))
                    alone_keys.append(np.full(x.shape[1], not absent or zero_fill))
                keys, alone_keys = np.concatenate(keys), np.concatenate(alone_keys)
                np.testing.assert_allclose(aux[k][b][:, keys], a[0][:, alone_keys], atol=1e-12)
                assert not aux[k][b][:, ~keys].any()
            elif np.ndim(a):  # per sample (energy_loss is one value for the batch)
                np.testing.assert_allclose(aux[k][b], a[0], atol=1e-12, err_msg=f"{k} sample {b}")


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_all_padding_is_the_absent_modality(case):
    """A modality whose tokens are all padding computes what ``present`` False computes."""
    s, p = setup(ALL_SPECS[case])
    v, t = token_inputs(s)
    image_mask, text_mask = IMAGE_MASK.copy(), TEXT_MASK.copy()
    image_mask[PRESENT[:, 0] == 0] = False
    text_mask[PRESENT[:, 1] == 0] = False
    by_padding = call(s, p, v, t, image_mask=image_mask, text_mask=text_mask)
    keep = IMAGE_MASK | ~PRESENT[:, :1], TEXT_MASK | ~PRESENT[:, 1:]
    by_present = call(s, p, v, t, PRESENT, image_mask=keep[0], text_mask=keep[1])
    both = call(s, p, v, t, PRESENT, image_mask=image_mask, text_mask=text_mask)
    for other in (by_present, both):
        np.testing.assert_allclose(by_padding[0], other[0], rtol=1e-12, atol=1e-12)
        for k in by_padding[1]:
            np.testing.assert_allclose(by_padding[1][k], other[1][k], atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(
        by_padding[1]["neither"], ~(image_mask.any(1) | text_mask.any(1))
    )


@pytest.mark.parametrize("case", [c for c in ALL_SPECS if ALL_SPECS[c]["kind"] not in ATTENDING])
def test_pooling_rules_read_the_masked_means(case):
    s, p = setup(ALL_SPECS[case])
    v, t = (x.astype(np.float64) for x in token_inputs(s))
    mean_v = (v * IMAGE_MASK[..., None]).sum(1) / np.maximum(IMAGE_MASK.sum(1), 1)[:, None]
    mean_t = (t * TEXT_MASK[..., None]).sum(1) / np.maximum(TEXT_MASK.sum(1), 1)[:, None]
    present = np.stack([IMAGE_MASK.any(1), TEXT_MASK.any(1)], axis=1)
    out = call(s, p, v, t, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    np.testing.assert_allclose(out[0], call(s, p, mean_v, mean_t, present)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in ALL_SPECS if ALL_SPECS[c]["kind"] in ATTENDING])
def test_attending_rules_read_every_token(case):
    """Not a pooled rule: replacing the tokens by their mean changes the output; the
    order of a modality's tokens does not (no positions); moving a token to the other
    modality does change ``transformer_concat`` (modality embeddings)."""
    s, p = setup(ALL_SPECS[case])
    v, t = token_inputs(s)
    out = call(s, p, v, t)[0]
    pooled = call(s, p, v.mean(1, keepdims=True), t.mean(1, keepdims=True))[0]
    assert np.abs(out - pooled).max() > 1e-3
    perm_v, perm_t = np.random.default_rng(0).permutation(v.shape[1]), [2, 0, 1]
    np.testing.assert_allclose(call(s, p, v[:, perm_v], t[:, perm_t])[0], out, rtol=1e-10, atol=1e-12)
    if s.kind == "transformer_concat" and s.modality_embeddings:
        moved = call(s, p, v[:, :-1], np.concatenate([v[:, -1:], t], axis=1))[0]
        assert np.abs(moved - out).max() > 1e-3


def test_cross_attention_weights_cover_every_key_and_none_on_padding():
    s, p = setup(CASES["cross_attention"])
    v, t = token_inputs(s)
    _, aux = call(s, p, v, t, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    w = aux["attention_weights"]
    assert w.shape == (BATCH, s.heads, IMAGE_MASK.shape[1] + TEXT_MASK.shape[1])
    keys = np.concatenate([IMAGE_MASK, TEXT_MASK], axis=1)
    assert not w[np.broadcast_to(~keys[:, None], w.shape)].any()
    some = keys.any(1)
    np.testing.assert_allclose(w[some].sum(-1), 1.0, rtol=1e-12)
    assert [a.shape for a in s.aux(BATCH, tokens=(4, 3))] == [w.shape]


def test_input_norm_batch_statistics_are_over_the_real_tokens():
    s, p = setup(CASES["gated"], input_norm="batch")
    v, t = token_inputs(s)
    stats = fusion_ref.running_stats(s, p, v, t, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    real = v[IMAGE_MASK].astype(np.float64)  # (tokens, D)
    m = s.input_norm_momentum
    expected_mean = (1 - m) * p["input_norm.image.running_mean"] + m * real.mean(0)
    np.testing.assert_allclose(stats["input_norm.image.running_mean"], expected_mean, rtol=1e-12)
    expected_var = (1 - m) * p["input_norm.image.running_var"] + m * real.var(0, ddof=1)
    np.testing.assert_allclose(stats["input_norm.image.running_var"], expected_var, rtol=1e-12)


def test_widths_project_every_token():
    s, p = setup(CASES["gated"], image_dim=12, text_dim=6)
    v, t = token_inputs(s)
    assert v.shape[2] == 12 and t.shape[2] == 6
    out = call(s, p, v, t, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)[0]
    assert out.shape == (BATCH, s.dim) and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"image_mask": np.ones((BATCH, 1), bool), "vector": True},
            r"gated: argument 'image_mask' is the padding mask of token sequences: expected "
            r"'v' of shape \(B, L_v, 12\); received 'v' of rank 2",
        ),
        (
            {"text_mask": np.ones((BATCH, 4), bool)},
            r"gated: argument 'text_mask' expected shape \(B, 3\); received shape \(8, 4\)",
        ),
        (
            {"image_mask": np.full((BATCH, 4), 2)},
            r"gated: argument 'image_mask' expected booleans \(or 0/1\); received values \[2\]",
        ),
        (
            {"image_mask": np.ones((BATCH, 4), np.float32)},
            r"gated: argument 'image_mask' expected a bool or an integer dtype; received float32",
        ),
    ],
)
def test_bad_padding_masks_are_named(kwargs, message):
    s, p = setup(CASES["gated"])
    v, t = token_inputs(s)
    if kwargs.pop("vector", False):
        v = v[:, 0]
    with pytest.raises(spec.InputError, match=message):
        fusion_ref.forward(s, p, v, t, **kwargs)


def test_integer_masks_equal_bool_masks():
    s, p = setup(CASES["shomr"])
    v, t = token_inputs(s)
    a = call(s, p, v, t, image_mask=IMAGE_MASK, text_mask=TEXT_MASK)
    b = call(s, p, v, t, image_mask=IMAGE_MASK.astype(np.int64), text_mask=TEXT_MASK.astype(np.int8))
    assert_same(a, b)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", ["film", "transformer_concat"])
def test_an_all_padding_modality_is_filled_as_an_absent_vector(kind, training):
    """``input_norm_absent="zero"``: a modality whose tokens are all padding holds the
    normalised zero row as an absent vector does: one real token per present sample
    computes the vector call with that presence mask."""
    extra = {"dropout": 0.0} if "dropout" in spec.RULES[kind].model_fields else {}
    s, p = setup(ALL_SPECS[kind], input_norm="batch", **extra)
    for name in p:  # running statistics away from 0, so the two fills differ
        if name.endswith("running_mean"):
            p[name] = p[name] + 2.0
    v, t = inputs(s)
    present = PRESENT.copy()
    present[~present.any(1), 0] = True  # no sample with neither: its output is zeros
    image_mask = np.zeros((BATCH, 2), bool)
    image_mask[:, 0] = present[:, 0]
    text_mask = np.zeros((BATCH, 3), bool)
    text_mask[:, 1] = present[:, 1]
    vt = np.repeat(v[:, None], 2, axis=1)
    tt = np.repeat(t[:, None], 3, axis=1)
    got = call(s, p, vt, tt, training=training, image_mask=image_mask, text_mask=text_mask)[0]
    want = call(s, p, v, t, present, training=training)[0]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    mean = call(s.replace(input_norm_absent="mean"), p, v, t, present, training=training)[0]
    assert not np.allclose(want[~present.all(1)], mean[~present.all(1)])
