"""The Keras layers on token sequences ``(B, L, D)`` with padding masks: the reference,
padding never read (values nor gradients), symbolic lengths, one token = the vector."""

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
    perturbed_params,
    to_numpy,
)

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk
from tests.backend_cases import (
    IMAGE_MASK,
    L_T,
    L_V,
    MISSING_VARIANTS,
    PRESENT,
    TEXT_MASK,
    garbage_in_padding,
    token_inputs,
)

#: Every rule and missing-modality variant, plus the token paths of ``input_proj`` (widths
#: other than ``dim``) and ``input_norm="batch"`` (statistics over the real tokens), on a
#: pooling rule and on an attending one.
ALL = (
    CASES
    | MISSING_VARIANTS
    | {
        "gated-widths-batch": {
            **CASES["gated"],
            "image_dim": 10,
            "text_dim": 6,
            "input_norm": "batch",
        },
        "cross_attention-widths-batch": {
            **CASES["cross_attention"],
            "image_dim": 20,
            "text_dim": 6,
            "input_norm": "batch",
        },
    }
)
MASKS = {"image_mask": IMAGE_MASK, "text_mask": TEXT_MASK}
TRAININGS = [False, True] if CAN_TRAIN else [False]
needs_gradients = pytest.mark.skipif(
    not CAN_TRAIN, reason=f"the Keras {BACKEND} backend has no gradients"
)


def build(fields):
    s = spec.parse(fields)
    params = perturbed_params(s)
    return s, params, bk.build(s, params, seed=0)


def noise_for(s, training, batch=BATCH):
    rng = np.random.default_rng(1)
    declared = s.noise(batch, training=training)
    return {n.name: rng.uniform(size=n.shape).astype(np.float32) for n in declared} or None


def numpy_aux(aux):
    return {name: to_numpy(value) for name, value in aux.items()}


def assert_equal_calls(a, b):
    np.testing.assert_array_equal(to_numpy(a[0]), to_numpy(b[0]))
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        np.testing.assert_array_equal(to_numpy(a[1][name]), to_numpy(b[1][name]), err_msg=name)


@pytest.mark.parametrize("with_present", [False, True])
@pytest.mark.parametrize("training", TRAININGS)
@pytest.mark.parametrize("case", list(ALL))
def test_tokens_with_padding_match_the_reference(case, training, with_present):
    s, params, layer = build(ALL[case])
    v, t = token_inputs(s)
    present = PRESENT if with_present else None
    noise = noise_for(s, training)
    out, aux = layer(v, t, present, **MASKS, training=training, noise=noise, return_aux=True)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, present, **MASKS, training=training, noise=noise, return_aux=True
    )
    declared = s.call_aux(BATCH, training=training, present=True, tokens=(L_V, L_T))
    assert set(aux) == {a.name for a in declared if a.role != "margin"}
    sure = np.ones(BATCH, bool)  # samples with no decision within float32 rounding of a flip
    for a in declared:
        if a.role == "decision" and a.margin:
            sure &= np.broadcast_to(ref_aux[a.margin] >= 1e-4, (BATCH,))
    assert sure.sum() >= BATCH // 2
    out = to_numpy(out)
    assert out.shape == (BATCH, s.dim) and out.dtype == np.float32
    np.testing.assert_allclose(out[sure], ref[sure], **TOL)
    for a in declared:
        if a.role == "margin":
            continue
        value, expected = to_numpy(aux[a.name]), ref_aux[a.name]
        assert value.shape == expected.shape, a.name
        if value.ndim:
            value, expected = value[sure], expected[sure]
        np.testing.assert_allclose(value, expected, **TOL, err_msg=a.name)
    if s.input_norm == "batch":  # training moved the running statistics as the reference's
        stats = fusion_ref.running_stats(s, params, v, t, present, **MASKS, training=training)
        held = layer.canonical_params()
        for name, expected in stats.items():
            np.testing.assert_allclose(held[name], expected, **TOL, err_msg=name)


@pytest.mark.parametrize("fill", [np.nan, np.inf, -1e30])
@pytest.mark.parametrize("case", list(ALL))
def test_padding_values_never_reach_the_output(case, fill):
    s, _, layer = build(ALL[case])
    v, t = token_inputs(s)
    training = CAN_TRAIN and case in ("modality_dropout", "shomr", "energy_aware_adaptive")
    kw = dict(**MASKS, training=training, noise=noise_for(s, training), return_aux=True)
    clean = layer(v, t, **kw)
    assert np.isfinite(to_numpy(clean[0])).all()
    garbage = layer(*garbage_in_padding(v, t, IMAGE_MASK, TEXT_MASK, fill), **kw)
    assert_equal_calls(garbage, clean)


@needs_gradients
@pytest.mark.parametrize("case", KIND_CASES)
def test_no_gradient_reaches_a_padding_token(case):
    from fusion_spec.conformance.adapters.keras import KerasAdapter

    s, params, _ = build(CASES[case])
    adapter = KerasAdapter()
    v, t = garbage_in_padding(*token_inputs(s), IMAGE_MASK, TEXT_MASK)
    cot = np.random.default_rng(0).standard_normal((BATCH, s.dim)).astype(np.float32)
    grads = adapter.gradients(
        adapter.build(s, params),
        v,
        t,
        cot,
        training=True,
        noise=noise_for(s, True),
        options=dict(MASKS),
    )
    assert grads["v"].shape == v.shape and grads["t"].shape == t.shape
    assert np.all(grads["v"][~IMAGE_MASK] == 0) and np.all(grads["t"][~TEXT_MASK] == 0)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    # the real tokens do get a gradient (a sample with both modalities)
    assert np.abs(grads["v"][0]).max() > 0 and np.abs(grads["t"][0]).max() > 0


@pytest.mark.parametrize("with_present", [False, True])
@pytest.mark.parametrize("case", list(ALL))
def test_one_token_is_the_vector_bit_for_bit(case, with_present):
    """No padding mask and ``L = 1``: the token path computes with the vector path's ops
    (a mean over one token is the token, a mean over all keys is ``ops.mean``), so the
    results are equal bit for bit."""
    s, _, layer = build(ALL[case])
    v, t = (x[:, 0] for x in token_inputs(s, lengths=(1, 1)))  # (B, D_v), (B, D_t)
    present = PRESENT if with_present else None
    for training in TRAININGS:
        kw = dict(training=training, noise=noise_for(s, training), return_aux=True)
        vector = layer(v, t, present, **kw)
        assert_equal_calls(layer(v[:, None], t[:, None], present, **kw), vector)
        assert_equal_calls(layer(v, t[:, None], present, **kw), vector)


@pytest.mark.parametrize("case", ["gated", "cross_attention", "simple", "shomr"])
def test_a_functional_model_of_unknown_lengths_runs_on_two(case, tmp_path):
    s, params, layer = build(CASES[case])
    v_in = keras.Input((None, s.width("image")), name="v")
    t_in = keras.Input((None, s.width("text")), name="t")
    masks_in = [keras.Input((None,), dtype="bool", name=name) for name in MASKS]
    fused = layer(v_in, t_in, image_mask=masks_in[0], text_mask=masks_in[1])
    assert tuple(fused.shape) == (None, s.dim)
    assert layer.compute_output_shape((None, None, s.dim), (None, None, s.dim)) == (None, s.dim)
    model = keras.Model([v_in, t_in, *masks_in], fused)
    for lengths, (image_mask, text_mask) in (
        ((L_V, L_T), (IMAGE_MASK, TEXT_MASK)),
        ((2, 5), (IMAGE_MASK[:, 2:], np.concatenate([TEXT_MASK, ~TEXT_MASK[:, :2]], axis=1))),
    ):
        v, t = token_inputs(s, lengths=lengths)
        got = to_numpy(model.predict_on_batch([v, t, image_mask, text_mask]))
        ref = fusion_ref.forward(s, params, v, t, image_mask=image_mask, text_mask=text_mask)
        np.testing.assert_allclose(got, ref, **TOL, err_msg=str(lengths))
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # not bit for bit: TensorFlow traces the model's second length with the length unknown
    # (relaxed shapes) and the loaded model's first with it known, which may pick other kernels
    again = to_numpy(loaded.predict_on_batch([v, t, image_mask, text_mask]))
    np.testing.assert_allclose(again, got, **TOL)


def test_symbolic_aux_of_unknown_lengths():
    s, _, layer = build(CASES["cross_attention"])
    v_in, t_in = keras.Input((None, s.dim)), keras.Input((L_T, s.dim))
    fused, aux = layer(v_in, t_in, text_mask=keras.Input((L_T,), dtype="bool"), return_aux=True)
    assert tuple(fused.shape) == (None, s.dim)
    assert tuple(aux["attention_weights"].shape) == (None, s.heads, None)
    assert tuple(aux["neither"].shape) == (None,)
    _, aux = bk.build(s)(keras.Input((L_V, s.dim)), keras.Input((s.dim,)), return_aux=True)
    assert tuple(aux["attention_weights"].shape) == (None, s.heads, L_V + 1)
    assert set(aux) == {"attention_weights"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"image_mask": np.ones((BATCH, 1), bool), "vector": True},
            r"gated: argument 'image_mask' is the padding mask of token sequences: expected "
            r"'v' of shape \(B, L_v, 12\); received 'v' of rank 2",
        ),
        (
            {"text_mask": np.ones((BATCH, L_V), bool)},
            r"gated: argument 'text_mask' expected shape \(B, 3\); received shape \(8, 4\)",
        ),
        (
            {"image_mask": np.full((BATCH, L_V), 2)},
            r"gated: argument 'image_mask' expected booleans \(or 0/1\); received values \[2\]",
        ),
        (
            {"image_mask": np.ones((BATCH, L_V), np.float32)},
            r"gated: argument 'image_mask' expected a bool or an integer dtype; received float32",
        ),
    ],
)
def test_bad_padding_masks_are_named(kwargs, message):
    s, _, layer = build(CASES["gated"])
    v, t = token_inputs(s)
    if kwargs.pop("vector", False):
        v = v[:, 0]
    with pytest.raises(spec.InputError, match=message):
        layer(v, t, **kwargs)


def test_a_symbolic_input_of_rank_four_is_refused():
    layer = bk.LAYERS["gated"](spec.parse("gated", dim=8))
    with pytest.raises(
        ValueError, match=r"gated: argument 'v' expected shape \(B, 8\) or \(B, L_v, 8\)"
    ):
        layer(keras.Input((2, 3, 8)), keras.Input((8,)))


def test_integer_masks_equal_bool_masks():
    s, _, layer = build(CASES["shomr"])
    v, t = token_inputs(s)
    assert_equal_calls(
        layer(
            v,
            t,
            image_mask=IMAGE_MASK.astype(np.int32),
            text_mask=TEXT_MASK.astype(np.int8),
            return_aux=True,
        ),
        layer(v, t, **MASKS, return_aux=True),
    )


@pytest.mark.parametrize("case", ["cross_attention", "gated"])
def test_keras_mask_propagation_gives_the_padding_masks(case):
    """``Embedding(mask_zero=True)`` attaches a mask to its tokens; the layer reads it as the
    padding mask (ids 0 are padding), leaves none on its output, and trains with it."""
    s, params, layer = build(CASES[case])
    ids_in = [keras.Input((None,), dtype="int32") for _ in range(2)]
    embed = [keras.layers.Embedding(20, s.dim, mask_zero=True) for _ in range(2)]
    fused = layer(*(e(i) for e, i in zip(embed, ids_in, strict=True)))
    model = keras.Model(ids_in, fused)
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, 20, (BATCH, L_V)), rng.integers(1, 20, (BATCH, L_T))]
    ids[0][~IMAGE_MASK], ids[1][~TEXT_MASK] = 0, 0
    v, t = (to_numpy(e(i)) for e, i in zip(embed, ids, strict=True))
    ref = fusion_ref.forward(s, params, v, t, **MASKS)
    np.testing.assert_allclose(to_numpy(model.predict_on_batch(ids)), ref, **TOL)
    # the model's output carries no mask, and an explicit mask wins over a propagated one
    assert getattr(fused, "_keras_mask", None) is None
    explicit = layer(embed[0](ids[0]), embed[1](ids[1]), image_mask=np.ones((BATCH, L_V), bool))
    ref = fusion_ref.forward(s, params, v, t, text_mask=TEXT_MASK)
    np.testing.assert_allclose(to_numpy(explicit), ref, **TOL)
    if CAN_TRAIN:
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = layer.canonical_params()
        model.fit(ids, np.ones((BATCH, s.dim), np.float32), epochs=1, verbose=0)
        moved = [n for n, x in layer.canonical_params().items() if not np.array_equal(x, before[n])]
        assert moved


def test_an_unbuilt_layer_builds_from_token_inputs():
    """Keras builds the layer from symbolic token shapes (with masks among the call's
    tensors); its weights are those of the vector layer."""
    s = spec.parse("film", dim=8)
    layer = bk.LAYERS["film"](s, seed=0)
    v_in, t_in = keras.Input((None, 8)), keras.Input((None, 8))
    mask_in = keras.Input((None,), dtype="bool")
    model = keras.Model([v_in, t_in, mask_in], layer(v_in, t_in, text_mask=mask_in))
    assert layer.built and model.output.shape == (None, 8)
    assert {name: p.shape for name, p in layer.canonical_params().items()} == {
        p.name: p.shape for p in s.params()
    }
    v, t = token_inputs(s)
    got = to_numpy(model.predict_on_batch([v, t, TEXT_MASK]))
    ref = fusion_ref.forward(s, layer.canonical_params(), v, t, text_mask=TEXT_MASK)
    np.testing.assert_allclose(got, ref, **TOL)
