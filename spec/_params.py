"""Canonical parameters: initialisation and checking against a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._errors import InputError, WeightsError, describe, numpy_kind
from ._union import parse


def init_params(s, seed: int = 0) -> dict[str, np.ndarray]:
    """Draw canonical float32 parameters from the spec's initial distributions.

    Distributions match the original's PyTorch initialisation (not its random
    stream); parameters ``tied_to`` another start as copies of it.
    """
    s = parse(s)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(
            f"{s.kind}: argument 'seed' expected a non-negative int; received {describe(seed)}"
        )
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
            value = init.array(p.shape)
        params[p.name] = np.array(value, dtype=np.float32, order="C")
    return params


def as_numpy(x: Any) -> np.ndarray:
    """An array from NumPy input or a framework tensor (torch, jax, ...), no copy if possible.

    torch ``bfloat16``/``float16`` tensors become float32 (NumPy has no bfloat16
    without ml_dtypes); NumPy arrays of ml_dtypes' ``bfloat16`` pass through.
    """
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _array(value: Any) -> tuple[np.ndarray | None, str | None]:
    """``(array, None)`` for a real-valued numeric array or tensor, else ``(None, why)``."""
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return None, f"expected an array, received {describe(value)}"
    try:
        a = as_numpy(value)
    except Exception as e:  # ragged lists, exotic objects: say what was received
        return None, f"expected an array, received {describe(value)} ({type(e).__name__}: {e})"
    if numpy_kind(a) != "float":
        return None, f"expected a floating dtype, received {describe(value)}"
    return a, None


def check_params(
    s, params: Mapping[str, Any], *, dtype: str | None = None, what: str = "params"
) -> None:
    """Check names, shapes and dtypes of ``params`` against the spec.

    Every value must be a real floating array or tensor (``dtype`` pins its exact
    dtype name, e.g. ``"float32"``). Raises ``WeightsError`` listing every missing,
    unexpected, mis-typed and mis-shaped entry.
    """
    s = parse(s)
    if not isinstance(params, Mapping):
        raise WeightsError(
            f"{s.kind}: {what} expected a mapping of canonical name -> array; "
            f"received {describe(params)}"
        )
    expected = {p.name: p for p in s.params()}
    problems = []
    missing = [n for n in expected if n not in params]
    unexpected = sorted(str(n) for n in params if n not in expected)
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    for name, p in expected.items():
        if name not in params:
            continue
        value = params[name]
        a, why = _array(value)
        if why is not None:
            problems.append(f"{name!r}: {why}")
            continue
        if a.shape != p.shape:
            problems.append(f"{name!r}: expected shape {p.shape}, received {a.shape}")
        if dtype is not None and str(getattr(value, "dtype", a.dtype)) != dtype:
            problems.append(f"{name!r}: expected dtype {dtype}, received {a.dtype}")
    if problems:
        raise WeightsError(f"{s.kind}: {what} do not match the spec: " + "; ".join(problems))
