"""The bundled backends pass every check: the reference and PyTorch here, one test per check;
Keras once per Keras backend (jax, torch, tensorflow, numpy) in subprocesses, as the CLI runs it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fusion_spec.conformance.suite import all_checks, run_check

CHECKS = {c.id: c for c in all_checks()}


@pytest.fixture(scope="module")
def reference_adapter():
    from fusion_spec.conformance.adapters.reference import ReferenceAdapter

    return ReferenceAdapter()


@pytest.fixture(scope="module")
def torch_adapter():
    pytest.importorskip("torch", reason="the PyTorch backend needs torch")
    from fusion_spec.conformance.adapters.torch import TorchAdapter

    return TorchAdapter()


def _expect_pass(adapter, check_id):
    outcome = run_check(adapter, CHECKS[check_id])
    if outcome.status == "n/a":
        assert check_id.split("/")[1] == "gradient", outcome.message
        return
    assert outcome.status == "pass", f"{outcome.status}: {outcome.message}"


@pytest.mark.parametrize("check_id", list(CHECKS))
def test_reference(reference_adapter, check_id):
    _expect_pass(reference_adapter, check_id)


@pytest.mark.parametrize("check_id", list(CHECKS))
def test_torch(torch_adapter, check_id):
    _expect_pass(torch_adapter, check_id)


def test_keras_on_jax_torch_and_numpy(tmp_path):
    from fusion_spec.conformance.runner import run_bundled

    rows, backends, _ = run_bundled(
        ["keras"], ["jax", "torch", "numpy"], list(CHECKS.values()), ["--quiet"], 2, sys.stderr
    )
    assert set(backends) == {"keras-jax", "keras-torch", "keras-numpy"}
    assert len(rows) == 3 * len(CHECKS)
    bad = [
        f"{r['backend']} {r['id']}: {r['status']} {r['message']}"
        for r in rows
        if r["status"] not in ("pass", "n/a")
    ]
    assert not bad, "\n".join(bad)
    na = {r["backend"] for r in rows if r["status"] == "n/a"}
    assert na == {"keras-numpy"}, "only Keras's NumPy backend lacks gradients"


def test_shared_expected_gradients_round_trip_exactly(tmp_path):
    """The bundled run's processes share finite-difference gradients through .npz files:
    what a process reads back is what another computed, bit for bit (floats go through
    JSON as repr, arrays as stored)."""
    from fusion_spec.conformance import gradients
    from fusion_spec.conformance.cases import all_cases

    case = next(c for c in all_cases() if c.spec.kind == "energy_aware_adaptive")
    expected = gradients.finite_differences(case)
    path = tmp_path / "case.npz"
    assert gradients.load_expected(path) is None
    gradients.save_expected(expected, path)
    back = gradients.load_expected(path)
    assert back.excluded == expected.excluded and back.scale == expected.scale
    assert back.rounding == expected.rounding and back.derivatives == {
        k: [float(x) for x in v] for k, v in expected.derivatives.items()
    }
    for name, value in expected.inputs.items():
        np.testing.assert_array_equal(back.inputs[name], value)
    for name, dirs in expected.directions.items():
        assert len(back.directions[name]) == len(dirs)
        for a, b in zip(back.directions[name], dirs, strict=True):
            np.testing.assert_array_equal(a, b)
