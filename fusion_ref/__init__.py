"""The NumPy float64 reference of the nine fusion rules: the oracle for every backend.

``forward(s, params, v, t, *, training=False, noise=None, return_aux=False, **options)``
is a pure function: training-mode randomness comes only from the named uniform
``noise`` arrays the spec declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

import numpy as np

from fusion_spec.spec import check_flag, parse

from ._base import prepare
from ._layers import Presence, erf, gelu, input_norm, linear
from .concat_mlp import concat_mlp
from .cross_attention import cross_attention
from .energy_aware_adaptive import energy_aware_adaptive
from .film import film
from .gated import gated
from .modality_dropout import modality_dropout
from .shomr import shomr
from .simple import simple
from .transformer_concat import transformer_concat

RULES: dict[str, Callable] = {
    "simple": simple,
    "concat_mlp": concat_mlp,
    "gated": gated,
    "film": film,
    "modality_dropout": modality_dropout,
    "transformer_concat": transformer_concat,
    "cross_attention": cross_attention,
    "shomr": shomr,
    "energy_aware_adaptive": energy_aware_adaptive,
}


# The return type follows ``return_aux``: the fused array, or it and the aux dict.
@overload
def forward(
    s: Any,
    params: Mapping[str, Any],
    v: Any,
    t: Any,
    present: Any = None,
    *,
    training: bool = False,
    noise: Mapping[str, Any] | None = None,
    return_aux: Literal[False] = False,
    **options: Any,
) -> np.ndarray: ...
@overload
def forward(
    s: Any,
    params: Mapping[str, Any],
    v: Any,
    t: Any,
    present: Any = None,
    *,
    training: bool = False,
    noise: Mapping[str, Any] | None = None,
    return_aux: Literal[True],
    **options: Any,
) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...
@overload
def forward(
    s: Any,
    params: Mapping[str, Any],
    v: Any,
    t: Any,
    present: Any = None,
    *,
    training: bool = False,
    noise: Mapping[str, Any] | None = None,
    return_aux: bool = False,
    **options: Any,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]: ...
def forward(
    s: Any,
    params: Mapping[str, Any],
    v: Any,
    t: Any,
    present: Any = None,
    *,
    training: bool = False,
    noise: Mapping[str, Any] | None = None,
    return_aux: bool = False,
    **options: Any,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fuse ``v`` and ``t`` (``(B, D_v)`` and ``(B, D_t)``, both ``(B, dim)`` unless the
    spec's ``image_dim`` / ``text_dim`` say otherwise) with rule ``s`` and canonical ``params``.

    A modality whose width differs from ``dim`` is first projected to ``dim`` by its
    ``input_proj`` Linear (before ``input_norm``).

    Computes in float64 whatever the input dtype. In training mode every
    stochastic decision reads the spec's named ``noise`` arrays (uniform on
    ``[0, 1)``); element-wise dropout must be 0. ``options`` are the rule's call
    options (``use_hard_routing`` for ``shomr``, ``progress`` for
    ``energy_aware_adaptive``).

    ``present`` is an optional ``(B, 2)`` boolean mask (image, text) of the
    modalities each sample has; ``None`` means all present and computes exactly
    what an all-true mask computes. An absent modality's row is replaced by zeros
    before anything reads it, the spec's ``missing_modality`` field says what the
    rule computes without it, and a sample with neither outputs zeros (aux
    ``neither``).

    Returns the fused ``(B, dim)`` float64 array, or ``(fused, aux)`` with
    ``return_aux=True``: ``aux`` holds the spec's auxiliary outputs, including the
    margins of discrete decisions.
    """
    s, training, p, v64, t64, mask, u, options = prepare(
        s, params, v, t, training, noise, options, present
    )
    return_aux = check_flag(s.kind, "return_aux", return_aux)
    m = None
    if mask is not None:
        m = Presence(mask[:, 0], mask[:, 1])
        v64 = np.where(m.image[:, None], v64, 0.0)
        t64 = np.where(m.text[:, None], t64, 0.0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        v64, t64 = _project(s, p, v64, t64, m)
        v64, t64, _ = _normalise(s, p, v64, t64, m, training)
        out, aux = RULES[s.kind](
            s, p, v64, t64, training=training, noise=u, present=m, **options
        )
    if m is not None:
        out = np.where(m.neither[:, None], 0.0, out)
        aux["neither"] = m.neither.astype(np.float64)
    return (out, aux) if return_aux else out


def _project(s, p, v, t, m):
    """``v``, ``t`` mapped to ``dim`` by ``input_proj.{image,text}`` where a width differs;
    an absent row stays 0 (not the projection's bias)."""
    out = {"image": v, "text": t}
    for modality in s.projected():
        y = linear(p, f"input_proj.{modality}", out[modality])
        if m is not None:
            y = np.where(getattr(m, modality)[:, None], y, 0.0)
        out[modality] = y
    return out["image"], out["text"]


def _normalise(s, p, v, t, m, training):
    """``v``, ``t`` after ``input_norm`` and the running statistics after the call."""
    if s.input_norm == "none":
        return v, t, {}
    v, (mean_v, var_v) = input_norm(s, p, v, None if m is None else m.image, "image", training)
    t, (mean_t, var_t) = input_norm(s, p, t, None if m is None else m.text, "text", training)
    return v, t, {
        "input_norm.image.running_mean": mean_v,
        "input_norm.image.running_var": var_v,
        "input_norm.text.running_mean": mean_t,
        "input_norm.text.running_var": var_t,
    }


def running_stats(s, params: Mapping[str, Any], v, t, present=None, *, training: bool = True):
    """The running statistics of ``input_norm="batch"`` after one call on ``v``, ``t``.

    ``{name: float64 array}`` under the canonical names of the state parameters
    (empty for ``input_norm="none"``): what a backend's state holds after a
    training call (eval calls leave it unchanged). Checks its arguments as
    ``forward`` does.
    """
    training = check_flag(parse(s).kind, "training", training)
    # checked as an eval call: the statistics read neither noise nor dropout (an eval call
    # that samples, eval_routing="sample", gets placeholder noise: the statistics ignore it)
    s = parse(s)
    batch = np.shape(v)[0] if np.ndim(v) else 0
    placeholder = {n.name: np.zeros(n.shape) for n in s.noise(batch, training=False)} or None
    s, _, p, v64, t64, mask, _, _ = prepare(s, params, v, t, False, placeholder, {}, present)
    m = None
    if mask is not None:
        m = Presence(mask[:, 0], mask[:, 1])
        v64 = np.where(m.image[:, None], v64, 0.0)
        t64 = np.where(m.text[:, None], t64, 0.0)
    v64, t64 = _project(s, p, v64, t64, m)
    return _normalise(s, p, v64, t64, m, training)[2]


__all__ = ["RULES", "Presence", "erf", "forward", "gelu", "running_stats"]
