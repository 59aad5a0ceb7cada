"""Golden vectors: every case's inputs, params and reference outputs, for backends outside Python.

``conformance/golden/vectors/{rule}.safetensors`` (one file per rule, each case's
``file`` in the manifest) holds the tensors under ``{case}/{group}/{name}``:

* ``input/v``, ``input/t`` ``(B, D)`` float32 (NaN/1e30 in absent rows);
  ``input/present`` ``(B, 2)`` bool for the missing-modality cases, ``input/image_mask``
  and ``input/text_mask`` ``(B, L)`` bool for the token cases (``input/v``, ``input/t``
  are then ``(B, L, D)``); ``noise/{name}`` float32;
  ``param/{name}`` float32 canonical params (dense weights ``(out, in)``);
* ``expected/output`` and ``expected/aux/{name}`` float64 from the reference
  (decisions float 0/1, ``route`` int64, margins included; backends return int32);
* gradient cases: ``gradient/cotangent`` ``R`` float32, ``gradient/v`` and
  ``gradient/t`` (finite differences of ``sum(output * R)``), and per parameter
  ``gradient/direction/{param}/{i}`` with its directional derivative in the
  manifest.

``conformance/golden/manifest.json`` lists every case: spec JSON, mode, call
options, flags, tensor keys, and the tolerance policy. ``python -m fusion_spec.conformance
golden`` regenerates both; ``--check`` (and a test) fails on drift from the
current reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from fusion_spec.spec.tolerance import DECISION_MARGINS, GRADIENT_TOLERANCES, TOLERANCES

from .cases import all_cases
from .gradients import cotangent, finite_differences
from .suite import reference

DIR = Path(__file__).with_name("golden")
#: One safetensors file per rule (``{rule}.safetensors``): small files to review and fetch.
VECTORS = DIR / "vectors"
MANIFEST = DIR / "manifest.json"
FORMAT = "fusion-spec-golden/2"


def vector_file(rule: str) -> str:
    """A rule's tensor file, relative to ``DIR`` (the manifest's ``file`` of its cases)."""
    return f"{VECTORS.name}/{rule}.safetensors"


def load_vectors() -> dict[str, np.ndarray]:
    """Every stored tensor, from all the rules' files."""
    tensors: dict[str, np.ndarray] = {}
    for path in sorted(VECTORS.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


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
        for name, mask in c.call_masks.items():
            put(f"input/{name}", mask, np.bool_)
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
            "file": vector_file(c.rule),
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
            entry["finite_difference_rounding"] = fd.rounding
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
    """Each rule's tensors to its file (stale files removed), then the manifest."""
    VECTORS.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, np.ndarray]] = {}
    for entry in manifest["cases"]:
        group = files.setdefault(entry["file"], {})
        for key in entry["tensors"].values():
            group[key] = tensors[key]
    for old in VECTORS.glob("*.safetensors"):
        if f"{VECTORS.name}/{old.name}" not in files:
            old.unlink()
    for name, group in files.items():
        save_file(group, str(DIR / name), metadata={"format": FORMAT})
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def size() -> int:
    """Bytes of the stored golden files (the rules' tensors and the manifest)."""
    return sum(p.stat().st_size for p in VECTORS.glob("*.safetensors")) + MANIFEST.stat().st_size


#: Reference outputs and aux values: float64 on the same inputs, moved only by the
#: summation order of the BLAS build (a few ulps of the largest term).
REFERENCE_RTOL = 1e-12
#: Unit directions: seeded normal draws divided by their norm, whose summation
#: order is the BLAS build's (a few ulps of 1).
DIRECTION_ATOL = 64 * float(np.finfo(np.float64).eps)
#: Tolerances of the rounding bounds themselves: they scale with ``sum |out * R|``.
ROUNDING_RTOL = 1e-6


def _case_of(key: str) -> str:
    return key.split("/", 1)[0]


def _compare_json(old, new, path: str, tol_of, problems: list[str]) -> None:
    """Structure, strings, integers and booleans exactly; floats within ``tol_of(path)``."""
    if isinstance(new, dict) and isinstance(old, dict):
        if set(old) != set(new):
            problems.append(
                f"manifest {path or '/'}: keys differ: missing {sorted(set(new) - set(old))}, "
                f"unexpected {sorted(set(old) - set(new))}"
            )
        for k in sorted(set(old) & set(new)):
            _compare_json(old[k], new[k], f"{path}/{k}", tol_of, problems)
    elif isinstance(new, list) and isinstance(old, list):
        if len(old) != len(new):
            problems.append(f"manifest {path}: {len(old)} entries stored, {len(new)} now")
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            _compare_json(a, b, f"{path}/{i}", tol_of, problems)
    elif isinstance(new, float) and isinstance(old, (int, float)) and not isinstance(old, bool):
        atol = tol_of(path, new)
        if not (old == new or abs(old - new) <= atol):
            problems.append(
                f"manifest {path}: {old!r} stored, {new!r} now (|diff| {abs(old - new):.3g} "
                f"> tolerance {atol:.3g})"
            )
    elif type(old) is not type(new) or old != new:
        problems.append(f"manifest {path}: {old!r} stored, {new!r} now")


def _manifest_tolerance(manifest: dict):
    """``tol_of(path, value)``: the absolute tolerance of one float of the manifest.

    Directional derivatives are finite differences: they agree to their own
    rounding bound (``finite_difference_rounding`` of the case, see
    ``gradients.ROUNDING_ULPS``). The rounding bounds agree to ``ROUNDING_RTOL``.
    Every other float is a literal (spec fields, tolerances) and compares exactly.
    """
    by_index = manifest["cases"]

    def tol_of(path: str, value: float) -> float:
        parts = path.strip("/").split("/")
        if parts[0] != "cases" or len(parts) < 3:
            return 0.0
        case = by_index[int(parts[1])]
        if parts[2] == "directional_derivatives":
            return case["finite_difference_rounding"][parts[3]]
        if parts[2] == "finite_difference_rounding":
            return ROUNDING_RTOL * abs(value)
        return 0.0

    return tol_of


def drift(tensors: dict[str, np.ndarray], manifest: dict) -> list[str]:
    """Differences between the stored golden files and ``tensors``/``manifest``.

    Integers, strings and structure compare exactly; floats within a tolerance
    derived from how they were computed: reference outputs to ``REFERENCE_RTOL``,
    finite differences to their own rounding bound. Each problem names the case
    (or the manifest path), the key and the size of the difference.
    """
    if not any(VECTORS.glob("*.safetensors")) or not MANIFEST.exists():
        return [f"{VECTORS} or {MANIFEST} missing: run python -m fusion_spec.conformance golden"]
    stored = load_vectors()
    problems: list[str] = []
    new_manifest = json.loads(json.dumps(manifest, sort_keys=True))
    _compare_json(
        json.loads(MANIFEST.read_text()),
        new_manifest,
        "",
        _manifest_tolerance(new_manifest),
        problems,
    )
    rounding = {
        c["name"]: c.get("finite_difference_rounding", {}) for c in new_manifest["cases"]
    }
    missing, extra = sorted(set(tensors) - set(stored)), sorted(set(stored) - set(tensors))
    if missing or extra:
        problems.append(f"tensor keys differ: missing {missing[:5]}, unexpected {extra[:5]}")
    for key in sorted(set(tensors) & set(stored)):
        new, old = tensors[key], stored[key]
        if new.shape != old.shape or new.dtype != old.dtype:
            problems.append(f"{key}: {old.dtype}{old.shape} stored, {new.dtype}{new.shape} now")
            continue
        if new.dtype == np.float64 and "/expected/" in key:
            atol = REFERENCE_RTOL * max(1.0, float(np.max(np.abs(new), initial=0.0)))
        elif new.dtype == np.float64 and key.endswith(("/gradient/v", "/gradient/t")):
            atol = rounding[_case_of(key)][key.rsplit("/", 1)[1]]
        elif new.dtype == np.float64 and "/gradient/direction/" in key:
            atol = DIRECTION_ATOL
        else:
            atol = 0.0  # inputs, noise, params, directions, cotangents: drawn, not computed
        same = np.array_equal(old, new, equal_nan=new.dtype.kind == "f")
        if not same:
            finite = np.isfinite(old) & np.isfinite(new) if new.dtype.kind == "f" else None
            if finite is not None and np.array_equal(np.isnan(old), np.isnan(new)):
                diff = float(np.max(np.abs(np.where(finite, old - new, 0.0)), initial=0.0))
                if diff <= atol and np.array_equal(old[~finite], new[~finite]):
                    continue
                problems.append(
                    f"case {_case_of(key)}, {key}: max |diff| {diff:.3g} > tolerance {atol:.3g}"
                )
            else:
                problems.append(f"case {_case_of(key)}, {key}: differs")
    return problems


def main(check: bool = False) -> int:
    tensors, manifest = generate()
    if check:
        problems = drift(tensors, manifest)
        for p in problems:
            print(f"golden drift: {p}", file=sys.stderr)
        return 1 if problems else 0
    write(tensors, manifest)
    print(
        f"wrote {len(manifest['cases'])} cases, {len(tensors)} tensors, {size() / 1e6:.2f} MB "
        f"to {DIR}"
    )
    return 0
