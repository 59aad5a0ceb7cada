"""Monitoring the routing rules in Keras: route shares, expected energy and the energy
loss as values ``fit`` writes into ``history`` (``monitor=True`` + ``MonitorCallback``)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import BACKEND, CAN_TRAIN, to_numpy

from fusion_spec import spec
from fusion_spec.backends import keras as bk

D = 8
ROUTED = ("shomr", "energy_aware_adaptive")


def _inputs(batch=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, D)).astype(np.float32) for _ in range(2)]


def _layer(kind, **kw):
    return bk.build(kind, dim=D, heads=2, dropout=0.0, seed=0, monitor=True, **kw)


@pytest.mark.parametrize("kind", ROUTED)
def test_monitor_values_are_the_means_of_the_training_calls_aux(kind):
    """Two training calls with given noise: the averages are the means of what the aux
    outputs of those calls say; eval calls do not count; a reset empties them."""
    layer = _layer(kind)
    s = layer.spec
    rng = np.random.default_rng(3)
    seen = []
    for seed in (0, 1):
        v, t = _inputs(16, seed)
        noise = {n.name: rng.random(n.shape).astype(np.float32) for n in s.noise(16, training=True)}
        _, aux = layer(v, t, training=True, noise=noise, return_aux=True)
        route = to_numpy(aux["route"])
        row = [np.mean(route == k) for k in range(3)]
        if "expected_energy" in aux:
            row += [np.mean(to_numpy(aux["expected_energy"])), float(to_numpy(aux["energy_loss"]))]
        seen.append(row)
    layer(*_inputs(16, 5), training=False)  # eval: not counted
    values = layer.monitor_values()
    assert list(values) == list(layer.monitored)
    # float32 sums of two values: relative rounding ~1e-7
    np.testing.assert_allclose(list(values.values()), np.mean(seen, axis=0), rtol=1e-6, atol=1e-7)
    assert sum(values[k] for k in ("route_image", "route_text", "route_both")) == pytest.approx(1.0)
    layer.reset_monitor()
    assert layer.monitor_values() == {}


def test_without_monitor_the_weights_are_the_canonical_ones():
    plain = bk.build("shomr", dim=D, heads=2)
    watched = _layer("shomr")
    assert len(watched.weights) == len(plain.weights) + 2
    assert set(watched.canonical_params()) == set(plain.canonical_params())
    assert plain.monitor_values() == {}
    assert watched.get_config()["monitor"] is True
    with pytest.raises(spec.InputError, match=r"shomr: argument 'monitor' expected True or False; received"):
        bk.build("shomr", dim=D, heads=2, monitor=1)


@pytest.mark.skipif(not CAN_TRAIN, reason=f"the Keras {BACKEND} backend cannot train")
def test_fit_writes_the_epoch_averages_into_history():
    fusion = _layer("energy_aware_adaptive", energy_budget_mJ=1.0)  # over budget: loss > 0
    v_in, t_in = keras.Input((D,)), keras.Input((D,))
    out = keras.layers.Dense(1)(fusion([v_in, t_in]))
    model = keras.Model([v_in, t_in], out)
    model.compile(optimizer="adam", loss="mse")
    v, t = _inputs(64)
    y = np.zeros((64, 1), np.float32)
    history = model.fit([v, t], y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[bk.MonitorCallback()])
    name = fusion.name
    for key in ("route_image", "route_text", "route_both", "expected_energy", "energy_loss"):
        assert len(history.history[f"{name}_{key}"]) == 2, (key, history.history.keys())
    shares = [history.history[f"{name}_route_{r}"][-1] for r in ("image", "text", "both")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= x <= 1.0 for x in shares)
    # the last epoch's averages are those of its 4 training batches only (reset each epoch)
    assert float(to_numpy(fusion.monitor_count.value)) == 4.0
    assert history.history[f"{name}_energy_loss"][-1] > 0.0
    assert history.history[f"{name}_expected_energy"][-1] > 1.0  # above the budget
    with pytest.raises(spec.InputError, match="monitor=True"):
        plain = keras.Model([v_in, t_in], keras.layers.Dense(1)(bk.build("gated", dim=D)([v_in, t_in])))
        plain.compile(optimizer="sgd", loss="mse")
        plain.fit([v, t], y, epochs=1, verbose=0, callbacks=[bk.MonitorCallback()])
