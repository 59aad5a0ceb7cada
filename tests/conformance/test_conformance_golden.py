"""Golden vectors: small, complete, and equal to what the current reference computes."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file

from conformance import golden
from conformance.cases import all_cases


def test_golden_vectors_match_the_current_reference():
    problems = golden.drift(*golden.generate())
    assert not problems, "run `python -m conformance golden`:\n" + "\n".join(problems[:20])


def test_golden_files_are_small_and_list_every_case():
    assert golden.VECTORS.stat().st_size + golden.MANIFEST.stat().st_size < 4e6
    manifest = json.loads(golden.MANIFEST.read_text())
    assert [c["name"] for c in manifest["cases"]] == [c.name for c in all_cases()]
    tensors = load_file(str(golden.VECTORS))
    first = manifest["cases"][0]
    assert tensors[first["tensors"]["input/v"]].dtype == np.float32
    assert tensors[first["tensors"]["expected/output"]].dtype == np.float64


def test_drift_is_detected():
    tensors, manifest = golden.generate()
    key = next(k for k in tensors if k.endswith("/expected/output"))
    tensors[key] = tensors[key] + 1e-6
    assert any(key in p for p in golden.drift(tensors, manifest))
