"""Canonical parameters: initialisation and checking against a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class WeightsError(ValueError):
    """Parameters or a weight file do not match the spec."""


def init_params(s, seed: int = 0) -> dict[str, np.ndarray]:
    """Draw canonical float32 parameters from the spec's initial distributions.

    Distributions match the original's PyTorch initialisation (not its random
    stream); parameters ``tied_to`` another start as copies of it.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for p in s.params():
        init = p.init
        if init.tied_to is not None:
            value = params[init.tied_to].copy()
        elif init.kind == "uniform":
            value = rng.uniform(-init.bound, init.bound, size=p.shape)
        elif init.kind == "normal":
            value = rng.normal(0.0, init.std, size=p.shape)
        else:
            value = np.full(p.shape, init.value)
        params[p.name] = np.array(value, dtype=np.float32, order="C")
    return params


def as_numpy(x: Any) -> np.ndarray:
    """An array from NumPy input or a framework tensor (torch, jax, ...), no copy if possible."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def check_params(
    s, params: Mapping[str, Any], *, dtype: str | None = None, what: str = "params"
) -> None:
    """Check names, shapes (and optionally dtype) of ``params`` against the spec.

    Raises ``WeightsError`` listing every missing, unexpected and mis-shaped entry.
    """
    expected = {p.name: p for p in s.params()}
    problems = []
    missing = [n for n in expected if n not in params]
    unexpected = sorted(n for n in params if n not in expected)
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    for name, p in expected.items():
        if name not in params:
            continue
        value = params[name]
        shape = tuple(getattr(value, "shape", np.shape(value)))
        if shape != p.shape:
            problems.append(f"{name!r}: expected shape {p.shape}, received {shape}")
        if dtype is not None and str(getattr(value, "dtype", "")) != dtype:
            problems.append(f"{name!r}: expected dtype {dtype}, received {value.dtype}")
        elif not np.issubdtype(np.asarray(as_numpy(value)).dtype, np.floating):
            problems.append(f"{name!r}: expected a floating dtype, received {value.dtype}")
    if problems:
        raise WeightsError(f"{s.kind}: {what} do not match the spec: " + "; ".join(problems))
