"""Bad calls and edge cases shared by the reference, PyTorch and Keras robustness tests.

Framework-neutral: arguments are NumPy arrays or plain Python values, which every
implementation accepts, so one table states what each bad argument must raise
(``spec.InputError`` and the first words of its message) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion_spec import spec

D, B = 8, 3

SPECS: dict[str, dict] = {
    "gated": dict(kind="gated", dim=D),
    "film": dict(kind="film", dim=D),
    "shomr": dict(kind="shomr", dim=D, heads=2, dropout=0.0),
    "energy": dict(kind="energy_aware_adaptive", dim=D, heads=2, dropout=0.0),
    "modality_dropout": dict(kind="modality_dropout", dim=D),
}


def ok(batch: int = B, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, D)).astype(np.float32)


@dataclass
class BadCall:
    """One bad call: ``spec`` key, training flag, the call's keyword arguments."""

    id: str
    spec: str
    match: str
    v: Any = field(default_factory=ok)
    t: Any = field(default_factory=ok)
    training: Any = False
    kwargs: dict = field(default_factory=dict)
    #: implementations the case applies to (torch has no ``training`` argument)
    only: tuple[str, ...] = ("reference", "torch", "keras")


NOISE = {"route": np.full(B, 0.5)}
ENERGY_NOISE = {
    "route": np.full(B, 0.5),
    "output_drop_gate": np.full(1, 0.5),
    "output_drop_flags": np.full((B, 2), 0.5),
}

BAD_CALLS = [
    BadCall("v-none", "gated", r"gated: argument 'v' expected an array or tensor of shape \(B, 8\) or \(B, L_v, 8\); received None", v=None),
    BadCall("t-none", "gated", r"gated: argument 't' expected an array or tensor of shape \(B, 8\) or \(B, L_t, 8\); received None", t=None),
    BadCall("t-list", "gated", r"argument 't' expected an array or tensor of shape \(B, 8\) or \(B, L_t, 8\); received list of length 3", t=[[0.0] * D] * B),
    BadCall("v-str", "gated", r"argument 'v' expected an array or tensor of shape \(B, 8\) or \(B, L_v, 8\); received str 'abc'", v="abc"),
    BadCall("v-float", "gated", r"argument 'v' expected an array or tensor of shape \(B, 8\) or \(B, L_v, 8\); received float 1.0", v=1.0),
    BadCall("v-dict", "gated", r"argument 'v' expected an array or tensor .*received dict with keys \['a'\]", v={"a": 1}),
    BadCall("v-object", "gated", r"argument 'v' expected a floating dtype; received object", v=np.zeros((B, D), dtype=object)),
    BadCall("v-strings", "gated", r"argument 'v' expected a floating dtype; received <U1", v=np.full((B, D), "a")),
    BadCall("v-complex", "gated", r"argument 'v' expected a floating dtype; received complex128", v=np.zeros((B, D), complex)),
    BadCall("t-int", "film", r"film: argument 't' expected a floating dtype; received int64", t=np.zeros((B, D), np.int64)),
    BadCall("t-bool", "film", r"argument 't' expected a floating dtype; received bool", t=np.zeros((B, D), bool)),
    BadCall("v-rank1", "gated", r"argument 'v' expected shape \(B, 8\) or \(B, L_v, 8\); received shape \(8,\)", v=np.zeros(D, np.float32)),
    BadCall("v-rank4", "gated", r"argument 'v' expected shape \(B, 8\) or \(B, L_v, 8\); received shape \(3, 1, 2, 8\)", v=np.zeros((B, 1, 2, D), np.float32)),
    BadCall("v-scalar", "gated", r"argument 'v' expected shape \(B, 8\) or \(B, L_v, 8\); received shape \(\)", v=np.float32(1.0)),
    BadCall("t-width", "gated", r"argument 't' expected shape \(B, 8\) or \(B, L_t, 8\); received shape \(3, 7\)", t=np.zeros((B, 7), np.float32)),
    BadCall("batch", "gated", r"arguments 'v' and 't' expected equal batch sizes; received v \(3, 8\) and t \(4, 8\)", t=ok(4)),
    BadCall("present-two", "gated", r"gated: argument 'present' expected booleans \(or 0/1\); received values \[2\]", kwargs={"present": np.array([[1, 2], [1, 1], [0, 1]])}),
    BadCall("present-minus-one", "shomr", r"shomr: argument 'present' expected booleans \(or 0/1\); received values \[-1, 2\]", kwargs={"present": np.array([[1, -1], [2, 1], [0, 1]], np.int32)}),
    BadCall("present-uint8", "film", r"film: argument 'present' expected booleans \(or 0/1\); received values \[255\]", kwargs={"present": np.full((B, 2), 255, np.uint8)}),
    BadCall("present-float", "gated", r"argument 'present' expected a bool or an integer dtype; received float32", kwargs={"present": np.ones((B, 2), np.float32)}),
    BadCall("noise-str", "shomr", r"shomr: argument 'noise' expected None or a dict \{name: array\}; received str 'abc'", training=True, kwargs={"noise": "abc"}),
    BadCall("noise-array", "shomr", r"argument 'noise' expected None or a dict .*received ndarray of shape \(3,\) and dtype float64", training=True, kwargs={"noise": np.full(B, 0.5)}),
    BadCall("noise-list", "shomr", r"argument 'noise' expected None or a dict .*received list of length 3", training=True, kwargs={"noise": [0.5] * B}),
    BadCall("noise-value-none", "shomr", r"noise 'route' expected a float array of shape \(3,\); received None", training=True, kwargs={"noise": {"route": None}}),
    BadCall("noise-value-str", "shomr", r"noise 'route' expected a float array of shape \(3,\); received str 'x'", training=True, kwargs={"noise": {"route": "x"}}),
    BadCall("noise-value-list", "shomr", r"noise 'route' expected a float array of shape \(3,\); received list of length 3", training=True, kwargs={"noise": {"route": [0.5] * B}}),
    BadCall("noise-complex", "shomr", r"noise 'route' expected a floating dtype; received complex128", training=True, kwargs={"noise": {"route": np.full(B, 0.5 + 0j)}}),
    BadCall("noise-int", "shomr", r"noise 'route' expected a floating dtype; received int64", training=True, kwargs={"noise": {"route": np.zeros(B, np.int64)}}),
    BadCall("noise-shape", "shomr", r"noise 'route' expected shape \(3,\); received \(4,\)", training=True, kwargs={"noise": {"route": np.full(4, 0.5)}}),
    BadCall("noise-five", "shomr", r"noise 'route' expected values in \[0, 1\); received min 5.0, max 5.0", training=True, kwargs={"noise": {"route": np.full(B, 5.0)}}),
    BadCall("noise-nan", "shomr", r"noise 'route' expected values in \[0, 1\); received NaN", training=True, kwargs={"noise": {"route": np.array([0.5, np.nan, 0.5])}}),
    BadCall("noise-names", "shomr", r"argument 'noise' expected names \['route'\] for this call; received \['rout'\] \(missing \['route'\]; unexpected \['rout'\]\)", training=True, kwargs={"noise": {"rout": np.full(B, 0.5)}}),
    BadCall("noise-in-eval", "gated", r"gated: argument 'noise' expected names \[\] for this call; received \['route'\]", kwargs={"noise": NOISE}),
    BadCall("energy-noise-missing", "energy", r"expected names \['output_drop_flags', 'output_drop_gate', 'route'\] .*\(missing \['output_drop_flags', 'output_drop_gate'\]\)", training=True, kwargs={"noise": NOISE, "progress": 0.5}),
    BadCall("hard-routing-array", "shomr", r"shomr: call option 'use_hard_routing' expected None, True or False; received ndarray of shape \(3,\) and dtype bool", kwargs={"use_hard_routing": np.ones(B, bool)}),
    BadCall("hard-routing-str", "shomr", r"call option 'use_hard_routing' expected None, True or False; received str 'yes'", kwargs={"use_hard_routing": "yes"}),
    BadCall("hard-routing-int", "shomr", r"call option 'use_hard_routing' expected None, True or False; received int 1", kwargs={"use_hard_routing": 1}),
    BadCall("progress-array", "energy", r"energy_aware_adaptive: call option 'progress' expected None or a float in \[0, 1\]; received ndarray of shape \(1,\)", training=True, kwargs={"progress": np.array([0.5]), "noise": ENERGY_NOISE}),
    BadCall("progress-range", "energy", r"call option 'progress' expected None or a float in \[0, 1\]; received float 2.0", kwargs={"progress": 2.0}),
    BadCall("progress-nan", "energy", r"call option 'progress' expected None or a float in \[0, 1\]; received float nan", kwargs={"progress": float("nan")}),
    BadCall("progress-str", "energy", r"call option 'progress' expected None or a float in \[0, 1\]; received str '0.5'", kwargs={"progress": "0.5"}),
    BadCall("unknown-option", "gated", r"gated: unexpected call option\(s\) \['progress'\]; this rule accepts: none", kwargs={"progress": 0.5}),
    BadCall("return-aux-array", "gated", r"gated: argument 'return_aux' expected True or False; received ndarray of shape \(1,\)", kwargs={"return_aux": np.array([True])}),
    BadCall("return-aux-str", "gated", r"argument 'return_aux' expected True or False; received str 'yes'", kwargs={"return_aux": "yes"}),
    BadCall("training-array", "gated", r"gated: argument 'training' expected .*True or False; received ndarray of shape \(2,\)", training=np.array([True, False]), only=("reference", "keras")),
    BadCall("training-str", "gated", r"argument 'training' expected .*True or False; received str 'no'", training="no", only=("reference", "keras")),
]


def bad_calls(implementation: str) -> list[BadCall]:
    return [c for c in BAD_CALLS if implementation in c.only]


def build_spec(key: str):
    return spec.parse(SPECS[key])


def training_noise(s, batch: int, seed: int = 0, **options) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 7)
    return {n.name: rng.uniform(size=n.shape) for n in s.noise(batch, training=True, **options)}


#: One small spec per rule for the edge-case tests (dim 8, 2 heads, dropout 0).
#: the per-sample function (``input_norm="none"``): the edge-case promises are per sample;
#: the default's batch statistics spread a training batch's non-finite values (tested apart)
EDGE_SPECS = {
    kind: spec.parse(
        {
            "kind": kind,
            "dim": D,
            "input_norm": "none",
            **({"heads": 2} if "heads" in cls.model_fields else {}),
            **({"dropout": 0.0} if "dropout" in cls.model_fields else {}),
        }
    )
    for kind, cls in spec.RULES.items()
}

#: Documented input magnitude range (docs/errors.md, "Edge cases"): every implementation
#: agrees with the reference within the float32 tolerance for finite |x| <= this.
MAGNITUDE = 1e12


def nan_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Batch of 5: row 1 has a NaN in v, row 2 an inf in t, row 3 a NaN in t; rows 0, 4 finite."""
    v, t = ok(5, seed).astype(np.float64), ok(5, seed + 1).astype(np.float64)
    v[1, 0] = np.nan
    t[2, 3] = np.inf
    t[3, 5] = np.nan
    return v, t


NAN_ROWS = np.array([False, True, True, True, False])


def edge_calls(kind: str) -> list[tuple[bool, dict]]:
    """(training, options) calls exercised per rule by the edge-case tests."""
    calls = [(False, {}), (True, {})]
    if kind == "shomr":
        calls += [(False, {"use_hard_routing": True}), (True, {"use_hard_routing": True})]
    if kind == "energy_aware_adaptive":
        calls += [(True, {"progress": 0.5})]
    return calls


def assert_agrees(s, out, aux, ref, ref_aux, *, training: bool, **options) -> None:
    """Rows finite exactly where the reference's are; finite rows within the float32
    tolerance, except samples whose reference decision is within 1e-4 of a flip."""
    from fusion_spec.spec.tolerance import tolerance
    from tests.backend_cases import unsure_samples

    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    finite = np.isfinite(ref).all(axis=-1)
    np.testing.assert_array_equal(np.isfinite(out).all(axis=-1), finite, err_msg="finite rows")
    batch = ref.shape[0]
    sure = finite & ~unsure_samples(s, ref_aux, batch, training=training, margin=1e-4, **options)
    scale = max(1.0, float(np.max(np.abs(ref[sure]), initial=0.0)))
    tol = tolerance("float32")
    np.testing.assert_allclose(
        out[sure], ref[sure], rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg="output"
    )
    for a in s.aux(batch, training=training, **options):
        if a.role == "margin":
            continue
        got = np.asarray(aux[a.name], dtype=np.float64)
        want = np.asarray(ref_aux[a.name], dtype=np.float64)
        assert got.shape == want.shape, (a.name, got.shape, want.shape)
        if a.name == "energy_loss":
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=a.name)
        elif a.role == "value" and want.ndim:
            rows = sure
            np.testing.assert_allclose(
                got[rows], want[rows], rtol=tol["rtol"], atol=tol["atol"], err_msg=a.name
            )
        elif a.role == "decision":
            np.testing.assert_array_equal(got[sure], want[sure], err_msg=a.name)
