"""Comparison tolerances against the float64 reference, one policy for every backend.

``|actual - expected| <= atol + rtol * |expected|`` element-wise, per dtype of
the backend's computation. The conformance suite documents the measurements
behind these numbers (docs/conventions.md).
"""

from __future__ import annotations

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-10, "atol": 1e-10},
    "float32": {"rtol": 1e-4, "atol": 1e-5},
    "bfloat16": {"rtol": 5e-2, "atol": 5e-2},
}


def tolerance(dtype: str) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for a dtype name such as ``"float32"``."""
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in TOLERANCES:
        raise ValueError(f"tolerance: expected one of {sorted(TOLERANCES)}; received {dtype!r}")
    return TOLERANCES[name]
