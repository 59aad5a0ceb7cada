"""Importing the Keras backend: Keras's default backend works; a missing one is named."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None,
    reason="needs keras and tensorflow (CI installs both)",
)


def _import_in_subprocess(tmp_path, env_changes: dict, extra_path: str = ""):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(env_changes)
    env["KERAS_HOME"] = str(tmp_path / "keras_home")  # no user keras.json
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
    code = "import fusion_spec.backends.keras, keras; print(keras.backend.backend())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )


def test_without_keras_backend_the_keras_default_is_used(tmp_path):
    proc = _import_in_subprocess(tmp_path, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tensorflow"


@pytest.mark.parametrize("chosen", [None, "jax"])
def test_a_backend_that_is_not_installed_is_named_with_the_fix(tmp_path, chosen):
    module = "jax" if chosen else "tensorflow"
    blocked = tmp_path / "blocked" / module
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        f'raise ModuleNotFoundError("No module named {module} (blocked)", name={module!r})\n'
    )
    changes = {"KERAS_BACKEND": chosen} if chosen else {}
    proc = _import_in_subprocess(tmp_path, changes, str(tmp_path / "blocked"))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fusion_spec.backends.keras: "), last
    assert f"missing module {module!r}" in last and "KERAS_BACKEND" in last
    assert (f"KERAS_BACKEND={chosen!r}" if chosen else "KERAS_BACKEND is not set") in last
    assert "pip install 'fusion-spec[keras-" in last
