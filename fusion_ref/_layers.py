"""Building blocks of the reference, written once, in float64 NumPy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_SERIES_TERMS = 80  # enough for |x| < 3: the terms fall below 1e-17 of the sum
_FRACTION_TERMS = 60  # continued fraction of erfc, converged for x >= 3
_SPLIT = 3.0


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)).

    Every term is positive for x > 0, so the sum has no cancellation.
    """
    x2 = x * x
    term = x.copy()
    total = x.copy()
    for n in range(1, _SERIES_TERMS):
        term = term * (2.0 * x2) / (2 * n + 1)
        total = total + term
    return _TWO_OVER_SQRT_PI * np.exp(-x2) * total


def _erfc_fraction(x: np.ndarray) -> np.ndarray:
    """erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), x > 0."""
    k = x.copy()
    for n in range(_FRACTION_TERMS, 0, -1):
        k = x + (n / 2.0) / k
    return _INV_SQRT_PI * np.exp(-x * x) / k


def erf(x) -> np.ndarray:
    """The error function in float64, accurate to a few ulp (NumPy has none)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    small = a < _SPLIT
    out = np.empty_like(a)
    out[small] = _erf_series(a[small])
    out[~small] = 1.0 - _erfc_fraction(a[~small])
    return np.copysign(out, x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: x * Phi(x) = x/2 (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax with the maximum subtracted first (finite for any finite input)."""
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def linear(p: dict, name: str, x: np.ndarray) -> np.ndarray:
    """``x W^T + b`` with ``W = p[name.weight]`` stored ``(out, in)``."""
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def layer_norm(p: dict, name: str, x: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with the biased variance, then the affine map."""
    mu = np.mean(x, axis=-1, keepdims=True)
    centred = x - mu
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def feed_forward(p: dict, name: str, x: np.ndarray) -> np.ndarray:
    """``down(GELU(up(x)))``."""
    return linear(p, f"{name}.down", gelu(linear(p, f"{name}.up", x)))


def attention(
    p: dict, name: str, query: np.ndarray, keys: np.ndarray, heads: int, key_mask=None
):
    """Multi-head attention, scale ``1/sqrt(D/heads)``.

    ``query`` is ``(B, Tq, D)``, ``keys`` (also the values) ``(B, Tk, D)``;
    ``key_mask`` ``(B, Tk)`` bool (at least one true per sample) gives masked keys
    the score ``-inf``, hence weight exactly 0.
    Returns the output ``(B, Tq, D)`` and the weights ``(B, heads, Tq, Tk)``.
    """
    B, Tq, D = query.shape
    Tk = keys.shape[1]
    dh = D // heads
    q = (
        linear(p, f"{name}.query", query).reshape(B, Tq, heads, dh).transpose(0, 2, 1, 3)
    )  # (B, h, Tq, dh)
    k = (
        linear(p, f"{name}.key", keys).reshape(B, Tk, heads, dh).transpose(0, 2, 1, 3)
    )  # (B, h, Tk, dh)
    v = (
        linear(p, f"{name}.value", keys).reshape(B, Tk, heads, dh).transpose(0, 2, 1, 3)
    )  # (B, h, Tk, dh)
    scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(dh))  # (B, h, Tq, Tk)
    if key_mask is not None:
        scores = np.where(key_mask[:, None, None, :], scores, -np.inf)
    weights = softmax(scores, axis=-1)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(B, Tq, D)  # (B, Tq, D)
    return linear(p, f"{name}.output", mixed), weights


def encoder_layer(
    p: dict, name: str, x: np.ndarray, heads: int, eps: float, key_mask=None
) -> np.ndarray:
    """Post-norm encoder layer: ``x = LN1(x + MHA(x)); x = LN2(x + FFN(x))``."""
    a = attention(p, f"{name}.attn", x, x, heads, key_mask)[0]
    x = layer_norm(p, f"{name}.norm1", x + a, eps)
    return layer_norm(p, f"{name}.norm2", x + feed_forward(p, f"{name}.ffn", x), eps)


def tokens(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The two-token sequence ``[v, t]``: ``(B, 2, D)``."""
    return np.stack([v, t], axis=1)


def categorical(probs: np.ndarray, u: np.ndarray):
    """Route = first ``k`` with ``u < p_0 + ... + p_k`` (the last if rounding leaves none).

    ``probs`` is ``(B, K)``, ``u`` ``(B,)``. The margin is the distance of ``u``
    from the nearest cumulative boundary that would change the route.
    """
    B, K = probs.shape
    cdf = np.cumsum(probs, axis=-1)  # (B, K)
    below = u[:, None] < cdf
    route = np.where(below.any(axis=-1), np.argmax(below, axis=-1), K - 1)
    inner = cdf[:, :-1]  # the K-1 boundaries between routes
    margin = (
        np.min(np.abs(u[:, None] - inner), axis=-1, initial=np.inf) if K > 1 else np.full(B, np.inf)
    )
    return route.astype(np.int64), margin


def argmax(probs: np.ndarray):
    """Route = first index of the maximum; margin = top-1 minus top-2 probability."""
    route = np.argmax(probs, axis=-1)
    top = np.sort(probs, axis=-1)
    margin = top[:, -1] - top[:, -2] if probs.shape[-1] > 1 else np.full(probs.shape[0], np.inf)
    return route.astype(np.int64), margin


def select(route: np.ndarray, *branches: np.ndarray) -> np.ndarray:
    """Per sample, the branch ``route[b]`` of ``branches`` (each ``(B, D)``)."""
    stacked = np.stack(branches, axis=1)  # (B, K, D)
    return np.take_along_axis(stacked, route[:, None, None], axis=1)[:, 0]


def poison_undecided(out: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """NaN rows of ``out`` ``(B, D)`` where the route probabilities ``(B, K)`` are NaN.

    A NaN or infinite input makes the route probabilities NaN; the argmax would
    still pick a route (index 0) and could return a finite row (``v`` for a NaN in
    ``t``). A non-finite input never gives a finite row, so such a row is NaN.
    """
    return np.where(np.isnan(probs).any(axis=-1, keepdims=True), np.nan, out)
@dataclass(frozen=True)
class Presence:
    """A call's presence mask, ``image`` and ``text`` ``(B,)`` bool, and its derived masks."""

    image: np.ndarray
    text: np.ndarray

    @property
    def both(self) -> np.ndarray:
        return self.image & self.text

    @property
    def neither(self) -> np.ndarray:
        return ~(self.image | self.text)

    @property
    def image_only(self) -> np.ndarray:
        return self.image & ~self.text

    @property
    def text_only(self) -> np.ndarray:
        return self.text & ~self.image

    def key_mask(self) -> np.ndarray:
        """``(B, 2)`` keys to attend to: the present tokens; both for a sample with neither
        (its output is replaced by zeros; an all-masked softmax would be NaN)."""
        return np.stack([self.image, self.text], axis=1) | self.neither[:, None]

    def single_route(self, route: np.ndarray) -> np.ndarray:
        """``route`` where both are present, else the present modality's route (0 image,
        1 text), ``-1`` for neither."""
        return np.where(
            self.both, route, np.where(self.image, 0, np.where(self.text, 1, -1))
        ).astype(np.int64)

    def route_probs(self, probs: np.ndarray, route: np.ndarray) -> np.ndarray:
        """``probs`` ``(B, K)`` where both are present, else the one-hot of ``route``
        (zeros for ``-1``)."""
        onehot = (route[:, None] == np.arange(probs.shape[1])).astype(probs.dtype)
        return np.where(self.both[:, None], probs, onehot)


def forced_margin(present: Presence | None, margin: np.ndarray) -> np.ndarray:
    """A decision's margin: itself where both modalities are present, ``inf`` where the
    mask forces the decision."""
    return margin if present is None else np.where(present.both, margin, np.inf)


def present_mean(x: np.ndarray, present: Presence | None) -> np.ndarray:
    """Mean of the tokens ``x`` ``(B, 2, D)``; with ``present``, of the present ones only."""
    mean = x.mean(axis=1)
    if present is None:
        return mean
    return np.where(
        present.both[:, None], mean, np.where(present.image[:, None], x[:, 0], x[:, 1])
    )


def input_norm(s, p: dict, x: np.ndarray, present, modality: str, training: bool,
               absent=None):
    """``input_norm="batch"``: standardise ``x`` ``(B, D)`` per feature.

    Training: the mean and biased variance over the rows where the modality is
    present (``present`` ``(B,)`` bool, ``None`` for all), when there are at least
    two of them; else the running statistics. Eval: the running statistics.
    The rows of an absent modality (``absent`` ``(B,)`` bool; ``None``: the rows
    not present) hold ``input_norm_absent``'s value: ``"zero"`` the normalised zero
    row ``-mu / sqrt(var + eps)``, ``"mean"`` 0; other rows not present (padding) 0.
    Returns ``(x_hat, (running_mean, running_var))``: the statistics after this call
    (updated in training with momentum ``m`` and the unbiased variance
    ``var * n / (n - 1)``, as ``torch.nn.BatchNorm1d``; unchanged otherwise).
    """
    mean = p[f"input_norm.{modality}.running_mean"]
    var = p[f"input_norm.{modality}.running_var"]
    stats = (mean, var)
    w = np.ones(x.shape[0]) if present is None else present.astype(np.float64)
    n = w.sum()
    if training and n >= 2:
        m = s.input_norm_momentum
        mean = (w[:, None] * x).sum(axis=0) / n  # (D,)
        var = (w[:, None] * (x - mean) ** 2).sum(axis=0) / n  # (D,)
        stats = ((1 - m) * stats[0] + m * mean, (1 - m) * stats[1] + m * var * n / (n - 1))
    y = (x - mean) / np.sqrt(var + s.input_norm_eps)
    fill = y if s.input_norm_absent == "zero" else 0.0  # x is 0 on absent rows
    absent = w == 0 if absent is None else absent
    return np.where(w[:, None] > 0, y, np.where(absent[:, None], fill, 0.0)), stats


def token_keys(s, w, present: Presence | None) -> np.ndarray:
    """The keys ``(B, L_v + L_t)`` bool an attention rule attends to (and averages over).

    ``w`` holds each modality's token weights ``(B, L)`` (real tokens of a present
    modality). ``missing_modality="key_mask"``: those tokens; every token for a sample
    with neither (its output is zeros; an all-masked softmax would be NaN).
    ``"zero_fill"``: an absent modality is one zero token, its first (as the vector
    rule's zero row).
    """
    w_v, w_t = w
    if present is None:
        return np.concatenate([w_v, w_t], axis=1)
    if s.missing_modality == "key_mask":
        return np.concatenate([w_v, w_t], axis=1) | present.neither[:, None]
    first = [np.arange(x.shape[1]) == 0 for x in w]
    w_v = np.where(present.image[:, None], w_v, first[0])
    w_t = np.where(present.text[:, None], w_t, first[1])
    return np.concatenate([w_v, w_t], axis=1)


def pool(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The mean of the real tokens of ``x`` ``(B, L, D)`` (weights ``w`` ``(B, L)`` bool);
    the first token where there is none (an absent modality: its fill, zeros unless
    ``input_norm_absent="zero"`` placed it). One token is returned exactly."""
    count = w.sum(axis=1)[:, None]  # (B, 1)
    mean = np.where(w[..., None], x, 0.0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count > 0, mean, x[:, 0])


def key_mean(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mean of the tokens ``x`` ``(B, L, D)`` that are keys (``keys`` ``(B, L)``, at least one
    per sample)."""
    return np.where(keys[..., None], x, 0.0).sum(axis=1) / keys.sum(axis=1)[:, None]
