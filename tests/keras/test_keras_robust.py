"""The Keras backend's defined answers to bad calls and edge cases (once per Keras backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import BACKEND, to_numpy

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk
from tests.robust_cases import (
    EDGE_SPECS,
    MAGNITUDE,
    NAN_ROWS,
    assert_agrees,
    bad_calls,
    build_spec,
    edge_calls,
    nan_inputs,
    ok,
    training_noise,
)

_LAYERS: dict[str, keras.layers.Layer] = {}


def layer_for(s):
    """One built layer per spec, reused across cases."""
    key = s.model_dump_json()
    if key not in _LAYERS:
        _LAYERS[key] = bk.build(s, spec.init_params(s, seed=2), seed=0)
    return _LAYERS[key]


@pytest.mark.parametrize("case", bad_calls("keras"), ids=lambda c: c.id)
def test_bad_call_is_an_input_error_naming_the_argument(case):
    layer = layer_for(build_spec(case.spec))
    with pytest.raises(spec.InputError, match=case.match):
        layer(case.v, case.t, training=case.training, **case.kwargs)


def test_backend_tensors_of_a_wrong_dtype_are_input_errors():
    layer = layer_for(build_spec("gated"))
    for dtype in ("int32", "bool"):
        bad = keras.ops.zeros((3, 8), dtype=dtype)
        with pytest.raises(spec.InputError, match=rf"argument 'v' expected a floating dtype; received {dtype}"):
            layer(bad, ok())


def test_build_arguments_are_checked():
    s = build_spec("gated")
    for seed, shown in [(-1, "int -1"), (2**31, "int 2147483648"), ("1", "str '1'"), (1.5, "float 1.5")]:
        with pytest.raises(spec.InputError, match=rf"gated: argument 'seed' expected None or an int in \[0, 2\*\*31 - 1\); received {shown}"):
            bk.build(s, seed=seed)
    with pytest.raises(spec.SpecError, match=r"shomr: heads must divide dim; received heads=3 with dim=8"):
        bk.build(build_spec("shomr").model_copy(update={"heads": 3}))
    with pytest.raises(spec.SpecError, match=r"field 'kind': input should be 'gated'; received kind='film'"):
        bk.build(s.model_copy(update={"kind": "film"}))
    with pytest.raises(spec.WeightsError, match=r"gated: canonical params expected a mapping .*received None"):
        layer_for(s).load_canonical(None)


@pytest.mark.parametrize(
    "dtype, received",
    [
        ("int32", "str 'int32' (variables int32, computation int32)"),
        ("bool", "str 'bool' (variables bool, computation bool)"),
        ("complex64", "str 'complex64' (variables complex64, computation complex64)"),
        ("int8_from_float32", "str 'int8_from_float32' (int8 quantization)"),
        ("bogus", "str 'bogus' (Keras: Cannot convert 'bogus' to a mixed precision DTypePolicy."),
        (3, "int 3 (Keras: Cannot interpret `dtype` argument."),
    ],
)
def test_a_dtype_policy_that_is_not_floating_is_refused(dtype, received):
    """Keras builds an int32 layer (every weight rounded: a wrong result, no error)."""
    expected = (
        "gated: argument 'dtype' expected a floating dtype or dtype policy (e.g. 'float32', "
        f"'float64', 'mixed_float16', 'mixed_bfloat16'); received {received}"
    )
    for make in (lambda: bk.build(build_spec("gated"), dtype=dtype), lambda: bk.GatedFusion(build_spec("gated"), dtype=dtype)):
        with pytest.raises(spec.InputError) as info:
            make()
        assert str(info.value).startswith(expected)


def test_the_global_dtype_policy_is_checked_too():
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("int32")
    try:
        with pytest.raises(spec.InputError) as info:
            bk.build(build_spec("gated"))
    finally:
        keras.config.set_dtype_policy(before)
    assert str(info.value).endswith(
        "received None (the global policy 'int32': variables int32, computation int32)"
    )


@pytest.mark.skipif(BACKEND != "jax", reason="JAX alone turns float64 into float32 (without x64)")
def test_float64_on_jax_without_x64_is_refused():
    import jax

    if jax.config.jax_enable_x64:
        pytest.skip("this process runs JAX in x64 mode, where float64 is float64")
    with pytest.raises(spec.InputError, match=r"^gated: argument 'dtype' expected a dtype policy that JAX computes in: float64 needs JAX's x64 mode .*received str 'float64'$"):
        bk.build(build_spec("gated"), dtype="float64")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_floating_inputs_are_cast_to_the_compute_dtype(dtype):
    """docs/errors.md, "Input dtypes": any real floating input is cast to the layer's compute
    dtype (float32 by default) and the output has that dtype, as if cast before the call."""
    layer = layer_for(build_spec("gated"))
    v, t = ok(), ok(seed=1)
    out = layer(v.astype(dtype), t.astype(dtype))
    assert keras.backend.standardize_dtype(out.dtype) == layer.compute_dtype == "float32"
    cast = layer(v.astype(dtype).astype(np.float32), t.astype(dtype).astype(np.float32))
    np.testing.assert_array_equal(to_numpy(out), to_numpy(cast))


def test_numpy_views_and_bfloat16_inputs_are_accepted():
    layer = layer_for(build_spec("gated"))
    v, t = ok(), ok(seed=1)
    want = to_numpy(layer(v[::-1].copy(), t[:, ::-1].copy()))
    np.testing.assert_array_equal(to_numpy(layer(v[::-1], t[:, ::-1])), want)
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
    got = to_numpy(layer(v.astype(ml_dtypes.bfloat16), t))
    exact = to_numpy(layer(v.astype(ml_dtypes.bfloat16).astype(np.float32), t))
    np.testing.assert_array_equal(got, exact)


def _call(s, v, t, training, options, noise):
    layer = layer_for(s)
    if noise is not None:
        noise = {k: u.astype(np.float32) for k, u in noise.items()}
    out, aux = layer(v, t, training=training, noise=noise, return_aux=True, **options)
    ref, ref_aux = fusion_ref.forward(
        s, layer.canonical_params(), v, t, training=training, noise=noise, return_aux=True, **options
    )
    return to_numpy(out), {k: to_numpy(x) for k, x in aux.items()}, ref, ref_aux


def _noise(s, batch, training, options):
    return training_noise(s, batch, **options) if s.noise(batch, training=training, **options) else None


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_empty_batch_matches_the_reference_and_energy_loss_is_zero(kind):
    s = EDGE_SPECS[kind]
    empty = np.zeros((0, s.dim), np.float32)
    for training, options in edge_calls(kind):
        out, aux, ref, ref_aux = _call(s, empty, empty, training, options, _noise(s, 0, training, options))
        assert out.shape == (0, s.dim)
        assert_agrees(s, out, aux, ref, ref_aux, training=training, **options)
        if kind == "energy_aware_adaptive":
            assert aux["energy_loss"] == 0.0


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_nan_and_inf_rows_match_the_reference(kind):
    s = EDGE_SPECS[kind]
    v, t = (x.astype(np.float32) for x in nan_inputs())
    for training, options in edge_calls(kind):
        out, aux, ref, ref_aux = _call(s, v, t, training, options, _noise(s, 5, training, options))
        np.testing.assert_array_equal(~np.isfinite(out).all(axis=-1), NAN_ROWS, err_msg=BACKEND)
        assert_agrees(s, out, aux, ref, ref_aux, training=training, **options)


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_documented_magnitude_range_agrees_with_the_reference(kind):
    s = EDGE_SPECS[kind]
    for sign in (1.0, -1.0):
        v, t = ok(8) * MAGNITUDE * sign, ok(8, seed=1) * MAGNITUDE
        out, aux, ref, ref_aux = _call(s, v, t, False, {}, _noise(s, 8, False, {}))
        assert np.isfinite(out).all()
        assert_agrees(s, out, aux, ref, ref_aux, training=False)


@pytest.mark.parametrize(
    "fields",
    [{"routing_temperature": 1e-3}, {"routing_temperature": 1e3}, {"confidence_threshold": 0.0}, {"confidence_threshold": 1.0}],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_extreme_valid_temperatures_and_thresholds_agree_with_the_reference(fields):
    s = EDGE_SPECS["shomr"].replace(**fields)
    v, t = ok(16) * 3, ok(16, seed=1) * 3
    for training in (False, True):
        out, aux, ref, ref_aux = _call(s, v, t, training, {}, _noise(s, 16, training, {}))
        assert np.isfinite(out).all() and np.isfinite(aux["route_probs"]).all()
        assert_agrees(s, out, aux, ref, ref_aux, training=training)


def test_a_misspelt_layer_class_gets_a_suggestion_and_the_names():
    with pytest.raises(AttributeError) as info:
        bk.GatedFuson  # noqa: B018
    assert str(info.value).startswith(
        "module 'fusion_spec.backends.keras' has no attribute 'GatedFuson' "
        "(did you mean 'GatedFusion'?); it has: ConcatMlpFusion, CrossAttentionFusion, "
    )
    assert getattr(bk, "missing", None) is None
