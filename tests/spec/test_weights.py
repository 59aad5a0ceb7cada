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


# --- every failure is a WeightsError naming the path and the reason ------------------------


def _bfloat16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (truncation; the values chosen are exact in bfloat16)."""
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _write_raw(path, header: dict, data: bytes) -> None:
    """A safetensors file written by hand: 8-byte header length, JSON header, data."""
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_bfloat16_and_float16_files_load_without_ml_dtypes(tmp_path):
    """bfloat16 is decoded by hand (NumPy's bfloat16 comes from ml_dtypes, not a core
    dependency); both widen exactly to float32."""
    s = make_spec("gated")
    weight = (np.arange(12 * 24, dtype=np.float32).reshape(12, 24) - 100.0) / 8.0  # exact in bf16
    bias = np.linspace(-1, 1, 12, dtype=np.float32).astype(np.float16).astype(np.float32)
    bf16 = _bfloat16_bits(weight).tobytes()
    f16 = bias.astype(np.float16).tobytes()
    header = {
        "__metadata__": {"format": "fusion-spec/1", "fusion_spec": s.model_dump_json()},
        "gate.weight": {"dtype": "BF16", "shape": [12, 24], "data_offsets": [0, len(bf16)]},
        "gate.bias": {"dtype": "F16", "shape": [12], "data_offsets": [len(bf16), len(bf16) + len(f16)]},
    }
    path = tmp_path / "low.safetensors"
    _write_raw(path, header, bf16 + f16)
    s2, p = spec.load_weights(path)
    assert s2 == s and p["gate.weight"].dtype == np.float32 and p["gate.bias"].dtype == np.float32
    np.testing.assert_array_equal(p["gate.weight"], weight)
    np.testing.assert_array_equal(p["gate.bias"], bias)
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="cross-check with ml_dtypes where present")
    np.testing.assert_array_equal(
        np.frombuffer(bf16, dtype=ml_dtypes.bfloat16).reshape(12, 24).astype(np.float32), weight
    )


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("absent.safetensors", None, r"absent.safetensors: not a readable safetensors file \(no such file\)"),
        ("empty.safetensors", lambda p: p.write_bytes(b""), r"empty.safetensors: not a readable safetensors file \("),
        ("random.safetensors", lambda p: p.write_bytes(bytes(range(256)) * 3), r"random.safetensors: not a readable safetensors file"),
        ("dir", lambda p: p.mkdir(), r"dir: not a readable safetensors file \(a directory\)"),
        ("int.safetensors", lambda p: save_file({"x": np.zeros(2, np.int32)}, str(p)), r"unsupported tensor dtypes \('x': I32\); expected F32, F16 or BF16"),
    ],
)
def test_unreadable_files_are_weights_errors(tmp_path, name, make, match):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(spec.WeightsError, match=match):
        spec.load_weights(path)


def test_truncated_file_is_a_weights_error(tmp_path):
    s = make_spec("gated")
    path = tmp_path / "w.safetensors"
    spec.save_weights(path, s, spec.init_params(s))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(spec.WeightsError, match=r"w.safetensors: not a readable safetensors file"):
        spec.load_weights(path)


def test_an_invalid_embedded_spec_is_a_weights_error(tmp_path):
    path = tmp_path / "w.safetensors"
    _write(path, {"x": np.zeros(2, np.float32)}, json.dumps({"kind": "gated", "dim": -4}))
    with pytest.raises(
        spec.WeightsError,
        match=r"w.safetensors: the embedded spec is invalid: gated: field 'dim': input should be "
        r"greater than 0; received dim=-4",
    ):
        spec.load_weights(path)
    _write(path, {"x": np.zeros(2, np.float32)}, "{not json")
    with pytest.raises(spec.WeightsError, match=r"the embedded spec is invalid: spec: the JSON text"):
        spec.load_weights(path)


def test_save_errors_name_the_path_and_reason(tmp_path):
    s = make_spec("gated")
    params = spec.init_params(s)
    missing = tmp_path / "no" / "such" / "w.safetensors"
    with pytest.raises(spec.WeightsError, match=r"w.safetensors: cannot write the weight file: folder .*no/such does not exist"):
        spec.save_weights(missing, s, params)
    with pytest.raises(spec.WeightsError, match=r"gated: params expected a mapping .*received None"):
        spec.save_weights(tmp_path / "w.safetensors", s, None)
    with pytest.raises(spec.WeightsError, match=r"'gate.weight': expected an array, received list of length 2"):
        spec.save_weights(tmp_path / "w.safetensors", s, {**params, "gate.weight": [[1.0], [1.0, 2.0]]})
    with pytest.raises(spec.WeightsError, match=r"save_weights: argument 'path' expected a str or os.PathLike; received None"):
        spec.save_weights(None, s, params)
    with pytest.raises(spec.SpecError, match=r"gated: field 'dim'"):
        spec.save_weights(tmp_path / "w.safetensors", s.model_copy(update={"dim": -1}), params)
    assert not (tmp_path / "w.safetensors").exists()
