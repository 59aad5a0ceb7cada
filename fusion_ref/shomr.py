"""``shomr``: soft (confidence-weighted + attention) or hard (routed) fusion per sample.

Missing modality: a sample with one modality takes that modality's hard path.
"""

import numpy as np

from ._layers import (
    argmax,
    attention,
    categorical,
    feed_forward,
    forced_margin,
    gelu,
    layer_norm,
    linear,
    poison_undecided,
    select,
    sigmoid,
    softmax,
    tokens,
)


def shomr(s, p, v, t, *, training, noise, present=None, use_hard_routing=None):
    B = v.shape[0]
    eps = s.layer_norm_eps
    h = np.concatenate([v, t], axis=-1)  # (B, 2D)

    c = softmax(linear(p, "confidence.out", gelu(linear(p, "confidence.hidden", h))))  # (B, 2)
    m = c.max(axis=-1)  # (B,)
    if use_hard_routing is None:
        hard, hard_margin = m > s.confidence_threshold, np.abs(m - s.confidence_threshold)
    else:
        hard, hard_margin = np.full(B, bool(use_hard_routing)), np.full(B, np.inf)

    logits = linear(p, "router.out", gelu(linear(p, "router.hidden", h)))  # (B, 3)
    r = softmax(logits / s.routing_temperature)
    route, route_margin = categorical(r, noise["route"]) if training else argmax(r)

    x = tokens(v, t)  # (B, 2, D)
    a = attention(p, "attn", x, x, s.heads)[0].mean(axis=1)  # (B, D)

    soft = layer_norm(p, "norm1", c[:, :1] * v + c[:, 1:] * t + a, eps)
    soft = soft + feed_forward(p, "ffn", soft)
    if s.fallback:
        fallback = ~hard & (m < s.fallback_threshold)
        fallback_margin = np.abs(m - s.fallback_threshold)
    else:
        fallback, fallback_margin = np.zeros(B, dtype=bool), np.full(B, np.inf)
    soft = np.where(fallback[:, None], 0.5 * (v + t), soft)

    g = sigmoid(linear(p, "gate", h))  # (B, D)
    both = layer_norm(p, "norm2", g * v + (1.0 - g) * t + a, eps)
    both = both + feed_forward(p, "ffn", both)
    if present is not None:
        route = present.single_route(route)
        r = present.route_probs(r, route)
        c = np.where(present.both[:, None], c, np.stack([present.image, present.text], 1))
        hard = (hard & present.both) | (present.image ^ present.text)
        fallback = fallback & present.both
        hard_margin = forced_margin(present, hard_margin)
        route_margin = forced_margin(present, route_margin)
        fallback_margin = forced_margin(present, fallback_margin)
    routed = select(route, gelu(linear(p, "single", v)), gelu(linear(p, "single", t)), both)
    routed = poison_undecided(routed, r)

    out = np.where(hard[:, None], routed, soft)
    aux = {
        "confidence": c,
        "route_probs": r,
        "hard": hard.astype(np.float64),
        "route": route,
        "fallback": fallback.astype(np.float64),
        "hard_margin": hard_margin,
        "route_margin": route_margin,
        "fallback_margin": fallback_margin,
    }
    return out, aux
