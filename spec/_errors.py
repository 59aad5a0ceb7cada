"""The library's error types and the wording of its messages, in one place.

Every error raised through the public API is one of these (or a plain
``ImportError`` for a missing optional framework):

* ``SpecError``: a spec field is invalid (``spec.parse``, ``s.replace``, a spec
  class called directly, every entry point that takes a spec);
* ``InputError``: a call argument is invalid (``v``, ``t``, ``noise``, call
  options, ``training``, build arguments);
* ``WeightsError``: parameters, a weight file or a checkpoint cannot be used.

All three derive from ``FusionError`` and from ``ValueError``; ``InputError``
also derives from ``TypeError`` (as NumPy's ``AxisError`` derives from both
``ValueError`` and ``IndexError``), so code that catches the built-in a wrong
type or value raises keeps working.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["FusionError", "InputError", "SpecError", "WeightsError", "describe"]


class FusionError(Exception):
    """Base of every error fusion-spec raises on bad input."""


class SpecError(FusionError, ValueError):
    """A spec is invalid: the first line names the rule, the field, the rule broken
    and the received value. ``errors`` holds pydantic's structured list (empty for
    errors raised outside pydantic)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class InputError(FusionError, ValueError, TypeError):
    """A call argument is invalid: names the rule, the argument, the expectation and
    what was received."""


class WeightsError(FusionError, ValueError):
    """Parameters, a weight file or a checkpoint cannot be used: names the path (or
    the parameter) and the reason."""


def describe(x: Any) -> str:
    """A short, value-free description of ``x`` for error messages.

    Reads only metadata (type, shape, dtype), never values, so it is safe on
    device tensors (no host synchronisation) and on symbolic tensors.
    """
    if x is None:
        return "None"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        try:
            shape = tuple(None if d is None else int(d) for d in shape)
        except TypeError:
            shape = tuple(shape)
        return f"{type(x).__name__} of shape {shape} and dtype {_dtype_name(dtype)}"
    if isinstance(x, (bool, int, float, complex, str, bytes)):
        text = repr(x)
        return f"{type(x).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of length {len(x)}"
    if isinstance(x, dict):
        return f"dict with keys {sorted(map(str, x))}"
    return type(x).__name__


def did_you_mean(received: Any, valid: Iterable[str]) -> str:
    """`` (did you mean 'concat_mlp'?)`` for a misspelt name close to one of ``valid``, else ``""``.

    Appended to a message that already lists the valid names (the suggestion is
    a shortcut, the list the reference): ``difflib``'s close matches, best first.
    """
    if not isinstance(received, str):
        return ""
    valid = list(valid)
    # case and separators are the commonest slips: 'concat-mlp', 'GATED', 'crossAttention'
    folded = {re.sub(r"[-_ ]", "", name.lower()): name for name in valid}
    exact = folded.get(re.sub(r"[-_ ]", "", received.lower()))
    matches = [exact] if exact else difflib.get_close_matches(received, valid, n=2, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)"


def _dtype_name(dtype: Any) -> str:
    """``float32``, ``int64``, ``<U1``...: one spelling for NumPy, torch, TensorFlow, jax dtypes."""
    if not isinstance(dtype, (np.dtype, str)) and isinstance(getattr(dtype, "name", None), str):
        return dtype.name  # tf.DType (str() gives "<dtype: 'int32'>")
    text = str(dtype)
    return text[len("torch.") :] if text.startswith("torch.") else text


def dtype_kind(dtype: Any) -> str:
    """``"float"``, ``"int"``, ``"bool"``, ``"complex"`` or ``"other"`` of any framework's dtype.

    By name, so that torch, jax, TensorFlow and NumPy dtypes (and ml_dtypes'
    ``bfloat16``) are classified without importing a framework.
    """
    name = _dtype_name(getattr(dtype, "name", dtype)).lower()
    if name in ("bool", "bool_"):
        return "bool"
    if "complex" in name:
        return "complex"
    if "float" in name or name in ("half", "double", "bfloat16"):
        return "float"
    if "int" in name:
        return "int"
    return "other"


def numpy_kind(a: np.ndarray) -> str:
    """``dtype_kind`` of a NumPy array (ml_dtypes' ``bfloat16`` counts as float)."""
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        return "float"
    return {"b": "bool", "i": "int", "u": "int", "c": "complex"}.get(a.dtype.kind, "other")
