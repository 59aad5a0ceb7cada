"""Golden vectors: every case's inputs, params and reference outputs, for backends outside Python.

``conformance/golden/vectors.safetensors`` holds the tensors under
``{case}/{group}/{name}``:

* ``input/v``, ``input/t`` ``(B, D)`` float32; ``noise/{name}`` float32;
  ``param/{name}`` float32 canonical params (dense weights ``(out, in)``);
* ``expected/output`` and ``expected/aux/{name}`` float64 from the reference
  (decisions float 0/1, ``route`` int64, margins included);
* gradient cases: ``gradient/cotangent`` ``R`` float32, ``gradient/v`` and
  ``gradient/t`` (finite differences of ``sum(output * R)``), and per parameter
  ``gradient/direction/{param}/{i}`` with its directional derivative in the
  manifest.

``conformance/golden/manifest.json`` lists every case: spec JSON, mode, call
options, flags, tensor keys, and the tolerance policy. ``python -m conformance
golden`` regenerates both; ``--check`` (and a test) fails on drift from the
current reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from spec.tolerance import DECISION_MARGINS, GRADIENT_TOLERANCES, TOLERANCES

from .cases import all_cases
from .gradients import cotangent, finite_differences
from .suite import reference

DIR = Path(__file__).with_name("golden")
VECTORS = DIR / "vectors.safetensors"
MANIFEST = DIR / "manifest.json"
FORMAT = "fusion-spec-golden/1"


def generate() -> tuple[dict[str, np.ndarray], dict]:
    """The tensors and the manifest, computed from the current reference."""
    tensors: dict[str, np.ndarray] = {}
    entries = []
    for c in all_cases():
        keys = {}

        def put(key, value, dtype, _name=c.name, _keys=keys):
            full = f"{_name}/{key}"
            tensors[full] = np.array(value, dtype=dtype, order="C")
            _keys[key] = full

        put("input/v", c.v, np.float32)
        put("input/t", c.t, np.float32)
        for name, u in (c.noise or {}).items():
            put(f"noise/{name}", u, np.float32)
        for name, p in c.params.items():
            put(f"param/{name}", p, np.float32)
        out, aux = reference(c.name)
        put("expected/output", out, np.float64)
        for name, a in aux.items():
            put(f"expected/aux/{name}", a, np.int64 if a.dtype.kind == "i" else np.float64)
        entry = {
            "name": c.name,
            "rule": c.rule,
            "spec": json.loads(c.spec.model_dump_json()),
            "training": c.training,
            "options": c.options,
            "exact_decisions": c.exact_decisions,
            "gradient": c.gradient,
            "doc": c.doc,
        }
        if c.gradient:
            fd = finite_differences(c)
            put("gradient/cotangent", cotangent(c), np.float32)
            put("gradient/v", fd.inputs["v"], np.float64)
            put("gradient/t", fd.inputs["t"], np.float64)
            derivatives = {}
            for name, dirs in fd.directions.items():
                for i, d in enumerate(dirs):
                    put(f"gradient/direction/{name}/{i}", d, np.float64)
                derivatives[name] = fd.derivatives[name]
            entry["directional_derivatives"] = derivatives
            entry["no_gradient"] = sorted(fd.excluded)
        entry["tensors"] = keys
        entries.append(entry)
    manifest = {
        "format": FORMAT,
        "doc": __doc__.strip().splitlines()[0],
        "tolerance": TOLERANCES,
        "decision_margin": DECISION_MARGINS,
        "gradient_tolerance": GRADIENT_TOLERANCES,
        "cases": entries,
    }
    return tensors, manifest


def write(tensors: dict[str, np.ndarray], manifest: dict) -> None:
    DIR.mkdir(exist_ok=True)
    save_file(tensors, str(VECTORS), metadata={"format": FORMAT})
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def drift(tensors: dict[str, np.ndarray], manifest: dict) -> list[str]:
    """Differences between the stored golden files and ``tensors``/``manifest``."""
    if not VECTORS.exists() or not MANIFEST.exists():
        return [f"{VECTORS} or {MANIFEST} missing: run python -m conformance golden"]
    stored = load_file(str(VECTORS))
    problems = []
    if json.loads(MANIFEST.read_text()) != json.loads(json.dumps(manifest, sort_keys=True)):
        problems.append("manifest.json differs from the current catalogue")
    missing, extra = sorted(set(tensors) - set(stored)), sorted(set(stored) - set(tensors))
    if missing or extra:
        problems.append(f"tensor keys differ: missing {missing[:5]}, unexpected {extra[:5]}")
    for key in sorted(set(tensors) & set(stored)):
        new, old = tensors[key], stored[key]
        if new.shape != old.shape or new.dtype != old.dtype:
            problems.append(f"{key}: {old.dtype}{old.shape} stored, {new.dtype}{new.shape} now")
        elif new.dtype == np.float64 and ("/expected/" in key or "/gradient/" in key):
            # Reference outputs may move by a few ulp across BLAS builds; finite
            # differences by their own rounding (1e-9 relative).
            rtol = 1e-6 if "/gradient/" in key else 1e-12
            if not np.allclose(old, new, rtol=rtol, atol=rtol, equal_nan=True):
                problems.append(f"{key}: max diff {np.max(np.abs(old - new)):.3g}")
        elif not np.array_equal(old, new):
            problems.append(f"{key}: differs")
    return problems


def main(check: bool = False) -> int:
    tensors, manifest = generate()
    if check:
        problems = drift(tensors, manifest)
        for p in problems:
            print(f"golden drift: {p}", file=sys.stderr)
        return 1 if problems else 0
    write(tensors, manifest)
    size = VECTORS.stat().st_size + MANIFEST.stat().st_size
    print(
        f"wrote {len(manifest['cases'])} cases, {len(tensors)} tensors, {size / 1e6:.2f} MB to {DIR}"
    )
    return 0
