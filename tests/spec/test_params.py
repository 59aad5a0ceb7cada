import math

import numpy as np
import pytest

from fusion_spec import spec
from tests.conftest import make_spec

KINDS = list(spec.RULES)


@pytest.mark.parametrize("kind", KINDS)
def test_init_params_match_declarations(kind):
    s = make_spec(kind)
    params = spec.init_params(s, seed=3)
    assert list(params) == [p.name for p in s.params()]
    for p in s.params():
        a = params[p.name]
        assert a.dtype == np.float32 and a.shape == p.shape and a.flags["C_CONTIGUOUS"]
        if p.init.kind == "uniform" and p.init.tied_to is None:
            assert np.all(np.abs(a) <= p.init.bound)
        if p.init.kind == "constant":
            assert np.all(a == p.init.array(p.shape).astype(np.float32))
        if p.init.tied_to is not None:
            np.testing.assert_array_equal(a, params[p.init.tied_to])
    again = spec.init_params(s, seed=3)
    assert all(np.array_equal(params[n], again[n]) for n in params)
    other = spec.init_params(s, seed=4)
    assert any(not np.array_equal(params[n], other[n]) for n in params if params[n].size > 1)


def test_init_distributions_match_pytorch_defaults():
    d = 64
    s = spec.parse({"kind": "cross_attention", "dim": d, "heads": 4})
    p = spec.init_params(s, seed=0)
    # Linear(D -> 4D): U(-1/sqrt(D), 1/sqrt(D)); its variance is bound^2 / 3
    w = p["ffn.up.weight"]
    assert abs(w.max() - 1 / math.sqrt(d)) < 0.01 / math.sqrt(d)
    assert w.var() == pytest.approx((1 / d) / 3, rel=0.05)
    # attention in-projection: Xavier over the packed (3D, D) matrix
    bound = math.sqrt(6 / (4 * d))
    q = p["attn.query.weight"]
    assert q.max() <= bound and q.max() > 0.98 * bound
    assert np.all(p["attn.query.bias"] == 0) and np.all(p["attn.output.bias"] == 0)
    assert np.all(p["norm1.weight"] == 1) and np.all(p["norm1.bias"] == 0)
    t = spec.parse({"kind": "transformer_concat", "dim": d, "heads": 4, "layers": 2})
    e = spec.init_params(t)["modality_embedding"]
    assert e.shape == (2, d) and abs(e.std() - 0.02) < 0.003  # 128 draws: std error ~6%
    original = spec.init_params(spec.parse(t, modality_embedding_std=1.0))["modality_embedding"]
    assert abs(original.std() - 1) < 0.15  # torch.randn, as the original


def test_encoder_layers_start_identical_like_the_original():
    s = spec.parse({"kind": "simple", "dim": 8, "heads": 2, "layers": 3})
    p = spec.init_params(s)
    for name in p:
        if name.startswith("encoder.2."):
            np.testing.assert_array_equal(p[name], p["encoder.0." + name[len("encoder.2.") :]])


def test_trainable_energy_weight_is_a_scalar_param():
    s = spec.parse(
        {
            "kind": "energy_aware_adaptive",
            "dim": 8,
            "heads": 2,
            "energy_weight_trainable": True,
            "energy_weight": 0.25,
        }
    )
    p = spec.init_params(s)
    assert p["energy_weight"].shape == () and p["energy_weight"] == np.float32(0.25)


def test_check_params_names_every_problem():
    s = make_spec("gated", input_norm="none")  # the running statistics would be missing too
    p = spec.init_params(s)
    bad = {"gate.weight": p["gate.weight"].T, "extra": np.zeros(2)}
    with pytest.raises(spec.WeightsError) as info:
        spec.check_params(s, bad)
    text = str(info.value)
    assert "gated:" in text
    assert "missing ['gate.bias']" in text
    assert "unexpected ['extra']" in text
    assert "'gate.weight': expected shape (12, 24), received (24, 12)" in text
    with pytest.raises(spec.WeightsError, match="expected a floating dtype, received ndarray of shape \\(12, 24\\) and dtype int64"):
        spec.check_params(
            s, {"gate.weight": np.zeros((12, 24), dtype=np.int64), "gate.bias": p["gate.bias"]}
        )
