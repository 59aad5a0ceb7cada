"""Call-argument checks shared by the reference and the backends: one wording, metadata only.

Each implementation runs ``check_call`` first thing in its forward, before any
framework operation, with a ``meta`` function that reads an argument's shape and
dtype kind without touching its values (no host synchronisation on a device
tensor, and traceable by ``torch.compile``). Value checks (noise in ``[0, 1)``)
run only where the values are already on the host: ``host(x)`` returns a NumPy
array for those and ``None`` otherwise.

The call's array arguments are declared once, in ``CALL_INPUTS``: a new optional
argument is one more ``ArgSpec`` line there plus its keyword in each forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import InputError, _dtype_name, describe, dtype_kind

Meta = tuple[tuple[Any, ...], str] | None


@dataclass(frozen=True)
class ArgSpec:
    """One array argument of a call: ``shape`` uses ``"B"`` (batch), ``"D"`` (``dim``),
    ``"D_v"`` and ``"D_t"`` (the image and text widths, ``dim`` unless the spec says),
    ``"L_v"`` and ``"L_t"`` (the token counts, read from ``v`` and ``t``).

    ``tokens``: the argument's other accepted shape, a token sequence (``v`` may be
    ``(B, D_v)`` or ``(B, L_v, D_v)``). ``needs``: the argument that must be a token
    sequence for this one to be given (a padding mask needs its modality's tokens).
    """

    name: str
    shape: tuple[str | int, ...]
    kinds: tuple[str, ...] = ("float",)
    optional: bool = False
    doc: str = ""
    tokens: tuple[str | int, ...] | None = None
    needs: str | None = None


#: The array arguments of every rule's call, in order.
CALL_INPUTS: tuple[ArgSpec, ...] = (
    ArgSpec(
        "v",
        ("B", "D_v"),
        doc="Image embedding, or image tokens (B, L_v, D_v).",
        tokens=("B", "L_v", "D_v"),
    ),
    ArgSpec(
        "t",
        ("B", "D_t"),
        doc="Text embedding, or text tokens (B, L_t, D_t).",
        tokens=("B", "L_t", "D_t"),
    ),
    ArgSpec(
        "present",
        ("B", 2),
        kinds=("bool", "int"),
        optional=True,
        doc="Presence mask (image, text) per sample; None: every modality present.",
    ),
    ArgSpec(
        "image_mask",
        ("B", "L_v"),
        kinds=("bool", "int"),
        optional=True,
        doc="Image tokens that are real (True) or padding (False); None: all real.",
        needs="v",
    ),
    ArgSpec(
        "text_mask",
        ("B", "L_t"),
        kinds=("bool", "int"),
        optional=True,
        doc="Text tokens that are real (True) or padding (False); None: all real.",
        needs="t",
    ),
)

#: The padding mask of each modality's tokens, by modality.
TOKEN_MASKS = {"image": "image_mask", "text": "text_mask"}

_PLAIN = (bool, int, float, complex, str, bytes, list, tuple, dict)


def array_meta(x: Any) -> Meta:
    """``(shape, dtype kind)`` of an array or tensor of any framework; ``None`` for anything else."""
    if x is None or isinstance(x, _PLAIN) or not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return None
    try:
        shape = tuple(None if d is None else int(d) for d in x.shape)
    except TypeError:  # a symbolic dimension
        shape = tuple(x.shape)
    return shape, dtype_kind(x.dtype)


def _fits(shape: tuple, want: tuple) -> bool:
    """Same rank, and equal sizes wherever both are known (``None`` or a symbol matches)."""
    if shape == want:  # the common case, without a generator
        return True
    return len(shape) == len(want) and all(
        not isinstance(w, int) or d is None or d == w for d, w in zip(shape, want, strict=True)
    )


def sizes_of(s) -> tuple[int, int, int]:
    """``(D, D_v, D_t)`` of spec ``s``: what the symbols of ``ArgSpec.shape`` stand for."""
    return s.dim, s.width("image"), s.width("text")


def _resolve(d: str | int, sizes: tuple[int, int, int]) -> str | int:
    return {"D": sizes[0], "D_v": sizes[1], "D_t": sizes[2]}.get(d, d) if isinstance(d, str) else d


def _shape_text(shape: tuple[str | int, ...], sizes: tuple[int, int, int]) -> str:
    return (
        "("
        + ", ".join(str(_resolve(d, sizes)) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _kind_text(kinds: tuple[str, ...]) -> str:
    words = {"float": "a floating", "int": "an integer"}
    return " or ".join(words.get(k, f"a {k}") for k in kinds) + " dtype"


def _dtype(x: Any) -> str:
    return _dtype_name(getattr(x, "dtype", "?"))


def check_flag(kind: str, name: str, value: Any, *, allow_none: bool = False) -> bool:
    """A Python or NumPy bool (``None`` too where allowed); returns it as ``bool``."""
    if value is None and allow_none:
        return False
    if not isinstance(value, (bool, np.bool_)):
        expected = "None, True or False" if allow_none else "True or False"
        raise InputError(
            f"{kind}: argument {name!r} expected {expected}; received {describe(value)}"
        )
    return bool(value)


def check_arrays(s, arrays: Mapping[str, Any], meta: Callable[[Any], Meta] = array_meta) -> Any:
    """Check the declared array arguments; returns the batch size (``None`` if symbolic).

    An argument with a ``tokens`` shape may have either shape; its token count binds
    the symbol (``L_v``) that later arguments (the padding masks) are checked against.
    Runs on every call: the message strings are built only on an error.
    """
    batch, first = None, None
    sizes = sizes_of(s)
    bound: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    for arg, want, fixed, batch_axis, alt in _plan(s.inputs(), sizes):
        x = arrays.get(arg.name)
        if x is None:
            if arg.optional:
                continue
            raise InputError(
                f"{s.kind}: argument {arg.name!r} expected an array or tensor of shape "
                f"{_shapes_text(arg, sizes)}; received None"
            )
        m = meta(x)
        if m is None:
            raise InputError(
                f"{s.kind}: argument {arg.name!r} expected an array or tensor of shape "
                f"{_shapes_text(arg, sizes)}; received {describe(x)}"
            )
        shape, kind = m
        if arg.needs is not None and ranks.get(arg.needs) != 3:
            raise InputError(
                f"{s.kind}: argument {arg.name!r} is the padding mask of token sequences: "
                f"expected {arg.needs!r} of shape {_shape_text(_token_shape(s, arg.needs), sizes)}; "
                f"received {arg.needs!r} of rank {ranks.get(arg.needs)}"
            )
        if alt is not None and len(shape) == len(alt[0]):
            want, fixed = alt
        if len(shape) != len(want) or any(shape[i] not in (None, w) for i, w in fixed) or any(
            isinstance(w, str) and w in bound and shape[i] is not None
            and bound[w] is not None and shape[i] != bound[w]
            for i, w in enumerate(want)
        ):
            raise InputError(
                f"{s.kind}: argument {arg.name!r} expected shape "
                f"{_shapes_text(arg, sizes, bound)}; received shape {tuple(shape)}"
            )
        if kind not in arg.kinds:
            raise InputError(
                f"{s.kind}: argument {arg.name!r} expected {_kind_text(arg.kinds)}; "
                f"received {_dtype(x)}"
            )
        ranks[arg.name] = len(shape)
        for i, w in enumerate(want):
            if isinstance(w, str) and w.startswith("L_"):
                bound.setdefault(w, shape[i])
        if batch_axis is not None:
            b = shape[batch_axis]
            if first is None:
                batch, first = b, (arg.name, shape)
            elif b is not None and batch is not None and b != batch:
                raise InputError(
                    f"{s.kind}: arguments {first[0]!r} and {arg.name!r} expected equal batch "
                    f"sizes; received {first[0]} {tuple(first[1])} and {arg.name} {tuple(shape)}"
                )
            elif batch is None:
                batch = b
    return batch


def _token_shape(s, name: str) -> tuple[str | int, ...]:
    return next(a.tokens for a in s.inputs() if a.name == name) or ()


def _shapes_text(arg: ArgSpec, sizes: tuple[int, int, int], bound=None) -> str:
    """The accepted shape(s) of ``arg``, known token counts filled in."""
    def one(shape):
        return _shape_text(tuple((bound or {}).get(d, d) or d for d in shape), sizes)

    return one(arg.shape) + (f" or {one(arg.tokens)}" if arg.tokens else "")


def _plan(inputs: tuple[ArgSpec, ...], sizes: tuple[int, int, int]) -> tuple[tuple, ...]:
    """Per declared input: the spec, its wanted shape (``D`` resolved), its fixed sizes
    ``((axis, size), ...)`` and its batch axis: what ``_fits`` asks.

    Cached in a plain dict by the identity of ``inputs`` (a module constant) and
    ``sizes`` (``sizes_of``): not ``functools.lru_cache``, whose hashing of the argument specs costs
    more than the lookup saves and which ``torch.compile`` warns about.
    """
    key = (id(inputs), sizes)  # unambiguous: the entry keeps ``inputs`` alive, so its id
    hit = _PLANS.get(key)  # cannot be reused by another object while cached
    if hit is not None:
        return hit[1]
    plan = []
    for arg in inputs:
        want = tuple(_resolve(d, sizes) for d in arg.shape)
        fixed = tuple((i, w) for i, w in enumerate(want) if isinstance(w, int))
        alt = None
        if arg.tokens is not None:
            alt_want = tuple(_resolve(d, sizes) for d in arg.tokens)
            alt = (alt_want, tuple((i, w) for i, w in enumerate(alt_want) if isinstance(w, int)))
        batch_axis = arg.shape.index("B") if "B" in arg.shape else None
        plan.append((arg, want, fixed, batch_axis, alt))
    _PLANS[key] = (inputs, tuple(plan))
    return _PLANS[key][1]


_PLANS: dict[tuple[int, tuple[int, int, int]], tuple[tuple, tuple]] = {}


def check_noise(
    s,
    noise: Any,
    declared: list,
    meta: Callable[[Any], Meta] = array_meta,
    host: Callable[[Any], np.ndarray | None] = lambda x: None,
) -> None:
    """Injected noise: a mapping with exactly the declared names, float arrays of the
    declared shapes; values in ``[0, 1)`` where ``host`` gives them without a sync."""
    if not isinstance(noise, Mapping):
        raise InputError(
            f"{s.kind}: argument 'noise' expected None or a dict {{name: array}}; "
            f"received {describe(noise)}"
        )
    names = sorted(n.name for n in declared)
    given = sorted(str(k) for k in noise)
    if given != names:
        missing = sorted(set(names) - set(given))
        unexpected = sorted(set(given) - set(names))
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {unexpected}" if unexpected else "",
            )
            if part
        )
        raise InputError(
            f"{s.kind}: argument 'noise' expected names {names} for this call; "
            f"received {given} ({detail})"
        )
    for n in declared:
        x = noise[n.name]
        m = meta(x)
        if m is None:
            raise InputError(
                f"{s.kind}: noise {n.name!r} expected a float array of shape {tuple(n.shape)}; "
                f"received {describe(x)}"
            )
        shape, kind = m
        if kind != "float":
            raise InputError(
                f"{s.kind}: noise {n.name!r} expected a floating dtype; received {_dtype(x)}"
            )
        if not _fits(shape, tuple(n.shape)):
            raise InputError(
                f"{s.kind}: noise {n.name!r} expected shape {tuple(n.shape)}; "
                f"received {tuple(shape)}"
            )
        u = host(x)
        if u is not None and u.size and not (np.all(u >= 0.0) and np.all(u < 1.0)):
            shown = "NaN" if np.isnan(u).any() else f"min {np.min(u)}, max {np.max(u)}"
            raise InputError(
                f"{s.kind}: noise {n.name!r} expected values in [0, 1); received {shown}"
            )


def check_present(s, mask: np.ndarray | None, name: str = "present") -> None:
    """An integer presence (or padding) mask holds only 0 and 1 (a bool mask needs no check).

    ``mask`` is the mask's values where they are on the host without a
    synchronisation (``None`` otherwise: a device tensor is not read).
    """
    if mask is None or mask.dtype == np.bool_ or not mask.size:
        return
    if ((mask != 0) & (mask != 1)).any():
        wrong = sorted(set(np.unique(mask).tolist()) - {0, 1})
        raise InputError(
            f"{s.kind}: argument {name!r} expected booleans (or 0/1); received values {wrong[:5]}"
        )


def numpy_host(x: Any) -> np.ndarray | None:
    """The values of a NumPy array (already on the host); ``None`` for anything else."""
    return np.asarray(x, dtype=np.float64) if isinstance(x, np.ndarray) else None
