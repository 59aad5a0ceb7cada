"""The reference's defined answers to bad calls and edge cases (docs/errors.md)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from tests.robust_cases import (
    EDGE_SPECS,
    MAGNITUDE,
    NAN_ROWS,
    bad_calls,
    build_spec,
    edge_calls,
    nan_inputs,
    ok,
    training_noise,
)


@pytest.mark.parametrize("case", bad_calls("reference"), ids=lambda c: c.id)
def test_bad_call_is_an_input_error_naming_the_argument(case):
    s = build_spec(case.spec)
    with pytest.raises(spec.InputError, match=case.match):
        fusion_ref.forward(s, spec.init_params(s), case.v, case.t, training=case.training, **case.kwargs)


def test_an_edited_spec_is_refused_before_any_computation():
    s = build_spec("shomr")
    params = spec.init_params(s)
    for change, field in [
        ({"heads": 3}, "heads must divide dim"),
        ({"routing_temperature": 0.0}, "routing_temperature"),
        ({"kind": "film"}, "field 'kind'"),
        ({"dim": -1}, "field 'dim'"),
    ]:
        with pytest.raises(spec.SpecError, match=field):
            fusion_ref.forward(s.model_copy(update=change), params, ok(), ok())


@pytest.mark.parametrize(
    "params, match",
    [
        (None, r"gated: params expected a mapping of canonical name -> array; received None"),
        ([1, 2], r"expected a mapping .*received list of length 2"),
        (
            {"gate.weight": [[0.0] * 16, [0.0]], "gate.bias": None},
            r"'gate.weight': expected an array, received list of length 2 \(ValueError: .*\); "
            r"'gate.bias': expected an array, received None",
        ),
        ({"gate.weight": np.zeros((8, 16), object), "gate.bias": np.zeros(8)}, r"'gate.weight': expected a floating dtype, received ndarray of shape \(8, 16\) and dtype object"),
        ({"gate.weight": np.zeros((8, 16)), "gate.bias": np.float32(0.0)}, r"'gate.bias': expected shape \(8,\), received \(\)"),
        ({"gate.weight": np.zeros((8, 16)), "gate.bias": "zeros"}, r"'gate.bias': expected an array, received str 'zeros'"),
    ],
)
def test_bad_params_are_weights_errors(params, match):
    s = build_spec("gated")
    with pytest.raises(spec.WeightsError, match=match):
        fusion_ref.forward(s, params, ok(), ok())


def test_low_precision_and_strided_numpy_inputs_are_accepted():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
    s = build_spec("gated")
    p = spec.init_params(s)
    v, t = ok(), ok(seed=1)
    expected = fusion_ref.forward(s, p, v.astype(ml_dtypes.bfloat16).astype(np.float64), t)
    np.testing.assert_array_equal(fusion_ref.forward(s, p, v.astype(ml_dtypes.bfloat16), t), expected)
    np.testing.assert_array_equal(
        fusion_ref.forward(s, p, v[::-1], t[:, ::-1]),
        fusion_ref.forward(s, p, v[::-1].copy(), t[:, ::-1].copy()),
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_floating_inputs_are_computed_in_float64(dtype):
    """docs/errors.md, "Input dtypes": the reference widens every floating input exactly
    to float64 and returns float64."""
    s = build_spec("gated")
    p = spec.init_params(s)
    v, t = ok().astype(dtype), ok(seed=1).astype(dtype)
    out = fusion_ref.forward(s, p, v, t)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, fusion_ref.forward(s, p, v.astype(np.float64), t.astype(np.float64)))


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_empty_batch_gives_empty_outputs_and_zero_energy_loss(kind):
    s = EDGE_SPECS[kind]
    p = spec.init_params(s)
    empty = np.zeros((0, s.dim))
    for training, options in edge_calls(kind):
        noise = training_noise(s, 0, **options) if training else None
        if not training and s.noise(0, training=False, **options):
            noise = training_noise(s, 0, **options)
        out, aux = fusion_ref.forward(
            s, p, empty, empty, training=training, noise=noise, return_aux=True, **options
        )
        assert out.shape == (0, s.dim)
        for a in s.aux(0, training=training, **options):
            assert aux[a.name].shape == a.shape, (a.name, aux[a.name].shape)
        if kind == "energy_aware_adaptive":
            assert aux["energy_loss"] == 0.0


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_nan_spreads_through_the_batch_statistics_in_training_only(kind):
    """The default input_norm="batch": a NaN in one sample's t reaches every sample that
    has text through the training batch's statistics (docs/errors.md); in eval the
    running statistics keep it in its row."""
    s = EDGE_SPECS[kind].replace(input_norm="batch")
    p = spec.init_params(s, seed=2)
    v, t = (np.random.default_rng(3).standard_normal((4, s.dim)) for _ in range(2))
    t[1, 2] = np.nan
    present = np.array([[True, True], [True, True], [True, True], [True, False]])
    for training in (False, True):
        options = {"progress": 0.5} if kind == "energy_aware_adaptive" and training else {}
        noise = training_noise(s, 4, **options) if s.noise(4, training=training, **options) else None
        out = fusion_ref.forward(s, p, v, t, present, training=training, noise=noise, **options)
        finite = np.isfinite(out).all(axis=-1)
        if not training:
            np.testing.assert_array_equal(finite, [True, False, True, True])
        else:  # rows with text are not finite; row 3 (image only) may stay finite
            assert not finite[:3].any(), finite


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_nan_and_inf_propagate_per_sample(kind):
    """A sample with a NaN or inf input gets a non-finite row; the others are untouched."""
    s = EDGE_SPECS[kind]
    p = spec.init_params(s, seed=2)
    v, t = nan_inputs()
    for training, options in edge_calls(kind):
        noise = training_noise(s, 5, **options) if s.noise(5, training=training, **options) else None
        out = fusion_ref.forward(s, p, v, t, training=training, noise=noise, **options)
        np.testing.assert_array_equal(~np.isfinite(out).all(axis=-1), NAN_ROWS, err_msg=str(options))
        if kind not in ("energy_aware_adaptive", "modality_dropout") or not training:
            # rows 0 and 4 alone: the same numbers (batch-level noise aside)
            keep = ~NAN_ROWS
            sub = {k: u[keep] if u.shape[:1] == (5,) else u for k, u in (noise or {}).items()}
            alone = fusion_ref.forward(
                s, p, v[keep], t[keep], training=training, noise=sub or None, **options
            )
            # BLAS may block a smaller batch differently: equal to float64 rounding
            np.testing.assert_allclose(out[keep], alone, rtol=1e-12, atol=1e-12)


def test_a_nan_in_t_never_routes_to_a_finite_v():
    """argmax over NaN route probabilities picks route 0 (v): the row must still be NaN."""
    for kind, options in [("energy_aware_adaptive", {}), ("shomr", {"use_hard_routing": True})]:
        s = EDGE_SPECS[kind]
        v, t = ok(), ok(seed=1)
        t[1, 2] = np.nan
        out, aux = fusion_ref.forward(s, spec.init_params(s), v, t, return_aux=True, **options)
        assert np.isnan(aux["route_probs"][1]).all()
        assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_documented_magnitude_range_is_finite(kind):
    s = EDGE_SPECS[kind]
    v, t = ok() * MAGNITUDE, ok(seed=1) * -MAGNITUDE
    noise = training_noise(s, 3) if s.noise(3, training=False) else None
    out = fusion_ref.forward(s, spec.init_params(s), v, t, noise=noise)
    assert np.isfinite(out).all()
