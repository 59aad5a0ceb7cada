"""Import of checkpoints of the original research code (``models/fusion/``).

The key table is in ``ORIGINAL_IMPLEMENTATION.md``. Renames are explicit, and
the packed attention projection ``in_proj_weight (3D, D)`` is split, in the
order query, key, value, into three canonical ``(D, D)`` matrices. PyTorch
stores ``Linear`` weights ``(out, in)``, as we do, so nothing is transposed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._errors import InputError, SpecError, WeightsError, describe
from ._params import _array, as_numpy, check_params
from ._union import RULES, parse

ATTENTION = {
    "in_proj_weight": ("query.weight", "key.weight", "value.weight"),
    "in_proj_bias": ("query.bias", "key.bias", "value.bias"),
    "out_proj.weight": ("output.weight",),
    "out_proj.bias": ("output.bias",),
}
ENCODER_LAYER = {
    **{f"self_attn.{k}": tuple(f"attn.{n}" for n in v) for k, v in ATTENTION.items()},
    "linear1.weight": ("ffn.up.weight",),
    "linear1.bias": ("ffn.up.bias",),
    "linear2.weight": ("ffn.down.weight",),
    "linear2.bias": ("ffn.down.bias",),
    "norm1.weight": ("norm1.weight",),
    "norm1.bias": ("norm1.bias",),
    "norm2.weight": ("norm2.weight",),
    "norm2.bias": ("norm2.bias",),
}


#: Fields whose default serves training and whose other value is the original's behaviour;
#: from_legacy sets the original's unless the caller gives the field. Every rule: the
#: original has no input normalisation (the default ``input_norm="batch"`` is for
#: encoders trained from scratch).
FIDELITY: dict[str, dict[str, Any]] = {
    kind: {"input_norm": "none"}
    for kind in (
        "simple", "concat_mlp", "gated", "film", "modality_dropout",
        "transformer_concat", "cross_attention", "shomr", "energy_aware_adaptive",
    )
}
FIDELITY["transformer_concat"]["modality_embedding_std"] = 1.0
FIDELITY["shomr"] |= {"straight_through": False, "router_init_bias": None}
FIDELITY["energy_aware_adaptive"] |= {"straight_through": False, "router_init_bias": None}


def _modules(pairs: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Expand ``{legacy module: canonical module}`` to weight and bias keys."""
    table = {}
    for old, new in pairs.items():
        for leaf in ("weight", "bias"):
            table[f"{old}.{leaf}"] = (f"{new}.{leaf}",)
    return table


def _attention(old: str, new: str) -> dict[str, tuple[str, ...]]:
    return {f"{old}.{k}": tuple(f"{new}.{n}" for n in v) for k, v in ATTENTION.items()}


def _encoder(old: str, new: str, layers: int) -> dict[str, tuple[str, ...]]:
    table = {}
    for i in range(layers):
        for k, v in ENCODER_LAYER.items():
            table[f"{old}.layers.{i}.{k}"] = tuple(f"{new}.{i}.{n}" for n in v)
    return table


def _table(s) -> dict[str, tuple[str, ...]]:
    """legacy key -> canonical names (several: split evenly along axis 0)."""
    kind = s.kind
    if kind == "simple":
        return _encoder("fusion", "encoder", s.layers)
    if kind == "transformer_concat":
        table = _encoder("transformer", "encoder", s.layers)
        table["modality_token"] = ("modality_embedding",) if s.modality_embeddings else ()
        return table
    if kind == "concat_mlp":
        return _modules({f"mlp.{3 * i}": f"mlp.{i}" for i in range(s.layers)})
    if kind == "gated":
        return _modules({"gate.0": "gate"})
    if kind == "film":
        return _modules({"mlp_gamma": "gamma", "mlp_beta": "beta"})
    if kind == "modality_dropout":
        return _modules({"gated.0": "mlp.0", "gated.2": "mlp.1"})
    if kind == "cross_attention":
        return {
            **_modules(
                {"norm1": "norm1", "norm2": "norm2", "ffn.0": "ffn.up", "ffn.2": "ffn.down"}
            ),
            **_attention("cross_attn", "attn"),
        }
    if kind == "shomr":
        return {
            **_modules(
                {
                    "conf_net.0": "confidence.hidden",
                    "conf_net.3": "confidence.out",
                    "router.0": "router.hidden",
                    "router.3": "router.out",
                    "gate.0": "gate",
                    "norm1": "norm1",
                    "norm2": "norm2",
                    "ffn.0": "ffn.up",
                    "ffn.3": "ffn.down",
                    "proj_single.0": "single",
                }
            ),
            **_attention("cross_attn", "attn"),
        }
    if kind == "energy_aware_adaptive":
        table = {
            **_modules(
                {
                    "router.0": "router.hidden",
                    "router.2": "router.out",
                    "gate.0": "gate",
                    "norm": "norm",
                    "ffn.0": "ffn.up",
                    "ffn.2": "ffn.down",
                }
            ),
            **_attention("cross_attn", "attn"),
        }
        table["lambda_energy"] = ("energy_weight",) if s.energy_weight_trainable else ()
        return table
    raise AssertionError(kind)


# legacy keys whose shape gives dim, in order of preference: (key, axis)
_DIM_KEYS = {
    "simple": [("fusion.layers.0.norm1.weight", 0), ("fusion.layers.0.linear2.bias", 0)],
    "transformer_concat": [("transformer.layers.0.norm1.weight", 0), ("modality_token", -1)],
    "gated": [("gate.0.bias", 0), ("gate.0.weight", 0)],
    "film": [("mlp_gamma.bias", 0), ("mlp_gamma.weight", 0), ("mlp_beta.weight", 1)],
    "modality_dropout": [("gated.0.bias", 0), ("gated.0.weight", 0), ("gated.2.weight", 0)],
    "cross_attention": [("norm1.weight", 0), ("norm2.weight", 0), ("ffn.0.weight", 1)],
    "shomr": [("norm1.weight", 0), ("norm2.weight", 0), ("proj_single.0.weight", 0)],
    "energy_aware_adaptive": [("norm.weight", 0), ("gate.0.bias", 0), ("ffn.0.weight", 1)],
}


def _size(a: np.ndarray | None, axis: int) -> int | None:
    """``a.shape[axis]`` where ``a`` has that axis and it is non-empty; else ``None``."""
    if a is None or a.ndim == 0 or not -a.ndim <= axis < a.ndim or a.shape[axis] == 0:
        return None
    return int(a.shape[axis])


def _infer(kind: str, arrays: dict[str, np.ndarray], given: dict[str, Any]) -> dict[str, Any]:
    """Sizes the checkpoint determines (dim, layers, hidden_mult), unless given.

    A size is read only from an array that has the axis (a 0-d or empty array
    infers nothing; the shape check names it afterwards).
    """
    inferred: dict[str, Any] = {}
    if kind in ("simple", "transformer_concat"):
        prefix = "fusion" if kind == "simple" else "transformer"
        indices = {
            int(m.group(1)) for k in arrays if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))
        }
        if indices:
            inferred["layers"] = max(indices) + 1
    if kind == "concat_mlp":
        indices = sorted(
            int(m.group(1)) for k in arrays if (m := re.match(r"mlp\.(\d+)\.weight$", k))
        )
        if indices:
            inferred["layers"] = indices[-1] // 3 + 1
            dim = _size(arrays[f"mlp.{indices[-1]}.weight"], 0)
            hidden = _size(arrays["mlp.0.weight"], 0) if "mlp.0.weight" in arrays else None
            if dim is not None:
                inferred["dim"] = dim
                if len(indices) > 1 and hidden is not None and hidden % dim == 0:
                    inferred["hidden_mult"] = hidden // dim
    else:
        for key, axis in _DIM_KEYS[kind]:
            if (size := _size(arrays.get(key), axis)) is not None:
                inferred["dim"] = size
                break
    if kind == "energy_aware_adaptive" and "lambda_energy" in arrays:
        if not given.get("energy_weight_trainable", False):
            value = arrays["lambda_energy"]
            if value.size != 1:
                raise WeightsError(
                    f"{kind}: legacy key 'lambda_energy' expected one value; "
                    f"received shape {value.shape}"
                )
            inferred["energy_weight"] = float(value.reshape(-1)[0])
    inferred = {k: v for k, v in inferred.items() if k not in given}
    if "dim" not in inferred and "dim" not in given:
        raise WeightsError(_no_dim(kind, arrays))
    return inferred


def _no_dim(kind: str, arrays: dict[str, np.ndarray]) -> str:
    """Why dim cannot be read: the keys that give it are absent, or present without the
    axis that holds it (0-d or empty)."""
    if kind == "concat_mlp":
        keys = [k for k in sorted(arrays) if re.match(r"mlp\.(\d+)\.weight$", k)]
        expected = "a key 'mlp.<3i>.weight' (axis 0 gives dim)"
        pairs = [(k, 0) for k in keys[-1:]]
    else:
        pairs = [(k, axis) for k, axis in _DIM_KEYS[kind] if k in arrays]
        expected = "one of " + ", ".join(f"{k!r} (axis {axis})" for k, axis in _DIM_KEYS[kind])
    if pairs:
        found = ", ".join(f"{k!r} of shape {arrays[k].shape}" for k, _ in pairs)
        received = f"{found}, without that axis or with it empty"
    else:
        names = [repr(k) for k in sorted(arrays)]
        shown = names if len(names) <= 6 else [*names[:6], f"... {len(names) - 6} more"]
        received = f"none of them (keys: {', '.join(shown)})" if names else "no keys"
    return (
        f"{kind}: cannot infer dim from the legacy state_dict: expected {expected}; "
        f"received {received}; pass dim=..."
    )


def from_legacy(kind: str, state_dict: Mapping[str, Any], **init_kwargs: Any):
    """Turn a ``state_dict`` of the original module plus its constructor arguments
    into ``(spec, canonical params)``.

    ``state_dict`` is the fusion module's own (keys as in the key table, without
    the model's ``fusion.`` prefix); values are NumPy arrays or tensors. Sizes the
    checkpoint determines (``dim``, ``layers``, ``hidden_mult``) are inferred;
    ``heads`` cannot be and defaults to the original's 8. For
    ``energy_aware_adaptive`` the trained ``lambda_energy`` becomes the spec's
    ``energy_weight`` (or the parameter, with ``energy_weight_trainable=True``).
    The fidelity options of ``FIDELITY`` (no input normalisation, no straight-through
    router gradient, the original's ``torch.randn`` modality embeddings) are set unless given: the
    loaded module behaves, and keeps training, as the original did.
    Raises ``WeightsError`` naming missing, unexpected and mis-shaped keys.
    """
    if not isinstance(kind, str) or kind not in RULES:
        raise InputError(
            f"from_legacy: argument 'kind' expected one of {list(RULES)}; received {kind!r}"
        )
    if not isinstance(state_dict, Mapping):
        raise WeightsError(
            f"{kind}: from_legacy argument 'state_dict' expected a mapping of key -> tensor; "
            f"received {describe(state_dict)}"
        )
    arrays, problems = {}, []
    for key, value in state_dict.items():
        a, why = _array(value)
        if why is not None:
            problems.append(f"{key!r}: {why}")
        else:
            arrays[str(key)] = a
    if problems:
        raise WeightsError(f"{kind}: legacy state_dict: " + "; ".join(problems))
    inferred = _infer(kind, arrays, init_kwargs)
    fidelity = {k: v for k, v in FIDELITY.get(kind, {}).items() if k not in init_kwargs}
    try:
        s = parse({"kind": kind, **fidelity, **inferred, **init_kwargs})
    except SpecError as e:
        loc = e.errors[0]["loc"] if e.errors else ()
        if loc and loc[0] in init_kwargs and loc[0] not in inferred:
            raise  # a field the caller gave: their spec error, as is
        shown = ", ".join(f"{k}={v!r}" for k, v in inferred.items()) or "nothing"
        raise WeightsError(
            f"{kind}: the legacy state_dict and arguments give an invalid spec: {e} "
            f"(inferred from the checkpoint's shapes: {shown}; given: {sorted(init_kwargs)})"
        ) from e
    table = _table(s)
    shapes = s.param_shapes()
    missing = [k for k in table if k not in arrays]
    unexpected = sorted(k for k in arrays if k not in table)
    problems = []
    if missing:
        problems.append(f"missing legacy keys {missing}")
    if unexpected:
        problems.append(f"unexpected legacy keys {unexpected}")
    params: dict[str, np.ndarray] = {}
    for key, names in table.items():
        if key not in arrays or not names:
            continue
        value = arrays[key]
        if key == "modality_token":
            value = (
                value.reshape(value.shape[-2:])
                if value.ndim == 3 and value.shape[0] == 1
                else value
            )
        expected = (
            (len(names) * shapes[names[0]][0], *shapes[names[0]][1:])
            if len(names) > 1
            else shapes[names[0]]
        )
        if tuple(value.shape) != expected:
            problems.append(f"{key!r}: expected shape {expected}, received {tuple(value.shape)}")
            continue
        parts = np.split(value, len(names), axis=0) if len(names) > 1 else [value]
        for name, part in zip(names, parts, strict=True):
            params[name] = np.array(part, dtype=np.float32, order="C")
    if problems:
        raise WeightsError(
            f"{kind}: legacy state_dict does not match {s!r}: " + "; ".join(problems)
        )
    for p in s.input_norm_params():  # input_norm="batch" given: state the original lacks
        params[p.name] = np.array(p.init.array(p.shape), dtype=np.float32, order="C")
    check_params(s, params, what="converted legacy params")
    return s, params


def to_legacy(s, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The original module's ``state_dict`` (NumPy, float32) holding the canonical ``params``.

    The inverse of ``from_legacy``: canonical names back to the key table, the
    attention's query/key/value matrices packed into ``in_proj_weight``
    ``(3D, D)``, ``modality_embedding`` ``(2, D)`` as ``modality_token``
    ``(1, 2, D)``, and ``energy_aware_adaptive``'s ``lambda_energy`` from the
    parameter or, when it is not trainable, the spec's ``energy_weight``.
    ``from_legacy(s.kind, to_legacy(s, params), **fields)`` gives ``params`` back.
    """
    s = parse(s)
    check_params(s, params, what="canonical params")
    arrays = {k: as_numpy(v) for k, v in params.items()}
    state: dict[str, np.ndarray] = {}
    for key, names in _table(s).items():
        if key == "lambda_energy" and not names:
            value = np.asarray(s.energy_weight, dtype=np.float32)
        elif not names:
            continue
        elif len(names) == 1:
            value = arrays[names[0]]
        else:
            value = np.concatenate([arrays[n] for n in names], axis=0)
        if key == "modality_token":
            value = value[None]
        state[key] = np.array(value, dtype=np.float32, order="C")
    return state
