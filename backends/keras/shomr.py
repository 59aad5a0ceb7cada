"""``shomr``: soft (confidence-weighted + attention) or hard (routed) fusion per sample."""

import keras
from keras import ops

from ._layers import (
    FusionLayer,
    RouteMonitor,
    argmax,
    attention,
    categorical,
    feed_forward,
    gelu,
    layer_norm,
    linear,
    poison_undecided,
    select,
    straight_through,
    straight_through_routes,
    tokens,
)


def shomr(s, p, v, t, *, training, noise, drop, present=None, use_hard_routing=None):
    r"""Soft-hard modality routing; every path is computed, each sample takes its own.

    $c = \mathrm{softmax}(\mathrm{MLP}_c([v;t])) \in \mathbb{R}^{B \times 2}$,
    $m = \max(c)$; hard where $m > \theta$ (or as ``use_hard_routing`` forces).
    $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t]) / T) \in \mathbb{R}^{B \times 3}$;
    route $k$: categorical draw from $r$ with ``noise["route"]`` in training, argmax in eval.
    Soft: $s = \mathrm{LN}_1(c_v v + c_t t + a)$, $f = s + \mathrm{FFN}(s)$ ($(v+t)/2$
    where the fallback fires); hard: $P(v)$, $P(t)$ or
    $b = \mathrm{LN}_2(g v + (1-g) t + a)$, $f = b + \mathrm{FFN}(b)$, with $a$ the
    token mean of self-attention over $[v, t]$. Missing modality: a sample with one
    modality takes that modality's hard path; neither: route -1. ``straight_through``:
    the router's gradient from every route's output (``straight_through_routes="all"``)
    or from the chosen one's factor $1 + r_k - \mathrm{sg}(r_k)$ (``"chosen"``).
    """
    eps = s.layer_norm_eps
    h = ops.concatenate([v, t], axis=-1)  # (B, 2D)

    c = ops.softmax(
        linear(p, "confidence.out", drop(gelu(linear(p, "confidence.hidden", h))))
    )  # (B, 2)
    m = ops.maximum(c[:, 0], c[:, 1])  # (B,); ops.max refuses an empty batch on TF and torch
    if use_hard_routing is None:
        hard = m > s.confidence_threshold
    else:
        hard = (
            ops.ones_like(m, dtype="bool") if use_hard_routing else ops.zeros_like(m, dtype="bool")
        )

    logits = linear(p, "router.out", drop(gelu(linear(p, "router.hidden", h))))  # (B, 3)
    r = ops.softmax(logits / s.routing_temperature)
    route = categorical(r, noise["route"]) if training else argmax(r)  # (B,)
    if present is not None:
        route = present.single_route(route)
        r = present.route_probs(r, route)
        mask = ops.cast(ops.stack([present.image, present.text], axis=1), c.dtype)
        c = ops.where(present.both[:, None], c, mask)
        hard = ops.logical_or(
            ops.logical_and(hard, present.both), ops.logical_xor(present.image, present.text)
        )

    x = tokens(v, t)  # (B, 2, D)
    a = ops.mean(attention(p, "attn", x, x, s.heads, drop=drop)[0], axis=1)  # (B, D)

    soft = layer_norm(p, "norm1", c[:, :1] * v + c[:, 1:] * t + a, eps)
    soft = soft + feed_forward(p, "ffn", soft, drop_hidden=drop, drop_out=drop)
    if s.fallback:
        fallback = ops.logical_and(ops.logical_not(hard), m < s.fallback_threshold)
        if present is not None:
            fallback = ops.logical_and(fallback, present.both)
    else:
        fallback = ops.zeros_like(m, dtype="bool")
    soft = ops.where(fallback[:, None], 0.5 * (v + t), soft)

    g = ops.sigmoid(linear(p, "gate", h))  # (B, D)
    both = layer_norm(p, "norm2", g * v + (1.0 - g) * t + a, eps)
    both = both + feed_forward(p, "ffn", both, drop_hidden=drop, drop_out=drop)
    single_v = drop(gelu(linear(p, "single", v)))
    single_t = drop(gelu(linear(p, "single", t)))
    routed = poison_undecided(select(route, single_v, single_t, both), r)
    if s.straight_through and s.straight_through_routes == "all":
        routed = straight_through_routes(routed, r, (single_v, single_t, both))
    elif s.straight_through:  # "chosen"
        routed = straight_through(routed, r, route)

    out = ops.where(hard[:, None], routed, soft)
    aux = {
        "confidence": c,
        "route_probs": r,
        "hard": ops.cast(hard, v.dtype),
        "route": route,
        "fallback": ops.cast(fallback, v.dtype),
    }
    return out, aux


@keras.saving.register_keras_serializable(package="fusion_spec")
class ShomrFusion(RouteMonitor, FusionLayer):
    r"""``shomr`` as a Keras layer: per sample, soft fusion or the hard route $k$.

    Call option ``use_hard_routing``: ``None`` (hard where $\max c > \theta$),
    ``True`` (all hard) or ``False`` (all soft). Training draws the route from
    ``noise["route"]`` ``(B,)`` or the layer's ``SeedGenerator``; dropout as in
    the original (after the MLP activations, attention weights, FFN, projection).
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``confidence`` ``(B, 2)``,
    ``route_probs`` ``(B, 3)``, ``hard`` and ``fallback`` ``(B,)`` float 0/1,
    ``route`` ``(B,)`` int32. Layer argument ``monitor=True``: route shares over
    training for ``MonitorCallback`` (see ``RouteMonitor``).
    """

    kind = "shomr"
    chunked_eval = True
    fuse = staticmethod(shomr)

    def __init__(self, spec=None, seed=None, *, monitor: bool = False, **kwargs):
        super().__init__(spec, seed=seed, **kwargs)
        self._init_monitor(monitor)

    def build(self, v_shape=None, t_shape=None):
        super().build(v_shape, t_shape)
        self._build_monitor()

    def _after_call(self, aux, training):
        self._update_monitor(aux, training)

    def get_config(self):
        return {**super().get_config(), "monitor": self.monitor}
