"""Golden vectors: small, complete, and equal to what the current reference computes."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file, save_file

from fusion_spec.conformance import golden
from fusion_spec.conformance.cases import all_cases


def test_golden_vectors_match_the_current_reference():
    problems = golden.drift(*golden.generate())
    assert not problems, "run `python -m fusion_spec.conformance golden`:\n" + "\n".join(
        problems[:20]
    )


def test_golden_files_are_small_and_list_every_case():
    # a budget per case (the catalogue grows: 156 cases held 21 KB each, 266 hold 22 KB):
    # a case that stores float64 inputs or a batch of hundreds blows it
    manifest = json.loads(golden.MANIFEST.read_text())
    size = golden.size()
    assert size / len(manifest["cases"]) < 30e3, size / len(manifest["cases"])
    assert [c["name"] for c in manifest["cases"]] == [c.name for c in all_cases()]
    # one file per rule, each under the 5 MB a reviewer's tools flag
    files = sorted(golden.VECTORS.glob("*.safetensors"))
    assert [p.stem for p in files] == sorted({c["rule"] for c in manifest["cases"]})
    assert max(p.stat().st_size for p in files) < 5e6
    first = manifest["cases"][0]
    tensors = load_file(str(golden.DIR / first["file"]))  # a case's tensors are in its file
    assert tensors[first["tensors"]["input/v"]].dtype == np.float32
    assert tensors[first["tensors"]["expected/output"]].dtype == np.float64


def test_drift_is_detected():
    tensors, manifest = golden.generate()
    key = next(k for k in tensors if k.endswith("/expected/output"))
    tensors[key] = tensors[key] + 1e-6
    assert any(key in p for p in golden.drift(tensors, manifest))


def _stored_copy(tmp_path, monkeypatch, edit_tensors=None, edit_manifest=None):
    """The golden files copied to ``tmp_path`` (edited), and ``golden`` pointed at them."""
    tensors = golden.load_vectors()
    manifest = json.loads(golden.MANIFEST.read_text())
    if edit_tensors:
        edit_tensors(tensors)
    if edit_manifest:
        edit_manifest(manifest)
    vectors, mpath = tmp_path / "vectors", tmp_path / "manifest.json"
    vectors.mkdir()
    save_file({k: np.array(v, order="C") for k, v in tensors.items()}, str(vectors / "all.safetensors"))
    mpath.write_text(json.dumps(manifest))
    monkeypatch.setattr(golden, "VECTORS", vectors)
    monkeypatch.setattr(golden, "MANIFEST", mpath)


def _gradient_case():
    """The current goldens, and the first gradient case's name, a parameter and its bounds."""
    new = golden.generate()
    case = next(c for c in new[1]["cases"] if c["gradient"] and c["directional_derivatives"])
    param = next(iter(case["directional_derivatives"]))
    return new, case["name"], param, case["finite_difference_rounding"]


def test_goldens_from_another_machine_pass_within_their_rounding(tmp_path, monkeypatch):
    """Another CPU rounds finite differences and reference sums differently: accepted."""
    new, name, param, bound = _gradient_case()

    def tensors(t):
        t[f"{name}/gradient/v"] = t[f"{name}/gradient/v"] + 0.5 * bound["v"]
        t[f"{name}/expected/output"] = t[f"{name}/expected/output"] * (1 + 1e-15)

    def manifest(m):
        c = next(c for c in m["cases"] if c["name"] == name)
        c["directional_derivatives"][param][0] += 0.5 * bound[param]

    _stored_copy(tmp_path, monkeypatch, tensors, manifest)
    assert golden.drift(*new) == []


def test_drift_beyond_rounding_names_the_case_key_and_size(tmp_path, monkeypatch):
    new, name, param, bound = _gradient_case()

    def tensors(t):
        t[f"{name}/gradient/t"] = t[f"{name}/gradient/t"] + 3 * bound["t"]

    def manifest(m):
        c = next(c for c in m["cases"] if c["name"] == name)
        c["directional_derivatives"][param][1] += 3 * bound[param]
        c["spec"]["dim"] += 1  # integers compare exactly

    _stored_copy(tmp_path, monkeypatch, tensors, manifest)
    problems = golden.drift(*new)
    index = [c["name"] for c in new[1]["cases"]].index(name)
    assert any(
        p.startswith(f"case {name}, {name}/gradient/t: max |diff| ") and "> tolerance" in p
        for p in problems
    ), problems
    assert any(
        p.startswith(f"manifest /cases/{index}/directional_derivatives/{param}/1:")
        for p in problems
    ), problems
    assert any(p.startswith(f"manifest /cases/{index}/spec/dim:") for p in problems), problems
    assert len(problems) == 3, problems
