"""Device and precision settings of the bundled adapters: CLI, pytest plugin, report header."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fusion_spec.conformance import __main__ as cli
from fusion_spec.conformance.adapters import device_env
from fusion_spec.conformance.adapters.torch import TorchAdapter
from fusion_spec.spec.tolerance import tolerance


def test_torch_run_states_device_and_precision_in_the_report(tmp_path):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    code = cli.main(
        ["--backend", "torch", "-k", "gated/forward/*", "--device", "cpu", "--quiet"]
        + ["--markdown", str(md), "--json", str(js)]
    )
    assert code == 0
    header = json.loads(js.read_text())["backends"]["torch"]
    assert f"torch {torch.__version__} (CPU, float32, matmul precision highest)" == header
    assert header in md.read_text()


def test_tensorfloat32_selects_its_own_tolerance_policy(tmp_path):
    adapter = TorchAdapter(precision="tensorfloat32")
    try:
        assert adapter.dtype == "tensorfloat32"
        assert tolerance(adapter.dtype)["atol"] > tolerance("float32")["atol"]
        assert "matmul precision high" in adapter.describe()
    finally:
        torch.set_float32_matmul_precision("highest")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_with_a_reason():
    with pytest.raises(RuntimeError, match=r"'cuda', but torch.cuda.is_available\(\) is False"):
        TorchAdapter(device="cuda")


def test_settings_are_validated():
    with pytest.raises(ValueError, match=r"argument 'device' expected one of \['cpu', 'cuda'\]"):
        TorchAdapter(device="tpu")
    with pytest.raises(ValueError, match="--device expected one of"):
        device_env("tpu")


def test_keras_subprocess_runs_where_it_was_told(tmp_path):
    """The Keras adapter checks the framework's real device against ``--device``."""
    env = dict(os.environ, KERAS_BACKEND="torch", **device_env("cpu"))
    out = tmp_path / "rows.json"
    cmd = [sys.executable, "-m", "fusion_spec.conformance", "--backend", "keras", "-q"]
    cmd += ["-k", "film/forward/film_default", "--device", "cpu", "--rows-out", str(out)]
    subprocess.run(cmd, env=env, check=True, timeout=300)
    payload = json.loads(out.read_text())
    assert payload["backends"]["keras-torch"].startswith("keras ")
    assert "CPU (torch, float32, matmul precision float32)" in payload["backends"]["keras-torch"]
    assert {r["status"] for r in payload["rows"]} == {"pass"}


def test_pytest_plugin_takes_device_and_precision(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "fusion_spec.conformance.pytest_plugin"]
    cmd += ["--fusion-adapter=torch", "--fusion-device=cpu", "--fusion-precision=float32"]
    cmd += ["--fusion-include=film/forward/film_default", "-p", "no:cacheprovider"]
    done = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
