"""Keras layers with per-modality widths: symbolic inputs, .keras files, training."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import CAN_TRAIN, TOL, to_numpy

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk


def _spec(kind: str):
    heads = {"heads": 2} if "heads" in spec.RULES[kind].model_fields else {}
    return spec.parse(kind, dim=8, image_dim=12, text_dim=6, **heads)


def _inputs(batch: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 12)).astype(np.float32),
            rng.standard_normal((batch, 6)).astype(np.float32))


def _model(layer):
    v = keras.Input(shape=(12,), name="image")
    t = keras.Input(shape=(6,), name="text")
    return keras.Model([v, t], layer(v, t))


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_symbolic_inputs_of_each_width_and_the_reference(kind):
    s = _spec(kind)
    params = spec.init_params(s, seed=5)
    model = _model(bk.build(s, params))
    v, t = _inputs()
    np.testing.assert_allclose(
        to_numpy(model.predict_on_batch([v, t])), fusion_ref.forward(s, params, v, t), **TOL
    )


def test_a_symbolic_input_of_the_wrong_width_is_refused():
    layer = bk.build(_spec("gated"))
    with pytest.raises(spec.InputError, match=r"'v' expected shape \(B, 12\)"):
        layer(keras.Input(shape=(8,)), keras.Input(shape=(6,)))


def test_keras_file_round_trip(tmp_path):
    s = _spec("cross_attention")
    model = _model(bk.build(s, spec.init_params(s, seed=2)))
    path = tmp_path / "w.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    v, t = _inputs(seed=3)
    np.testing.assert_array_equal(
        to_numpy(loaded.predict_on_batch([v, t])), to_numpy(model.predict_on_batch([v, t]))
    )
    layer = next(x for x in loaded.layers if isinstance(x, bk.FusionLayer))
    assert layer.spec == s and layer.canonical_params()["input_proj.image.weight"].shape == (8, 12)


@pytest.mark.skipif(not CAN_TRAIN, reason="this Keras backend cannot train")
def test_fit_moves_the_projections():
    # input_norm="none": the default's batch statistics subtract the projection's bias
    # again (any bias before a batch normalisation gets no gradient)
    s = _spec("gated").replace(input_norm="none")
    layer = bk.build(s, spec.init_params(s, seed=1))
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = layer.canonical_params()
    v, t = _inputs(32, seed=4)
    model.fit([v, t], np.ones((32, 8), np.float32), epochs=2, batch_size=16, verbose=0)
    after = layer.canonical_params()
    for name in ("input_proj.image.weight", "input_proj.text.bias"):
        assert not np.array_equal(before[name], after[name]), name
