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
from fusion_spec.spec._base import MODALITIES

from ._base import prepare
from ._layers import Presence, erf, gelu, input_norm, linear, pool
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
    image_mask: Any = None,
    text_mask: Any = None,
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
    image_mask: Any = None,
    text_mask: Any = None,
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
    image_mask: Any = None,
    text_mask: Any = None,
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
    image_mask: Any = None,
    text_mask: Any = None,
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

    Token sequences: ``v`` may be ``(B, L_v, D_v)`` and ``t`` ``(B, L_t, D_t)`` (either
    or both), with optional padding masks ``image_mask`` ``(B, L_v)`` and ``text_mask``
    ``(B, L_t)`` (True: a real token). ``simple``, ``transformer_concat`` and
    ``cross_attention`` attend over every real token; the other rules read each
    modality's masked mean. A modality whose tokens are all padding is absent, as
    if ``present`` said so. One token and no padding mask compute exactly the
    vector rule.

    Returns the fused ``(B, dim)`` float64 array, or ``(fused, aux)`` with
    ``return_aux=True``: ``aux`` holds the spec's auxiliary outputs, including the
    margins of discrete decisions.
    """
    s, training, p, v64, t64, mask, padding, u, options = prepare(
        s, params, v, t, training, noise, options, present, (image_mask, text_mask)
    )
    return_aux = check_flag(s.kind, "return_aux", return_aux)
    x, w, m = _sequences(v64, t64, mask, padding)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        x = _project(s, p, x, w)
        x, _ = _normalise(s, p, x, w, training)
        if s.kind in TOKEN_RULES:
            out, aux = RULES[s.kind](
                s, p, *x, training=training, noise=u, present=m, tokens=w, **options
            )
        else:
            out, aux = RULES[s.kind](
                s, p, *map(pool, x, w), training=training, noise=u, present=m, **options
            )
    if m is not None:
        out = np.where(m.neither[:, None], 0.0, out)
        aux["neither"] = m.neither.astype(np.float64)
    return (out, aux) if return_aux else out


#: The rules that read every token (attention over the sequences); the others read
#: each modality's masked mean (``pool``).
TOKEN_RULES = frozenset({"simple", "transformer_concat", "cross_attention"})


def _sequences(v, t, mask, padding):
    """Both modalities as token sequences ``(B, L, D)`` (a vector is one token), their
    token weights ``w`` ``(B, L)`` bool (a real token of a present modality) and the
    call's ``Presence`` (``None`` when neither a presence nor a padding mask is given).

    A modality whose tokens are all padding is absent (the masks compose with
    ``present`` by AND). Padding and absent tokens are replaced by zeros before
    anything reads them, so their values (NaN included) never reach the output and
    receive exactly zero gradient.
    """
    seqs = [x if x.ndim == 3 else x[:, None] for x in (v, t)]
    valid = [
        np.ones(x.shape[:2], dtype=bool) if pad is None else pad
        for x, pad in zip(seqs, padding, strict=True)
    ]
    m = None
    if mask is not None or any(pad is not None for pad in padding):
        here = [vd.any(axis=1) for vd in valid]
        if mask is not None:
            here = [h & mask[:, i] for i, h in enumerate(here)]
        m = Presence(*here)
        valid = [vd & h[:, None] for vd, h in zip(valid, here, strict=True)]
    seqs = [np.where(w[..., None], x, 0.0) for x, w in zip(seqs, valid, strict=True)]
    return seqs, valid, m


def _project(s, p, x, w):
    """Each modality's tokens mapped to ``dim`` by ``input_proj.{image,text}`` where its
    width differs; padding and absent tokens stay 0 (not the projection's bias)."""
    x = list(x)
    for i, modality in enumerate(MODALITIES):
        if modality in s.projected():
            B, L, _ = x[i].shape
            y = linear(p, f"input_proj.{modality}", x[i].reshape(B * L, -1)).reshape(B, L, -1)
            x[i] = np.where(w[i][..., None], y, 0.0)  # (B, L, D)
    return x


def _normalise(s, p, x, w, training):
    """The tokens after ``input_norm`` and the running statistics after the call.

    ``input_norm="batch"`` standardises every real token of a present modality with
    the statistics over all of them (one token per sample for vectors); every token
    of an absent modality (no real token) holds ``input_norm_absent``'s fill."""
    if s.input_norm == "none":
        return x, {}
    out, stats = [], {}
    for i, modality in enumerate(MODALITIES):
        B, L, D = x[i].shape
        absent = np.repeat(~w[i].any(axis=1), L)  # (B * L,): the rows of absent samples
        y, (mean, var) = input_norm(
            s, p, x[i].reshape(B * L, D), w[i].reshape(B * L), modality, training, absent
        )
        out.append(y.reshape(B, L, D))
        stats[f"input_norm.{modality}.running_mean"] = mean
        stats[f"input_norm.{modality}.running_var"] = var
    return out, stats


def running_stats(
    s,
    params: Mapping[str, Any],
    v,
    t,
    present=None,
    *,
    image_mask=None,
    text_mask=None,
    training: bool = True,
):
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
    s, _, p, v64, t64, mask, padding, _, _ = prepare(
        s, params, v, t, False, placeholder, {}, present, (image_mask, text_mask)
    )
    x, w, _ = _sequences(v64, t64, mask, padding)
    return _normalise(s, p, _project(s, p, x, w), w, training)[1]


__all__ = ["RULES", "TOKEN_RULES", "Presence", "erf", "forward", "gelu", "pool", "running_stats"]
