"""``shomr``: soft (confidence-weighted + attention) or hard (routed) fusion per sample."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._layers import (
    Attention,
    FeedForward,
    FusionModule,
    RouterMlp,
    argmax,
    categorical,
    computed_where,
    dropout,
    gelu,
    layer_norm,
    poison_undecided,
    straight_through,
    tokens,
)


class ShomrFusion(FusionModule):
    r"""Soft-hard modality routing: each sample takes the soft path or its hard route.

    $c = \mathrm{softmax}(\mathrm{MLP}_c([v;t])) \in \mathbb{R}^{B \times 2}$,
    $m = \max(c)$; hard where $m > \theta$ (or as ``use_hard_routing`` forces).
    $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t]) / T) \in \mathbb{R}^{B \times 3}$;
    route $k$: categorical draw from $r$ with ``noise["route"]`` ``(B,)`` in
    training, argmax in eval. With $a$ the token mean of self-attention over $[v, t]$:

    * soft: $s = \mathrm{LN}_1(c_v v + c_t t + a)$, $f = s + \mathrm{FFN}(s)$
      ($(v+t)/2$ where the fallback fires);
    * hard: $P(v)$, $P(t)$ with $P = \mathrm{GELU}(W_p \cdot + b_p)$, or
      $b = \mathrm{LN}_2(g v + (1-g) t + a)$, $f = b + \mathrm{FFN}(b)$, $g = \sigma(W_g [v;t] + b_g)$.

    Every path is computed for every sample and selected with ``torch.where`` (no
    host synchronisation; compiles and exports). ``skip_unrouted=True`` computes
    each path only for the samples that take it: less work, at the price of host
    synchronisations and data-dependent shapes (eager only; see
    ``benchmarks/torch_skip_bench.py`` for the crossover). Dropout as the original:
    after the confidence/router/projection GELUs, attention weights, FFN. With
    ``straight_through`` a hard sample's output is multiplied by $1 + r_k - \mathrm{sg}(r_k)$.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``confidence`` ``(B, 2)``,
    ``route_probs`` ``(B, 3)``, ``hard`` and ``fallback`` ``(B,)`` 0/1, ``route``
    ``(B,)`` int32.
    """

    kind = "shomr"
    routes = True

    def __init__(self, spec, *, generator=None, skip_unrouted: bool = False):
        super().__init__(spec, generator=generator)
        s = self.spec
        d, p = s.dim, s.dropout
        self.skip_unrouted = skip_unrouted
        self.confidence = RouterMlp(2 * d, d, 2, dropout=p)
        self.router = RouterMlp(2 * d, d, 3, dropout=p)
        self.attn = Attention(d, s.heads, dropout=p)
        self.gate = nn.Linear(2 * d, d)
        self.norm1 = layer_norm(d, s.layer_norm_eps)
        self.norm2 = layer_norm(d, s.layer_norm_eps)
        self.ffn = FeedForward(d, s.ffn_mult * d, hidden_dropout=p, output_dropout=p)
        self.single = nn.Linear(d, d)
        self.reset_parameters()

    def _soft(self, v: Tensor, t: Tensor, c: Tensor, a: Tensor) -> Tensor:
        r"""$s + \mathrm{FFN}(s)$, $s = \mathrm{LN}_1(c_v v + c_t t + a)$: rows ``(N, D)``."""
        x = self.norm1(c[:, :1] * v + c[:, 1:] * t + a)
        return x + self.ffn(x)

    def _both(self, v: Tensor, t: Tensor, h: Tensor, a: Tensor) -> Tensor:
        r"""$b + \mathrm{FFN}(b)$, $b = \mathrm{LN}_2(g v + (1-g) t + a)$: rows ``(N, D)``."""
        g = torch.sigmoid(self.gate(h))  # (N, D)
        x = self.norm2(g * v + (1.0 - g) * t + a)
        return x + self.ffn(x)

    def _single(self, x: Tensor) -> Tensor:
        r"""The shared projection $P(x) = \mathrm{GELU}(W_p x + b_p)$ of the image/text routes."""
        return dropout(gelu(self.single(x)), self.dropout_rate, self.training)

    def _pooled(self, v: Tensor, t: Tensor) -> Tensor:
        return self.attn.pooled(tokens(v, t))  # (N, D)

    def fuse(self, v: Tensor, t: Tensor, *, noise, use_hard_routing=None):
        s = self.spec
        h = torch.cat([v, t], dim=-1)  # (B, 2D)

        c = torch.softmax(self.confidence(h), dim=-1)  # (B, 2)
        m = c.amax(dim=-1)  # (B,)
        if use_hard_routing is None:
            hard = m > s.confidence_threshold
        else:
            hard = torch.full_like(m, bool(use_hard_routing), dtype=torch.bool)

        r = torch.softmax(self.router(h) / s.routing_temperature, dim=-1)  # (B, 3)
        route = categorical(r, noise["route"]) if self.training else argmax(r)  # (B,)
        single_input = torch.where((route == 0)[:, None], v, t)  # (B, D): v on route 0, else t

        if self.skip_unrouted:
            soft = computed_where(
                ~hard, lambda v, t, c: self._soft(v, t, c, self._pooled(v, t)), v, t, c
            )
            both = computed_where(
                hard & (route == 2),
                lambda v, t, h: self._both(v, t, h, self._pooled(v, t)),
                v,
                t,
                h,
            )
            single = computed_where(hard & (route < 2), self._single, single_input)
        else:
            a = self._pooled(v, t)
            soft, both = self._soft(v, t, c, a), self._both(v, t, h, a)
            single = self._single(single_input)

        if s.fallback:
            fallback = ~hard & (m < s.fallback_threshold)
            soft = torch.where(fallback[:, None], 0.5 * (v + t), soft)
        else:
            fallback = torch.zeros_like(hard)

        routed = poison_undecided(torch.where((route == 2)[:, None], both, single), r)
        if s.straight_through:
            routed = straight_through(routed, r, route)

        out = torch.where(hard[:, None], routed, soft)
        aux = {
            "confidence": c,
            "route_probs": r,
            "hard": hard.to(out.dtype),
            "route": route.to(torch.int32),
            "fallback": fallback.to(out.dtype),
        }
        return out, aux
