"""Keras lifecycle of the layers: weights, config, .keras files, functional models, fit, jit."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import (
    BACKEND,
    BATCH,
    CAN_TRAIN,
    CASES,
    TOL,
    assert_matches_reference,
    inputs,
    make_spec,
    perturbed_params,
    to_numpy,
    uniform_noise,
)

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk

CASE_IDS = list(CASES)


def functional_model(layer, **call_kwargs):
    s = layer.spec
    v_in, t_in = keras.Input((s.dim,), name="v"), keras.Input((s.dim,), name="t")
    return keras.Model([v_in, t_in], layer(v_in, t_in, **call_kwargs))


# --- canonical parameters -----------------------------------------------------------


@pytest.mark.parametrize("case", CASE_IDS)
def test_canonical_round_trip_is_bit_exact(case):
    s = make_spec(case)
    params = perturbed_params(s, seed=5)
    layer = bk.build(s, params)
    back = layer.canonical_params()
    assert list(back) == [p.name for p in s.params()]
    for name, value in back.items():
        assert value.dtype == np.float32 and value.flags["C_CONTIGUOUS"], name
        assert value.shape == params[name].shape, name
        np.testing.assert_array_equal(value.view(np.uint32), params[name].view(np.uint32), name)


@pytest.mark.parametrize("case", CASE_IDS)
def test_dense_weights_are_held_as_transposed_kernels(case):
    s = make_spec(case)
    params = perturbed_params(s, seed=6)
    layer = bk.build(s, params)
    variables = {w.name: to_numpy(w.value) for w in layer.weights}
    assert len(variables) == len(params)  # one named variable per canonical param
    assert list(layer.canonical_variables) == list(params)
    assert set(layer.transposed) == {n for n, a in params.items() if a.ndim == 2 and "weight" in n}
    for name, variable in layer.canonical_variables.items():
        transposed = name in layer.transposed
        np.testing.assert_array_equal(
            to_numpy(variable.value), params[name].T if transposed else params[name]
        )
    for p in s.params():
        if p.name.endswith(".weight") and len(p.shape) == 2:
            kernel = variables[p.name[: -len("weight")].replace(".", "_") + "kernel"]
            assert kernel.shape == p.shape[::-1]
            np.testing.assert_array_equal(kernel, params[p.name].T)
        else:
            np.testing.assert_array_equal(variables[p.name.replace(".", "_")], params[p.name])


def test_square_transpose_is_seen_by_values():
    """A transposed (D, D) weight passes every shape check; the outputs catch it."""
    s = make_spec("film")
    params = perturbed_params(s)
    swapped = dict(params, **{"gamma.weight": np.ascontiguousarray(params["gamma.weight"].T)})
    v, t = inputs(s)
    out = to_numpy(bk.build(s, swapped)(v, t))
    assert not np.allclose(out, fusion_ref.forward(s, params, v, t), **TOL)


def test_initial_weights_follow_the_spec():
    s = spec.parse(dict(CASES["transformer_concat"], layers=3))
    params = bk.build(s, seed=0).canonical_params()
    for p in s.params():
        value = params[p.name]
        if p.init.tied_to is not None:
            np.testing.assert_array_equal(value, params[p.init.tied_to], p.name)
        elif p.init.kind == "uniform":
            assert np.abs(value).max() <= p.init.bound and value.std() > p.init.bound / 4, p.name
        elif p.init.kind == "constant":
            np.testing.assert_array_equal(value, p.init.value, p.name)
        else:
            assert 0.5 < value.std() / p.init.std < 1.5, p.name


def test_load_canonical_errors_name_the_param():
    # gate.weight is (D, 2D): its transpose has another shape; input_norm="none": no
    # running statistics, so gate.bias is the one missing name
    s = make_spec("gated").replace(input_norm="none")
    params = perturbed_params(s)
    layer = bk.build(s)
    with pytest.raises(
        spec.WeightsError, match=r"gate\.weight.*expected shape \(12, 24\), received \(24, 12\)"
    ):
        layer.load_canonical(dict(params, **{"gate.weight": params["gate.weight"].T}))
    with pytest.raises(spec.WeightsError, match=r"missing \['gate\.bias'\]"):
        layer.load_canonical({"gate.weight": params["gate.weight"]})
    with pytest.raises(spec.WeightsError, match=r"unexpected \['gate\.kernel'\]"):
        layer.load_canonical(dict(params, **{"gate.kernel": params["gate.weight"].T}))


# --- call contract errors ---------------------------------------------------------------


def test_call_errors_name_rule_argument_and_received():
    s = make_spec("shomr")
    layer = bk.build(s)
    v, t = inputs(s)
    with pytest.raises(
        ValueError, match=r"shomr: argument 't' expected shape \(B, 16\) or \(B, L_t, 16\); received shape \(8, 12\)"
    ):
        layer(v, t[:, :12])
    with pytest.raises(
        ValueError, match=r"shomr: argument 'v' expected a floating dtype; received int32"
    ):
        layer(np.ones((BATCH, 16), np.int32), t)
    with pytest.raises(ValueError, match=r"expected equal batch sizes"):
        layer(v, t[:4])
    with pytest.raises(
        ValueError,
        match=r"argument 'noise' expected names \['route'\] for this call; received \['routes'\]",
    ):
        layer(v, t, training=True, noise={"routes": np.zeros(BATCH)})
    with pytest.raises(
        ValueError, match=r"shomr: noise 'route' expected shape \(8,\); received \(4,\)"
    ):
        layer(v, t, training=True, noise={"route": np.zeros(4)})
    with pytest.raises(
        ValueError, match=r"shomr: input 'v' expected shape \(B, 16\) or \(B, L_v, 16\); received"
    ):
        bk.ShomrFusion(s).build((None, 12), (None, 16))
    with pytest.raises(
        ValueError, match=r"shomr: input 't' expected shape \(B, 16\) or \(B, L_t, 16\); received"
    ):
        bk.ShomrFusion(s).build((None, 16), (None, 2, 3, 16))
    with pytest.raises(TypeError, match=r"shomr: unexpected call option\(s\) \['progress'\]"):
        layer(v, t, progress=0.5)
    with pytest.raises(
        spec.InputError,
        match=r"ShomrFusion: argument 'spec' expected kind 'shomr'; received kind 'gated'",
    ):
        bk.ShomrFusion({"kind": "gated", "dim": 4})


# --- config, serialisation, functional models ---------------------------------------------------


@pytest.mark.parametrize("case", CASE_IDS)
def test_config_round_trip(case):
    s = make_spec(case)
    layer = bk.build(s, perturbed_params(s), seed=3)
    config = layer.get_config()
    assert config["spec"] == s.model_dump(mode="json") and config["name"] == layer.name
    clone = type(layer).from_config(config)
    assert clone.spec == s and clone.seed == 3
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(again) is type(layer) and again.spec == s
    clone.load_canonical(layer.canonical_params())
    v, t = inputs(s)
    np.testing.assert_array_equal(to_numpy(clone(v, t)), to_numpy(layer(v, t)))


@pytest.mark.parametrize("case", CASE_IDS)
def test_keras_file_round_trip_in_a_functional_model(case, tmp_path):
    s = make_spec(case)
    # eval_routing="sample" draws in eval: the seed in the config restarts the same stream
    model = functional_model(bk.build(s, perturbed_params(s, seed=4), seed=11))
    v, t = inputs(s, seed=4)
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before = to_numpy(model.predict_on_batch([v, t]))
    np.testing.assert_array_equal(to_numpy(loaded.predict_on_batch([v, t])), before)
    layer = next(x for x in loaded.layers if isinstance(x, bk.FusionLayer))
    assert layer.spec == s
    for name, value in layer.canonical_params().items():
        np.testing.assert_array_equal(value, model.layers[-1].canonical_params()[name], name)


def _edited_keras_file(tmp_path, **layer_config):
    """A .keras file of a functional gated model whose layer config was edited by hand."""
    import json
    import zipfile

    s = make_spec("gated")
    path, edited = tmp_path / "m.keras", tmp_path / "edited.keras"
    functional_model(bk.build(s, name="fusion")).save(path)
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    (layer,) = [x for x in config["config"]["layers"] if x["class_name"] == "GatedFusion"]
    for key, value in layer_config.items():
        if key == "dim":
            layer["config"]["spec"]["dim"] = value
        else:
            layer["config"][key] = value
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(edited, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return edited


@pytest.mark.parametrize(
    "edit, first_line",
    [
        ({"dim": -4}, "gated: field 'dim': input should be greater than 0; received dim=-4"),
        (
            {"seed": -1},
            "gated: argument 'seed' expected None or an int in [0, 2**31 - 1); received int -1",
        ),
        ({"dim": 10**7}, "gated: field 'dim': input should be less than or equal to 65536; received dim=10000000"),
        (
            {"dtype": "int32"},
            "gated: argument 'dtype' expected a floating dtype or dtype policy (e.g. 'float32', "
            "'float64', 'mixed_float16', 'mixed_bfloat16'); received str 'int32' (variables "
            "int32, computation int32)",
        ),
    ],
)
def test_an_edited_keras_file_raises_the_fusion_error_not_keras_wrapper(tmp_path, edit, first_line):
    """Keras turns a constructor's error into "could not be deserialized properly"; the
    layer's from_config lets the rule's own first line through."""
    with pytest.raises(spec.SpecError) as info:
        keras.saving.load_model(_edited_keras_file(tmp_path, **edit))
    assert str(info.value).split("\n") == [
        first_line,
        "(in the saved Keras config of GatedFusion 'fusion')",
    ]
    assert isinstance(info.value.__cause__, spec.FusionError)


def test_layer_arguments_are_input_errors():
    s = make_spec("energy_aware_adaptive")
    with pytest.raises(
        spec.InputError,
        match=r"^energy_aware_adaptive: argument 'energy_loss' expected True or False; "
        r"received int 1$",
    ):
        bk.EnergyAwareAdaptiveFusion(s, energy_loss=1)
    for epochs, received in ((0, "int 0"), (True, "bool True"), (2.0, "float 2.0")):
        with pytest.raises(spec.InputError) as info:
            bk.ProgressCallback(epochs)
        assert str(info.value) == (
            f"ProgressCallback: argument 'epochs' expected None or a positive int; "
            f"received {received}"
        )
    for kwargs, received in (
        ({"energy_loss": True}, "energy_loss=bool True (Keras: Unrecognized keyword arguments passed to GatedFusion: {'energy_loss': True})"),
        ({"trainable": "x"}, "trainable=str 'x' (Keras: Expected `trainable` to be a boolean. Received: trainable=x (of type <class 'str'>))"),
    ):
        with pytest.raises(spec.InputError) as info:
            bk.build("gated", dim=s.dim, **kwargs)
        assert str(info.value) == (
            "gated: layer arguments expected keras.layers.Layer's (name, dtype, trainable, ...) "
            f"with valid values; received {received}"
        )
    with pytest.raises(spec.SpecError, match=r"^gated: the saved Keras config of GatedFusion expected a 'spec' entry; received keys \['name'\]$"):
        bk.GatedFusion.from_config({"name": "fusion"})
    with pytest.raises(
        spec.InputError, match=r"^gated: input 'present' expected shape \(B, 2\) .*received shape \(None, 3\)$"
    ):
        bk.build("gated", dim=s.dim).build((None, s.dim), (None, s.dim), (None, 3))


def test_symbolic_shapes_with_aux():
    s = make_spec("shomr")
    assert bk.build(s)(keras.Input((s.dim,)), keras.Input((s.dim,))).shape == (None, s.dim)
    # a fresh layer: Keras 3.15's Function assumes every call of a layer returns the
    # structure of its first call, so one instance cannot mix return_aux=False and True
    layer = bk.build(s)
    v_in, t_in = keras.Input((s.dim,)), keras.Input((s.dim,))
    fused, aux = layer(v_in, t_in, return_aux=True)
    assert fused.shape == (None, s.dim)
    assert {k: tuple(a.shape) for k, a in aux.items()} == {
        "confidence": (None, 2),
        "route_probs": (None, 3),
        "hard": (None,),
        "route": (None,),
        "fallback": (None,),
    }
    assert aux["route"].dtype == "int32"
    model = keras.Model([v_in, t_in], {"fused": fused, "route": aux["route"], "hard": aux["hard"]})
    v, t = inputs(s)
    got = model.predict_on_batch([v, t])
    eager, eager_aux = layer(v, t, return_aux=True)
    np.testing.assert_allclose(to_numpy(got["fused"]), to_numpy(eager), **TOL)
    np.testing.assert_array_equal(to_numpy(got["route"]), to_numpy(eager_aux["route"]))
    np.testing.assert_array_equal(to_numpy(got["hard"]), to_numpy(eager_aux["hard"]))


# --- training ---------------------------------------------------------------------------


@pytest.mark.skipif(
    not CAN_TRAIN, reason=f"the Keras {BACKEND} backend cannot train (no gradients)"
)
@pytest.mark.parametrize("case", CASE_IDS)
def test_one_step_fit_updates_every_param_that_gets_gradient(case):
    fields = dict(CASES[case])
    if "dropout" in fields:
        fields["dropout"] = 0.1  # element-wise dropout active in the step
    if fields["kind"] == "modality_dropout" and fields.get("drop_granularity", "batch") == "batch":
        # one draw for the whole batch: dropping both modalities (p 0.24 here, and the
        # draw of seed 0 on TensorFlow) leaves mlp.0.weight without gradient; keep v
        fields["p_img"] = 0.0
    s = spec.parse(fields)
    # the output's gradient alone: the energy loss (a layer loss by default) would also
    # train a trainable energy_weight, which gets no gradient from the output
    extra = {"energy_loss": False} if s.kind == "energy_aware_adaptive" else {}
    layer = bk.build(s, perturbed_params(s), seed=0, **extra)
    before = layer.canonical_params()
    model = functional_model(layer)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    # 64 samples: every route is drawn by some sample (seeded), so every path gets gradient;
    # shuffle=False keeps the draws on the same samples from run to run
    v, t = inputs(s, batch=64)
    y = np.random.default_rng(0).standard_normal((64, s.dim)).astype(np.float32)
    history = model.fit([v, t], y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = layer.canonical_params()
    frozen = s.no_output_gradient()
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert not changed & frozen
    # softmax is shift-invariant: q . b_key is the same for every key, so the key
    # bias gets an exactly-zero (or rounding-level) gradient
    key_biases = {name for name in before if name.endswith("attn.key.bias")}
    assert changed >= set(before) - frozen - key_biases


# --- XLA: jit_compile ----------------------------------------------------------------


def _jit_compiled_model_matches_reference(case):
    """A functional model compiled with ``jit_compile=True`` computes the reference in eval.

    Returns the spec, params, layer and inputs for the backend's own further checks.
    """
    s = make_spec(case)
    params = perturbed_params(s, seed=8)
    layer = bk.build(s, params)
    v, t = inputs(s, seed=8)
    model = functional_model(layer)
    model.compile(jit_compile=True)
    got = to_numpy(model.predict_on_batch([v, t]))
    if not s.noise(BATCH, training=False):
        np.testing.assert_allclose(got, fusion_ref.forward(s, params, v, t), **TOL)
    return s, params, layer, v, t


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA through tf.function on TensorFlow")
@pytest.mark.parametrize("case", CASE_IDS)
def test_jit_compile_on_tensorflow_matches_reference(case):
    _jit_compiled_model_matches_reference(case)


@pytest.mark.skipif(BACKEND != "jax", reason="jit_compile=True is checked on the JAX backend")
@pytest.mark.parametrize("case", CASE_IDS)
def test_jit_compile_on_jax_matches_reference(case):
    import jax

    s, params, layer, v, t = _jit_compiled_model_matches_reference(case)

    options = {"progress": 0.5} if s.kind == "energy_aware_adaptive" else {}
    noise = uniform_noise(s, BATCH, seed=8, training=True, **options)
    trainable = [w.value for w in layer.trainable_variables]
    non_trainable = [w.value for w in layer.non_trainable_variables]

    @jax.jit
    def train_call(trainable, non_trainable, v, t, noise):
        outputs, _ = layer.stateless_call(
            trainable, non_trainable, v, t, training=True, noise=noise, return_aux=True, **options
        )
        return outputs

    out, aux = train_call(trainable, non_trainable, v, t, noise or None)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, training=True, noise=noise, return_aux=True, **options
    )
    assert_matches_reference(s, out, aux, ref, ref_aux, training=True, **options)


def test_build_with_params_draws_no_random_initial_values(monkeypatch):
    """``build(s, params)`` creates the variables from ``params`` (on JAX each random
    initializer compiles a program per shape, only to be overwritten), tied copies
    included: they hold their own loaded values, not their source's."""
    from fusion_spec.backends.keras import _layers

    def refuse(*args, **kwargs):
        raise AssertionError("a random initializer ran although params were given")

    monkeypatch.setattr(_layers, "_initializer", refuse)
    s = spec.parse(dict(CASES["transformer_concat"], layers=3))
    params = perturbed_params(s, seed=7)
    tied = [p.name for p in s.params() if p.init.tied_to is not None]
    assert tied and any(
        not np.array_equal(params[p.name], params[p.init.tied_to])
        for p in s.params()
        if p.init.tied_to is not None
    )
    back = bk.build(s, params).canonical_params()
    for name, value in back.items():
        np.testing.assert_array_equal(value, params[name], name)
