"""The Keras and PyTorch backends agree: same outputs, same canonical params, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras_cases import (
    BATCH,
    CALL_IDS,
    CALLS,
    CASES,
    MARGIN,
    TOL,
    inputs,
    make_spec,
    perturbed_params,
    to_numpy,
    uniform_noise,
    unsure_samples,
)

from fusion_spec import fusion_ref
from fusion_spec.backends import keras as bk
from fusion_spec.backends import torch as bt


def assert_same_bits(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name].view(np.uint32), b[name].view(np.uint32), name)


@pytest.mark.parametrize("case", list(CASES))
def test_canonical_params_round_trip_torch_keras_torch(case):
    s = make_spec(case)
    module = bt.build(s, generator=torch.Generator().manual_seed(0))
    from_torch = module.canonical_params()
    layer = bk.build(s, from_torch)
    from_keras = layer.canonical_params()
    assert_same_bits(from_keras, from_torch)
    assert_same_bits(bt.build(s, from_keras).canonical_params(), from_torch)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_same_outputs_as_the_torch_backend(case, options, training):
    s = make_spec(case)
    params = perturbed_params(s, seed=9)
    module = bt.build(s, params).train(training)
    layer = bk.build(s, params)
    v, t = inputs(s, seed=9)
    noise = uniform_noise(s, BATCH, seed=9, training=training, **options)
    with torch.no_grad():
        expected, expected_aux = module(
            torch.from_numpy(v),
            torch.from_numpy(t),
            noise={k: torch.from_numpy(u) for k, u in noise.items()} or None,
            return_aux=True,
            **options,
        )
    out, aux = layer(v, t, training=training, noise=noise or None, return_aux=True, **options)
    # samples whose decisions are within rounding of a flip may differ between backends
    _, ref_aux = fusion_ref.forward(
        s, params, v, t, training=training, noise=noise, return_aux=True, **options
    )
    sure = ~unsure_samples(
        s, ref_aux, BATCH, training=training, margin=MARGIN["float32"], **options
    )
    assert sure.sum() >= BATCH // 2
    np.testing.assert_allclose(to_numpy(out)[sure], expected.numpy()[sure], **TOL)
    assert set(aux) == set(expected_aux)
    for name, value in aux.items():
        got, want = to_numpy(value), expected_aux[name].numpy()
        if got.ndim and got.shape[0] == BATCH:
            got, want = got[sure], want[sure]
        np.testing.assert_allclose(got, want, **TOL, err_msg=name)
