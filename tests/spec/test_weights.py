import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from fusion_spec import spec
from tests.conftest import make_spec, perturbed_params

KINDS = list(spec.RULES)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    s = make_spec(kind)
    params = perturbed_params(s)
    path = tmp_path / "w.safetensors"
    spec.save_weights(path, s, params)
    s2, p2 = spec.load_weights(path)
    assert s2 == s
    assert set(p2) == set(params)
    for name in params:
        assert p2[name].dtype == np.float32
        np.testing.assert_array_equal(p2[name], params[name])


def test_scalar_param_round_trip(tmp_path):
    s = make_spec("energy_aware_adaptive", energy_weight_trainable=True)
    params = spec.init_params(s)
    spec.save_weights(tmp_path / "w.safetensors", s, params)
    _, p2 = spec.load_weights(tmp_path / "w.safetensors")
    assert p2["energy_weight"].shape == () and p2["energy_weight"] == np.float32(0.01)


def test_transposed_views_are_saved_by_value(tmp_path):
    s = make_spec("film")
    params = perturbed_params(s)
    # a non-contiguous view with the right shape and values
    view = {**params, "gamma.weight": np.ascontiguousarray(params["gamma.weight"].T).T}
    assert not view["gamma.weight"].flags["C_CONTIGUOUS"]
    spec.save_weights(tmp_path / "w.safetensors", s, view)
    _, p2 = spec.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(p2["gamma.weight"], params["gamma.weight"])


def test_float64_params_are_stored_float32(tmp_path):
    s = make_spec("gated")
    params = {k: v.astype(np.float64) for k, v in spec.init_params(s).items()}
    spec.save_weights(tmp_path / "w.safetensors", s, params)
    _, p2 = spec.load_weights(tmp_path / "w.safetensors")
    assert p2["gate.weight"].dtype == np.float32


def test_save_rejects_params_that_do_not_match(tmp_path):
    s = make_spec("gated")
    with pytest.raises(spec.WeightsError, match="missing \\['gate.bias'\\]"):
        spec.save_weights(tmp_path / "w.safetensors", s, {"gate.weight": np.zeros((12, 24))})


def _write(path, tensors, spec_json, fmt="fusion-spec/1"):
    metadata = {"format": fmt}
    if spec_json is not None:
        metadata["fusion_spec"] = spec_json
    save_file(tensors, str(path), metadata=metadata)


def test_load_names_missing_unexpected_misshaped_and_dtype(tmp_path):
    s = make_spec("gated")
    p = spec.init_params(s)
    path = tmp_path / "bad.safetensors"
    _write(
        path,
        {"gate.weight": np.zeros((24, 12), np.float32), "gate.other": np.zeros(3, np.float32)},
        s.model_dump_json(),
    )
    with pytest.raises(spec.WeightsError) as info:
        spec.load_weights(path)
    text = str(info.value)
    assert str(path) in text
    assert "missing ['gate.bias']" in text and "unexpected ['gate.other']" in text
    assert "'gate.weight': expected shape (12, 24), received (24, 12)" in text
    _write(
        path,
        {"gate.weight": p["gate.weight"].astype(np.float64), "gate.bias": p["gate.bias"]},
        s.model_dump_json(),
    )
    with pytest.raises(
        spec.WeightsError, match="'gate.weight': expected dtype float32, received float64"
    ):
        spec.load_weights(path)


def test_load_rejects_foreign_files(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(2, np.float32)}, str(plain))
    with pytest.raises(
        spec.WeightsError, match="not a fusion-spec weight file: metadata key 'fusion_spec' missing"
    ):
        spec.load_weights(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not safetensors")
    with pytest.raises(spec.WeightsError, match="not a readable safetensors file"):
        spec.load_weights(garbage)
    wrong = tmp_path / "wrong.safetensors"
    _write(wrong, {"x": np.zeros(2, np.float32)}, json.dumps({"kind": "gated"}), fmt="other/9")
    with pytest.raises(
        spec.WeightsError, match="expected format 'fusion-spec/1', received 'other/9'"
    ):
        spec.load_weights(wrong)
    with pytest.raises(spec.WeightsError, match="not a readable"):
        spec.load_weights(tmp_path / "absent.safetensors")
