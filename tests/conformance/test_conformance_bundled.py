"""The bundled backends pass every check: the reference and PyTorch here, one test per check;
Keras once per Keras backend (jax, torch, tensorflow, numpy) in subprocesses, as the CLI runs it."""

from __future__ import annotations

import sys

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
