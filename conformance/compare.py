r"""Tensor comparison against the float64 reference: tolerances, ULPs, exact decisions, boundaries.

A continuous tensor passes when, element-wise,

$$ |a - e| \le \mathrm{atol} \cdot \max(1, \max|e|) + \mathrm{rtol} \cdot |e| $$

with ``rtol``/``atol`` of the backend's dtype from ``spec.tolerance`` (one policy
for every backend). The absolute term scales with the tensor's largest
reference magnitude: rounding errors of a float32 computation are relative to
the size of its intermediates, not of each output element (``g v + (1-g) t``
with ``v = -t = 10^3`` has outputs near 0 computed from terms near ``10^3``).

A discrete tensor (route index, 0/1 mask) is compared exactly, except on
samples whose reference margin (distance of the deciding quantity from its
threshold or runner-up) is within ``decision_margin`` of the dtype: a differing
decision there is a *boundary* sample, reported, never passed silently and never
failed. Cases built with exactly representable probabilities and noise
(``Case.exact_decisions``) compare every decision exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fusion_spec.spec.tolerance import decision_margin, tolerance


@dataclass
class TensorReport:
    """Errors of one tensor: the figures reported per tensor in the JSON report."""

    name: str
    ok: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_ulp: float = 0.0
    scaled: float = 0.0  # max |a - e| / max(1, max|e|): the atol this tensor needs
    tolerance_used: float = 0.0  # max |a - e| / bound: 1 is the edge of the tolerance
    worst: str = ""
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def ulp_distance(actual: np.ndarray, expected: np.ndarray, dtype: str) -> np.ndarray:
    """Units in the last place of ``dtype`` between ``actual`` and ``expected`` rounded to it.

    Computed on the ordered integer view of the IEEE bit patterns, so the distance
    across zero counts the representable numbers between the two values.
    """
    ftype, itype = (np.float64, np.int64) if dtype == "float64" else (np.float32, np.int32)
    a = np.asarray(actual, dtype=ftype)
    e = np.asarray(expected, dtype=ftype)
    ia, ie = a.view(itype).astype(np.int64), e.view(itype).astype(np.int64)
    sign = np.int64(np.iinfo(itype).min)
    ia = np.where(ia < 0, sign - ia, ia)  # ordered: negative floats below positive ones
    ie = np.where(ie < 0, sign - ie, ie)
    return np.abs(ia - ie).astype(np.float64)


def compare_values(
    name: str, actual, expected, dtype: str, *, rows: np.ndarray | None = None
) -> TensorReport:
    """Compare a continuous tensor; ``rows`` (a boolean mask over axis 0) limits the samples."""
    expected = np.asarray(expected, dtype=np.float64)
    if actual is None:
        return TensorReport(name, False, message=f"{name}: missing from the backend's outputs")
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return TensorReport(
            name,
            False,
            message=f"{name}: expected shape {expected.shape}; received {actual.shape}",
        )
    if not np.issubdtype(actual.dtype, np.number) and actual.dtype != bool:
        return TensorReport(name, False, message=f"{name}: non-numeric dtype {actual.dtype}")
    a = actual.astype(np.float64)
    if rows is not None and expected.ndim:
        a, expected = a[rows], expected[rows]
    if a.size == 0:
        return TensorReport(name, True)
    tol = tolerance(dtype)
    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a)))
        return TensorReport(name, False, message=f"{name}: {bad} non-finite values")
    err = np.abs(a - expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    bound = tol["atol"] * scale + tol["rtol"] * np.abs(expected)
    # relative errors only where |expected| exceeds the absolute tolerance: next to an
    # expected 0 a relative error means nothing (it printed 4.49e+307)
    meaningful = np.abs(expected) > tol["atol"] * scale
    rel = np.where(meaningful, err / np.where(meaningful, np.abs(expected), 1.0), 0.0)
    ulp = ulp_distance(a, expected, dtype)
    report = TensorReport(
        name,
        bool(np.all(err <= bound)),
        max_abs=float(err.max()),
        max_rel=float(rel.max()),
        max_ulp=float(ulp.max()),
        scaled=float(err.max() / scale),
        tolerance_used=float(np.max(err / bound)),
    )
    worst = np.unravel_index(int(np.argmax(err - bound)), err.shape)
    report.worst = (
        f"at {tuple(int(i) for i in worst)}: got {a[worst]:.9g}, expected {expected[worst]:.9g}"
    )
    if not report.ok:
        n_bad = int(np.sum(err > bound))
        report.message = (
            f"{name}: {n_bad}/{err.size} elements outside atol={tol['atol']:g}*{scale:.3g} + "
            f"rtol={tol['rtol']:g}*|expected| (max abs {report.max_abs:.3g}"
            + (
                f", max rel {report.max_rel:.3g}"
                if meaningful.any()
                else "; every expected value below atol: no relative error"
            )
            + f"); worst {report.worst}"
        )
    return report


@dataclass
class DecisionReport:
    """A discrete output: exact agreement, or disagreement on boundary samples only."""

    name: str
    ok: bool
    boundary: np.ndarray  # (B,) bool: differing samples whose reference margin is within bound
    message: str = ""


def compare_decision(
    name: str,
    actual,
    expected,
    margin: np.ndarray | None,
    dtype: str,
    *,
    exact: bool = False,
) -> DecisionReport:
    """Exact comparison of a decision; differences within the margin bound are boundary samples."""
    expected = np.asarray(expected)
    batch = expected.shape[0] if expected.ndim else 1
    none = np.zeros(batch, dtype=bool)
    if actual is None:
        return DecisionReport(name, False, none, f"{name}: missing from the backend's outputs")
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return DecisionReport(
            name, False, none, f"{name}: expected shape {expected.shape}; received {actual.shape}"
        )
    differs = np.asarray(actual).astype(np.float64) != expected.astype(np.float64)
    if differs.ndim > 1:
        differs = differs.reshape(batch, -1).any(axis=1)
    if not differs.any():
        return DecisionReport(name, True, none)
    bound = decision_margin(dtype)
    if exact or margin is None:
        near = np.zeros(batch, dtype=bool)
    else:
        near = np.asarray(margin) <= bound
    boundary = differs & near
    wrong = differs & ~near
    if not wrong.any():
        return DecisionReport(name, True, boundary)
    i = int(np.argmax(wrong))
    margin_text = "" if margin is None else f", reference margin {float(margin[i]):.3g}"
    why = (
        "the case's probabilities and noise are exact, so no rounding excuses it"
        if exact
        else f"margins above the {dtype} bound {bound:g}"
    )
    on_threshold = ""
    if exact and margin is not None and float(margin[i]) == 0.0:
        on_threshold = (
            "; hint: the deciding quantity equals its threshold exactly there (or ties): "
            "a non-strict comparison (<= for <, >= for >) or another tie-break"
        )
    return DecisionReport(
        name,
        False,
        boundary,
        f"{name}: {int(wrong.sum())}/{batch} samples differ from the reference ({why}); "
        f"first at sample {i}: got {actual.reshape(batch, -1)[i].tolist()}, expected "
        f"{expected.reshape(batch, -1)[i].tolist()}{margin_text}{on_threshold}",
    )
