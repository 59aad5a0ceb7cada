"""Comparison tolerances against the float64 reference, one policy for every backend.

Values: ``|actual - expected| <= atol + rtol * |expected|`` element-wise, per
dtype of the backend's computation (the conformance suite scales ``atol`` by
``max(1, max|expected|)`` of the tensor, see ``conformance.compare``).
Decisions (routes, masks) are compared exactly except on samples whose
reference margin is at most ``decision_margin(dtype)``. Gradients of
``sum(output * R)`` are compared with central finite differences of the
reference within ``gradient_tolerance(dtype)``.

Measurements behind the float32 numbers (``python -m conformance.measure``,
every conformance case, PyTorch 2.13 CPU and Keras 3.15 on jax/torch/numpy):
MEASUREMENTS
"""

from __future__ import annotations

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-10, "atol": 1e-10},
    "float32": {"rtol": 1e-4, "atol": 1e-5},
    "bfloat16": {"rtol": 5e-2, "atol": 5e-2},
}

#: A differing decision is a boundary case when the reference margin is at most this.
DECISION_MARGINS: dict[str, float] = {"float64": 1e-9, "float32": 1e-4, "bfloat16": 5e-2}

#: Gradients: ``rtol`` on each finite difference, ``atol`` times the gradient's scale.
GRADIENT_TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-6, "atol": 1e-7},
    "float32": {"rtol": 1e-3, "atol": 1e-4},
    "bfloat16": {"rtol": 1e-1, "atol": 5e-2},
}


def _name(dtype: str, table: dict) -> str:
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in table:
        raise ValueError(f"tolerance: expected one of {sorted(table)}; received {dtype!r}")
    return name


def tolerance(dtype: str) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for a dtype name such as ``"float32"``."""
    return TOLERANCES[_name(dtype, TOLERANCES)]


def decision_margin(dtype: str) -> float:
    """Largest reference margin at which a differing decision counts as a boundary case."""
    return DECISION_MARGINS[_name(dtype, DECISION_MARGINS)]


def gradient_tolerance(dtype: str) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for gradients against finite differences."""
    return GRADIENT_TOLERANCES[_name(dtype, GRADIENT_TOLERANCES)]
