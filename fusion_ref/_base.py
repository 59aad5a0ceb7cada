"""Plumbing of the reference: input, noise and option checks, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fusion_spec.spec import as_numpy, check_params, parse


def check_inputs(s, v: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    """2-D floating ``(B, dim)`` arrays with equal ``B``; returned as float64."""
    arrays = []
    for name, x in (("v", v), ("t", t)):
        a = as_numpy(x)
        if a.ndim != 2 or a.shape[1] != s.dim:
            raise ValueError(
                f"{s.kind}: argument {name!r} expected shape (B, {s.dim}); received shape {a.shape}"
            )
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"{s.kind}: argument {name!r} expected a floating dtype; received {a.dtype}"
            )
        arrays.append(a.astype(np.float64))
    v64, t64 = arrays
    if v64.shape[0] != t64.shape[0]:
        raise ValueError(
            f"{s.kind}: arguments 'v' and 't' expected equal batch sizes; "
            f"received v {v64.shape} and t {t64.shape}"
        )
    return v64, t64


def check_noise(s, noise: Mapping[str, Any] | None, batch: int, training: bool, options: dict):
    """Every declared noise array present, of its shape, in ``[0, 1)``; nothing else."""
    declared = s.noise(batch, training=training, **options)
    noise = dict(noise or {})
    if declared and not noise:
        wanted = ", ".join(f"{n.name} {n.shape}" for n in declared)
        raise ValueError(
            f"{s.kind}: this call is stochastic and the reference draws no randomness; "
            f"pass noise={{...}} with uniform [0, 1) arrays: {wanted}"
        )
    unexpected = sorted(set(noise) - {n.name for n in declared})
    if unexpected:
        raise ValueError(
            f"{s.kind}: unexpected noise {unexpected} for this call; expected "
            f"{[n.name for n in declared] or 'none'}"
        )
    out = {}
    for n in declared:
        if n.name not in noise:
            raise ValueError(f"{s.kind}: noise {n.name!r} of shape {n.shape} missing")
        u = as_numpy(noise[n.name]).astype(np.float64)
        if u.shape != n.shape:
            raise ValueError(
                f"{s.kind}: noise {n.name!r} expected shape {n.shape}; received {u.shape}"
            )
        if u.size and not (np.all(u >= 0.0) and np.all(u < 1.0)):
            raise ValueError(
                f"{s.kind}: noise {n.name!r} expected values in [0, 1); "
                f"received min {u.min()}, max {u.max()}"
            )
        out[n.name] = u
    return out


def check_training(s, training: bool) -> None:
    if training and s.has_elementwise_dropout():
        raise ValueError(
            f"{s.kind}: training mode with dropout={s.dropout}: element-wise dropout is not "
            "part of the noise contract, so the reference cannot reproduce it; "
            "use dropout=0 (expected 0.0, received "
            f"{s.dropout})"
        )


def prepare(s, params, v, t, training, noise, options):
    s = parse(s)
    options = s.check_call_options(options)
    check_params(s, params)
    check_training(s, bool(training))
    v64, t64 = check_inputs(s, v, t)
    u = check_noise(s, noise, v64.shape[0], bool(training), options)
    p = {name: as_numpy(value).astype(np.float64) for name, value in params.items()}
    return s, p, v64, t64, u, options
