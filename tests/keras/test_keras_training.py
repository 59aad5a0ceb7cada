"""Training in real Keras models: energy loss, progress schedule, two-input convention, builders."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import BACKEND, CAN_TRAIN, to_numpy

from fusion_spec import spec
from fusion_spec.backends import keras as bk

needs_training = pytest.mark.skipif(
    not CAN_TRAIN, reason=f"the Keras {BACKEND} backend cannot train (no gradients)"
)
D = 8


def _inputs(batch=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, D)).astype(np.float32) for _ in range(2)]


def _model(layer, **call_kwargs):
    v_in, t_in = keras.Input((D,), name="v"), keras.Input((D,), name="t")
    return keras.Model([v_in, t_in], layer([v_in, t_in], **call_kwargs))


def _expected_energy(layer, v, t):
    return float(np.mean(to_numpy(layer(v, t, return_aux=True)[1]["expected_energy"])))


# --- the two-input convention, symbolic checks, repr, builders ----------------------------


def test_layer_takes_a_pair_as_well_as_two_arguments():
    layer = bk.build("gated", dim=D, seed=0)
    v, t = _inputs()
    np.testing.assert_array_equal(to_numpy(layer([v, t])), to_numpy(layer(v, t)))
    np.testing.assert_array_equal(to_numpy(layer((v, t))), to_numpy(layer(v, t)))
    model = _model(bk.build("shomr", dim=D, heads=2, seed=0))
    assert model.output.shape == (None, D)
    with pytest.raises(spec.InputError, match=r"gated: argument 't' expected an array or tensor of shape \(B, 8\) or \(B, L_t, 8\); received None"):
        layer(v)
    with pytest.raises(spec.InputError, match=r"gated: expected two inputs, layer\(v, t\) or layer\(\[v, t\]\); received a list of 4 \(three: \[v, t, present\]\)"):
        layer([v, t, v, t])
    # three inputs: [v, t, present], as a functional model with the mask passes them
    present = np.array([[True, False]] * v.shape[0])
    np.testing.assert_array_equal(
        to_numpy(layer([v, t, present])), to_numpy(layer(v, t, present))
    )
    with pytest.raises(spec.InputError, match=r"gated: argument 'present' expected shape \(B, 2\)"):
        layer([v, t, v])


def test_input_dim_is_checked_when_the_model_is_built():
    """A functional model with a wrong input width fails at construction, not at fit."""
    for layer in (bk.build("gated", dim=D), bk.LAYERS["gated"](spec.parse("gated", dim=D))):
        with pytest.raises(ValueError, match=r"gated: argument 'v' expected shape \(B, 8\) or \(B, L_v, 8\); received shape \(None, 4\)"):
            layer([keras.Input((4,)), keras.Input((D,))])
        with pytest.raises(ValueError, match=r"argument 't' expected shape \(B, 8\) or \(B, L_t, 8\); received shape \(None, 16\)"):
            layer(keras.Input((D,)), keras.Input((16,)))


def test_repr_shows_the_spec():
    layer = bk.build("film", dim=D, name="fuse")
    assert repr(layer) == f"<FilmFusion name=fuse, built=True, spec={spec.parse('film', dim=D)!r}>"


def test_build_takes_kind_and_fields():
    layer = bk.build("gated", dim=64)
    assert layer.spec == spec.parse("gated", dim=64)
    eaa = bk.build("energy_aware_adaptive", dim=D, heads=2, energy_loss=False, track_progress=True)
    assert (eaa.energy_loss, eaa.track_progress, eaa.spec.dim) == (False, True, D)
    with pytest.raises(spec.SpecError, match="gated: field 'dim' is required and was not given"):
        bk.build("gated")
    with pytest.raises(TypeError, match="energy_loss"):
        bk.build("energy_aware_adaptive", dim=D, heads=2, energy_loss="yes")


def test_route_is_int32_as_in_torch():
    v, t = _inputs()
    for kind in ("shomr", "energy_aware_adaptive"):
        _, aux = bk.build(kind, dim=D, heads=2, seed=0)(v, t, return_aux=True)
        assert keras.backend.standardize_dtype(aux["route"].dtype) == "int32"


# --- the energy loss --------------------------------------------------------------------------


def test_energy_loss_is_a_layer_loss_by_default():
    layer = bk.build("energy_aware_adaptive", dim=D, heads=2, seed=0, energy_budget_mJ=0.0)
    v, t = _inputs()
    _, aux = layer(v, t, return_aux=True)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(to_numpy(layer.losses[0]), to_numpy(aux["energy_loss"]), rtol=1e-6)
    quiet = bk.build("energy_aware_adaptive", dim=D, heads=2, seed=0, energy_loss=False)
    quiet(v, t)
    assert quiet.losses == []


@needs_training
def test_fit_trains_the_router_with_the_energy_loss_and_keras_file_keeps_it(tmp_path):
    """Only the energy loss acts (the task loss is 0 whatever the output: weight 0), and
    fit lowers the expected energy below the budget; the .keras file keeps the option."""
    budget = 4.0
    layer = bk.build(
        "energy_aware_adaptive", dim=D, heads=2, seed=0, energy_budget_mJ=budget,
        energy_weight=1.0,
    )
    v, t = _inputs(64)
    before = _expected_energy(layer, v, t)
    assert before > budget + 1.0  # untrained: about 8.5 mJ (router_init_bias favours "both")
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse", loss_weights=0.0)
    history = model.fit([v, t], np.zeros((64, D), np.float32), batch_size=32, epochs=8, verbose=0)
    assert history.history["loss"][0] > 1.0  # the energy loss, lambda (mean energy - budget)
    after = _expected_energy(layer, v, t)
    assert after < before - 1.0, (before, after)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    (fusion,) = [x for x in loaded.layers if isinstance(x, bk.EnergyAwareAdaptiveFusion)]
    assert fusion.energy_loss is True and fusion.spec == layer.spec
    fusion(v, t)
    assert len(fusion.losses) == 1


# --- the progress schedule --------------------------------------------------------------------


@needs_training
def test_progress_callback_sets_the_schedule_from_the_epoch(tmp_path):
    """progress = epoch / epochs at each epoch's start, inside the compiled fit, and the
    output drop follows it: p = min(1, 4 progress) with every flag set is 0 in epoch 0
    (nothing dropped) and 1 from epoch 1 (every output zeroed: the loss is mean(y^2) = 1)."""
    layer = bk.build(
        "energy_aware_adaptive", dim=D, heads=2, seed=0, track_progress=True, dropout=0.0,
        output_drop_start=0.0, output_drop_ramp=4.0, output_drop_max=1.0, output_drop_flag_p=1.0,
        energy_budget_mJ=10.0,  # above the costliest route (9.8 mJ): the energy loss is 0
    )
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((float(to_numpy(layer.progress.value)), logs["loss"]))

    v, t = _inputs(32)
    y = np.ones((32, D), np.float32)
    model.fit([v, t], y, batch_size=8, epochs=4, verbose=0,
              callbacks=[bk.ProgressCallback(), Record()])
    assert [p for p, _ in seen] == [0.0, 0.25, 0.5, 0.75]
    assert abs(seen[0][1] - 1.0) > 0.05  # the outputs kept (sampled routes, not zero)
    # the energy loss (budget 10 mJ, above every route's cost) adds nothing
    assert [loss for _, loss in seen[1:]] == pytest.approx([1.0] * 3, rel=1e-6)
    model.save(tmp_path / "p.keras")
    loaded = keras.models.load_model(tmp_path / "p.keras")
    (fusion,) = [x for x in loaded.layers if isinstance(x, bk.EnergyAwareAdaptiveFusion)]
    assert fusion.track_progress and float(to_numpy(fusion.progress.value)) == 0.75
    with pytest.raises(spec.InputError, match="track_progress=True"):
        plain = _model(bk.build("gated", dim=D))
        plain.compile(optimizer="sgd", loss="mse")
        plain.fit([v, t], y, epochs=1, verbose=0, callbacks=[bk.ProgressCallback()])


def test_progress_as_a_tensor_matches_the_float():
    """A scalar tensor gives the same output as the float (same noise); a variable too."""
    layer = bk.build("energy_aware_adaptive", dim=D, heads=2, seed=0, dropout=0.0)
    v, t = _inputs(16)
    s = layer.spec
    rng = np.random.default_rng(1)
    noise = {n.name: rng.random(n.shape).astype(np.float32)
             for n in s.noise(16, training=True, progress=0.5)}
    by_float = layer(v, t, training=True, noise=noise, progress=0.5, return_aux=True)[1]
    for value in (keras.ops.convert_to_tensor(0.5), keras.Variable(0.5, trainable=False)):
        by_tensor = layer(v, t, training=True, noise=noise, progress=value, return_aux=True)[1]
        np.testing.assert_array_equal(to_numpy(by_tensor["output_kept"]), to_numpy(by_float["output_kept"]))
    # a backend tensor is refused by the layer, a NumPy array (Keras's numpy backend) by the spec
    with pytest.raises(ValueError, match=r"energy_aware_adaptive: call option 'progress' expected None.* a float in \[0, 1\].*; received .*shape \(2,\)"):
        layer(v, t, training=True, progress=keras.ops.ones((2,)))


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit: a traced progress")
def test_progress_traced_under_jax_jit():
    import jax

    layer = bk.build("energy_aware_adaptive", dim=D, heads=2, seed=0, dropout=0.0,
                     output_drop_start=0.0, output_drop_ramp=1.0, output_drop_flag_p=1.0,
                     output_drop_max=1.0)
    v, t = _inputs(16)
    s = layer.spec
    noise = {"route": np.full(16, 0.5, np.float32), "output_drop_gate": np.array([0.5], np.float32),
             "output_drop_flags": np.zeros((16, 2), np.float32)}
    trainable = [w.value for w in layer.trainable_variables]
    non_trainable = [w.value for w in layer.non_trainable_variables]

    @jax.jit
    def kept(progress):
        (out, aux), _ = layer.stateless_call(
            trainable, non_trainable, v, t, training=True, noise=noise, progress=progress,
            return_aux=True,
        )
        return aux["output_kept"]

    assert s.output_drop_probability(0.4) == pytest.approx(0.4)
    np.testing.assert_array_equal(np.asarray(kept(0.4)), np.ones(16))  # gate 0.5 >= p 0.4
    np.testing.assert_array_equal(np.asarray(kept(0.6)), np.zeros(16))  # gate 0.5 < p 0.6


@needs_training
def test_fit_a_freshly_initialised_encoder_with_tied_layers():
    """Layers 1.. start as copies of layer 0 (tied_to): separate buffers, so a compiled
    JAX step can donate each (sharing one raised 'donate the same buffer twice')."""
    layer = bk.build("transformer_concat", dim=D, heads=2, layers=2, seed=0)
    before = layer.canonical_params()
    np.testing.assert_array_equal(before["encoder.1.ffn.up.weight"], before["encoder.0.ffn.up.weight"])
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    v, t = _inputs(16)
    model.fit([v, t], np.zeros((16, D), np.float32), batch_size=8, epochs=1, verbose=0)
    after = layer.canonical_params()
    assert not np.array_equal(after["encoder.1.ffn.up.weight"], before["encoder.1.ffn.up.weight"])
