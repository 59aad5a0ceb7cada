import json
import os
import stat
import subprocess
import sys

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
    s = make_spec("energy_aware_adaptive", energy_weight_trainable=True, energy_weight=0.01)
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
        ("dir", lambda p: p.mkdir(), r"dir: not a readable safetensors file \(expected a regular file, received a directory\)"),
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


# --- the file system: symlinks, special files, modes, temporary files ----------------------


def _saved(path) -> bytes:
    s = make_spec("gated")
    spec.save_weights(path, s, spec.init_params(s))
    return path.read_bytes()


def test_save_follows_a_symlink_and_keeps_it(tmp_path):
    target = tmp_path / "real.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    data = _saved(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == data != b"old"
    assert spec.load_weights(link)[0] == make_spec("gated")
    dangling = tmp_path / "dangling.safetensors"
    dangling.symlink_to(tmp_path / "new.safetensors")
    _saved(dangling)
    assert dangling.is_symlink() and (tmp_path / "new.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dangling.safetensors", "link.safetensors", "new.safetensors", "real.safetensors"
    ]


@pytest.mark.parametrize("make, kind", [
    (os.mkfifo, "a FIFO"),
    (os.mkdir, "a directory"),
])
def test_save_never_replaces_a_special_file(tmp_path, make, kind):
    s = make_spec("gated")
    path = tmp_path / "special"
    make(path)
    link = tmp_path / "link"
    link.symlink_to(path)
    for given, shown in ((path, f"{path}"), (link, f"{link} (-> {path})")):
        with pytest.raises(spec.WeightsError) as info:
            spec.save_weights(given, s, spec.init_params(s))
        assert str(info.value) == (
            f"{shown}: cannot write the weight file: expected a regular file or a new path, "
            f"received {kind}; nothing was replaced"
        )
    mode = os.lstat(path).st_mode
    assert (stat.S_ISFIFO(mode) if kind == "a FIFO" else stat.S_ISDIR(mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "special"]


def test_save_never_replaces_a_device_node(tmp_path, monkeypatch):
    """/dev/null is a character device on every Linux and macOS; the writer is replaced by
    a failing stub so that a regression fails the test instead of replacing the node."""
    from fusion_spec.spec import _weights

    def must_not_write(*args):
        raise AssertionError("save_weights tried to write over a device node")

    monkeypatch.setattr(_weights, "_write_atomic", must_not_write)
    s = make_spec("gated")
    with pytest.raises(spec.WeightsError, match=(
        r"^/dev/null: cannot write the weight file: expected a regular file or a new path, "
        r"received a character device; nothing was replaced$"
    )):
        spec.save_weights("/dev/null", s, spec.init_params(s))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_umask_and_an_existing_one_keeps_its_mode(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        path = tmp_path / "w.safetensors"
        _saved(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == expected
        os.chmod(path, 0o640)
        _saved(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named temporary"])
@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError(28, "No space left on device")])
def test_a_failed_save_leaves_the_target_and_no_temporary_file(tmp_path, monkeypatch, anonymous, fault):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"previous")
    if not anonymous:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)

    def failing_fsync(fd):
        assert os.fstat(fd).st_size > 1000  # the bytes were written: failing mid-save
        raise fault

    monkeypatch.setattr(os, "fsync", failing_fsync)
    expected = KeyboardInterrupt if fault is KeyboardInterrupt else spec.WeightsError
    with pytest.raises(expected) as info:
        _saved(path)
    if expected is spec.WeightsError:
        assert str(info.value) == (
            f"{path}: cannot write the weight file (OSError: [Errno 28] No space left on device)"
        )
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert path.read_bytes() == b"previous"


def test_a_killed_writer_leaves_no_temporary_file(tmp_path):
    """SIGKILL cannot be handled: the temporary file is anonymous (O_TMPFILE) until it
    is complete, so a process killed while writing leaves nothing behind."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("O_TMPFILE is Linux-only; elsewhere a killed writer leaves '.<name>.*.tmp'")
    path = tmp_path / "w.safetensors"
    code = (
        "import os, signal\n"
        "from fusion_spec import spec\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
        "s = spec.parse({'kind': 'gated', 'dim': 512})\n"
        f"spec.save_weights({str(path)!r}, s, spec.init_params(s))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=os.environ.copy())
    assert done.returncode == -9
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make, kind", [
    (os.mkfifo, "a FIFO"),
    (os.mkdir, "a directory"),
])
def test_load_refuses_a_special_file_before_opening_it(tmp_path, monkeypatch, make, kind):
    path = tmp_path / "special"
    make(path)
    link = tmp_path / "link.safetensors"
    link.symlink_to(path)
    real_open = os.open

    def guarded_open(name, *args, **kwargs):
        assert os.fspath(name) not in (str(path), str(link)), "opened before the check"
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    for given in (path, link):
        with pytest.raises(spec.WeightsError) as info:
            spec.load_weights(given)
        assert str(info.value) == (
            f"{given}: not a readable safetensors file (expected a regular file, received {kind})"
        )
    with pytest.raises(spec.WeightsError, match=(
        r"^/dev/null: not a readable safetensors file \(expected a regular file, "
        r"received a character device\)$"
    )):
        spec.load_weights("/dev/null")
