"""An eager eval call runs the attention and routing layers over chunks of the batch (for
memory at large B: benchmarks/memory_bench.py); the results are the whole call's."""

from __future__ import annotations

import numpy as np
import pytest
from keras_cases import to_numpy

from fusion_spec.backends import keras as bk

CHUNKED = {"simple", "transformer_concat", "cross_attention", "shomr", "energy_aware_adaptive"}


def test_exactly_the_attention_and_routing_rules_chunk():
    assert {kind for kind, cls in bk.LAYERS.items() if cls.chunked_eval} == CHUNKED


@pytest.mark.parametrize("kind", sorted(CHUNKED))
def test_a_chunked_call_equals_the_whole_call(kind, monkeypatch):
    layer = bk.build(kind, dim=8, heads=2, seed=1)
    calls = []
    fuse = type(layer).fuse
    monkeypatch.setattr(
        type(layer), "fuse", staticmethod(lambda *a, **k: calls.append(1) or fuse(*a, **k))
    )
    rng = np.random.default_rng(0)
    v, t = (rng.standard_normal((37, 8), dtype=np.float32) for _ in range(2))
    present = rng.random((37, 2)) > 0.3
    layer.eval_chunk_elements = 0
    whole, whole_aux = layer(v, t, present, return_aux=True)
    whole_losses = [to_numpy(x) for x in layer.losses]
    assert len(calls) == 1
    layer.eval_chunk_elements = 10 * 8  # 10 rows: chunks of 10, 10, 10, 7
    chunked, chunked_aux = layer(v, t, present, return_aux=True)
    assert len(calls) == 1 + 4
    np.testing.assert_allclose(to_numpy(chunked), to_numpy(whole), rtol=1e-6, atol=1e-6)
    assert set(chunked_aux) == set(whole_aux)
    for name, a in whole_aux.items():
        np.testing.assert_allclose(to_numpy(chunked_aux[name]), to_numpy(a), rtol=1e-6, atol=1e-6)
    # energy_aware_adaptive's energy loss is the whole batch's, not a chunk's
    for got, want in zip([to_numpy(x) for x in layer.losses], whole_losses, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    layer(v, t, training=True)  # training: one piece
    assert len(calls) == 1 + 4 + 1
