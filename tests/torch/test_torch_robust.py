"""The PyTorch backend's defined answers to bad calls, bad checkpoints and edge cases."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from tests.legacy_original import build_original
from tests.robust_cases import (
    EDGE_SPECS,
    MAGNITUDE,
    NAN_ROWS,
    assert_agrees,
    bad_calls,
    build_spec,
    edge_calls,
    nan_inputs,
    ok,
    training_noise,
)

_MODULES: dict[str, torch.nn.Module] = {}


def module_for(s) -> torch.nn.Module:
    """One built module per spec, reused across cases (building is most of a case's time)."""
    key = s.model_dump_json()
    if key not in _MODULES:
        _MODULES[key] = bt.build(s, spec.init_params(s, seed=2))
    return _MODULES[key]


@pytest.mark.parametrize("case", bad_calls("torch"), ids=lambda c: c.id)
def test_bad_call_is_an_input_error_naming_the_argument(case):
    module = module_for(build_spec(case.spec)).train(case.training)
    with pytest.raises(spec.InputError, match=case.match):
        module(case.v, case.t, **case.kwargs)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: torch.zeros(3, 8, dtype=torch.complex64), r"argument 'v' expected a floating dtype; received complex64"),
        (lambda: torch.zeros(3, 8, dtype=torch.int32), r"argument 'v' expected a floating dtype; received int32"),
        (lambda: torch.zeros(3, 8, dtype=torch.bool), r"argument 'v' expected a floating dtype; received bool"),
        (lambda: torch.zeros(3, 8, device="meta"), r"argument 'v' expected a tensor on cpu \(the module's device\); received one on meta"),
    ],
)
def test_bad_tensors_are_input_errors(make, match):
    with pytest.raises(spec.InputError, match=match):
        module_for(build_spec("gated"))(make(), torch.zeros(3, 8))


def test_an_integer_present_tensor_on_the_cpu_is_checked_as_the_reference_checks_it():
    """A CPU tensor's values are read for free in an eager call: 2 or -1 is refused (the
    reference refuses them) and 0/1 computes what the bool mask computes."""
    module = module_for(build_spec("gated"))
    v, t = torch.from_numpy(ok()), torch.from_numpy(ok(seed=1))
    for bad in ([[1, 2], [1, 1], [0, 1]], [[1, -1], [1, 1], [0, 1]]):
        with pytest.raises(spec.InputError, match=r"gated: argument 'present' expected booleans \(or 0/1\); received values \[-?[12]\]"):
            module(v, t, torch.tensor(bad))
    mask = torch.tensor([[1, 0], [1, 1], [0, 1]])
    torch.testing.assert_close(module(v, t, mask), module(v, t, mask.bool()), rtol=0, atol=0)


def test_noise_tensors_are_checked_for_names_shapes_and_dtypes_not_values():
    """Reading a tensor's values would synchronise: documented, and NumPy noise is range-checked."""
    module = module_for(build_spec("shomr")).train()
    with pytest.raises(spec.InputError, match=r"noise 'route' expected a floating dtype; received complex64"):
        module(ok(), ok(), noise={"route": torch.zeros(3, dtype=torch.complex64)})
    module(ok(), ok(), noise={"route": torch.full((3,), 5.0)})  # not read on the host
    module.eval()


def test_build_arguments_are_checked():
    s = build_spec("gated")
    with pytest.raises(spec.InputError, match=r"gated: argument 'generator' expected None or a torch.Generator; received int 3"):
        bt.build(s, generator=3)
    with pytest.raises(spec.InputError, match=r"argument 'skip_unrouted' expected True or False; received str 'yes'"):
        bt.build(s, skip_unrouted="yes")
    with pytest.raises(spec.SpecError, match=r"gated: field 'dim': input should be greater than 0; received dim=-1"):
        bt.build(s.model_copy(update={"dim": -1}))
    with pytest.raises(spec.SpecError, match=r"shomr: heads must divide dim; received heads=3 with dim=8"):
        bt.build(build_spec("shomr").model_copy(update={"heads": 3}))
    with pytest.raises(spec.SpecError, match=r"field 'kind': input should be 'gated'; received kind='film'"):
        bt.build(s.model_copy(update={"kind": "film"}))
    with pytest.raises(spec.WeightsError, match=r"gated: canonical params expected a mapping .*received list"):
        bt.build(s, [1, 2])


def test_numpy_views_bfloat16_and_float16_inputs_are_accepted():
    module = module_for(build_spec("gated"))
    v, t = ok(), ok(seed=1)
    with torch.no_grad():
        expected = module(torch.from_numpy(v[::-1].copy()), torch.from_numpy(t[:, ::-1].copy()))
        np.testing.assert_array_equal(module(v[::-1], t[:, ::-1]), expected)
        half = module(v.astype(np.float16), t)
        np.testing.assert_array_equal(half, module(torch.from_numpy(v.astype(np.float16)), torch.from_numpy(t)))
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
    with torch.no_grad():
        got = module(v.astype(ml_dtypes.bfloat16), t)
        want = module(torch.from_numpy(v).to(torch.bfloat16), torch.from_numpy(t))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_floating_inputs_are_cast_to_the_parameters_dtype(dtype):
    """docs/errors.md, "Input dtypes": the output has the parameters' dtype and equals the
    call on inputs cast beforehand; a float64 module computes float32 inputs in float64."""
    module = module_for(build_spec("gated"))
    v, t = torch.from_numpy(ok()).to(dtype), torch.from_numpy(ok(seed=1)).to(dtype)
    with torch.no_grad():
        out = module(v, t)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, module(v.float(), t.float()), rtol=0, atol=0)
        double = bt.build(build_spec("gated"), spec.init_params(build_spec("gated"), seed=2)).double()
        assert double(v.float(), t.float()).dtype == torch.float64


# --- edge cases, against the reference ------------------------------------------------


def _call(s, v, t, training, options, noise):
    module = module_for(s).train(training)
    with torch.no_grad():
        out, aux = module(v, t, noise=noise, return_aux=True, **options)
    module.eval()
    p = module.canonical_params()
    ref, ref_aux = fusion_ref.forward(
        s, p, v, t, training=training, noise=noise, return_aux=True, **options
    )
    aux = {k: x.numpy() for k, x in aux.items()}
    return out.numpy(), aux, ref, ref_aux


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_empty_batch_matches_the_reference_and_energy_loss_is_zero(kind):
    s = EDGE_SPECS[kind]
    empty = np.zeros((0, s.dim), np.float32)
    for training, options in edge_calls(kind):
        noise = training_noise(s, 0, **options) if s.noise(0, training=training, **options) else None
        out, aux, ref, ref_aux = _call(s, empty, empty, training, options, noise)
        assert out.shape == (0, s.dim)
        assert_agrees(s, out, aux, ref, ref_aux, training=training, **options)
        if kind == "energy_aware_adaptive":
            assert aux["energy_loss"] == 0.0  # not NaN (the mean of nothing)


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_nan_and_inf_rows_match_the_reference(kind):
    s = EDGE_SPECS[kind]
    v, t = nan_inputs()
    for training, options in edge_calls(kind):
        noise = training_noise(s, 5, **options) if s.noise(5, training=training, **options) else None
        out, aux, ref, ref_aux = _call(s, v, t, training, options, noise)
        np.testing.assert_array_equal(~np.isfinite(out).all(axis=-1), NAN_ROWS)
        assert_agrees(s, out, aux, ref, ref_aux, training=training, **options)


@pytest.mark.parametrize("kind", list(EDGE_SPECS))
def test_documented_magnitude_range_agrees_with_the_reference(kind):
    s = EDGE_SPECS[kind]
    for sign in (1.0, -1.0):
        v, t = ok(8) * MAGNITUDE * sign, ok(8, seed=1) * MAGNITUDE
        noise = training_noise(s, 8) if s.noise(8, training=False) else None
        out, aux, ref, ref_aux = _call(s, v, t, False, {}, noise)
        assert np.isfinite(out).all()
        assert_agrees(s, out, aux, ref, ref_aux, training=False)


@pytest.mark.parametrize(
    "fields",
    [
        {"routing_temperature": 1e-3},
        {"routing_temperature": 1e3},
        {"confidence_threshold": 0.0},
        {"confidence_threshold": 1.0},
        {"confidence_threshold": 0.5, "fallback_threshold": 1.0},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_extreme_valid_temperatures_and_thresholds_agree_with_the_reference(fields):
    s = EDGE_SPECS["shomr"].replace(**fields)
    v, t = ok(16) * 3, ok(16, seed=1) * 3
    for training in (False, True):
        noise = training_noise(s, 16) if training else None
        out, aux, ref, ref_aux = _call(s, v, t, training, {}, noise)
        assert np.isfinite(out).all() and np.isfinite(aux["route_probs"]).all()
        assert_agrees(s, out, aux, ref, ref_aux, training=training)


def test_energy_extremes_agree_with_the_reference():
    s = EDGE_SPECS["energy_aware_adaptive"].replace(
        energy_costs_mJ=(0.0, 1e6, 1e6), energy_weight=1e6, energy_budget_mJ=0.0
    )
    out, aux, ref, ref_aux = _call(s, ok(), ok(seed=1), False, {}, None)
    assert np.isfinite(aux["energy_loss"])
    assert_agrees(s, out, aux, ref, ref_aux, training=False)


# --- checkpoints: every failure a WeightsError naming the path, no pickled code runs ----


class Payload:
    """Unpickling calls ``open(marker, "w")``: a file appears if pickled code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _gated_state():
    torch.manual_seed(0)
    return build_original("gated", dim=8).state_dict()


def _write(path, make):
    make(path)
    return path


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("absent.pt", None, r"absent.pt: no such checkpoint file"),
        ("empty.pt", lambda p: p.write_bytes(b""), r"empty.pt: not a torch.save checkpoint \(the file is empty\)"),
        ("random.pt", lambda p: p.write_bytes(bytes(range(256)) * 4), r"random.pt: refused: not a checkpoint of tensors .*stopped at: Unsupported operand 0\); nothing in it was run"),
        ("text.pt", lambda p: p.write_text("hello"), r"text.pt: (refused|not a readable torch.save checkpoint)"),
        (
            "truncated.pt",
            lambda p: (torch.save(_gated_state(), p), p.write_bytes(p.read_bytes()[:300])),
            r"truncated.pt: not a readable torch.save checkpoint",
        ),
        ("list.pt", lambda p: torch.save([torch.zeros(2)], p), r"list.pt: expected a state_dict mapping; received list of length 1"),
        ("foreign.pt", lambda p: torch.save({"backbone.weight": torch.zeros(2)}, p), r"load_legacy_checkpoint: expected the state_dict of an original 'gated' module"),
        (
            "zero_d.pt",
            lambda p: torch.save({"gate.0.weight": torch.tensor(1.0), "gate.0.bias": torch.zeros(0)}, p),
            r"gated: cannot infer dim from the legacy state_dict",
        ),
    ],
)
def test_bad_checkpoint_files_are_weights_errors_naming_the_path(tmp_path, name, make, match):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(spec.WeightsError, match=match):
        bt.load_legacy_checkpoint(path, "gated")


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(spec.WeightsError, match=r"expected a checkpoint file; received a directory"):
        bt.load_legacy_checkpoint(tmp_path, "gated")


def test_a_fifo_or_device_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    """torch.load of a FIFO would block for a writer: the path is stat'ed first."""
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    for path, kind in ((fifo, "a FIFO"), ("/dev/null", "a character device")):
        with pytest.raises(spec.WeightsError) as info:
            bt.load_legacy_checkpoint(path, "gated")
        assert str(info.value) == f"{path}: expected a checkpoint file; received {kind}"


@pytest.mark.parametrize("form", ["raw_pickle", "zip", "legacy_format", "beside_state_dict"])
def test_malicious_pickles_are_refused_without_running_code(tmp_path, form):
    marker = tmp_path / "pwned"
    path = tmp_path / f"{form}.pt"
    payload = Payload(marker)
    if form == "raw_pickle":
        path.write_bytes(pickle.dumps({"gate.0.weight": payload}))
    elif form == "zip":
        torch.save(payload, path)
        assert zipfile.is_zipfile(path)
    elif form == "legacy_format":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
        assert not zipfile.is_zipfile(path)
    else:
        torch.save({"state_dict": _gated_state(), "hook": payload}, path)
    with pytest.raises(spec.WeightsError, match=rf"{form}.pt: refused: not a checkpoint of tensors and plain containers only .*nothing in it was run"):
        bt.load_legacy_checkpoint(path, "gated")
    assert not marker.exists(), "pickled code ran"
    with pytest.raises(spec.WeightsError, match=rf"{form}.pt: not a readable safetensors file"):
        spec.load_weights(path)
    assert not marker.exists(), "pickled code ran"


def test_in_memory_state_dict_errors():
    with pytest.raises(spec.WeightsError, match=r"load_legacy_checkpoint: expected a state_dict mapping; received None"):
        bt.load_legacy_checkpoint(None, "gated")
    with pytest.raises(spec.InputError, match=r"argument 'kind' expected one of .*received 3"):
        bt.load_legacy_checkpoint({}, 3)
    buffer = io.BytesIO()
    torch.save(_gated_state(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    state[1] = torch.zeros(2)  # a non-string key
    with pytest.raises(spec.WeightsError, match=r"expected the state_dict of an original 'gated'"):
        bt.load_legacy_checkpoint(state, "gated")
