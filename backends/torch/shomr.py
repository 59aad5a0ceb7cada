"""``shomr``: soft (confidence-weighted + attention) or hard (routed) fusion per sample."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import ShomrSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import ShomrFields

from ._layers import (
    Attention,
    FeedForward,
    FusionModule,
    RouterMlp,
    argmax,
    blend,
    bucket_sizes,
    categorical,
    dropout,
    gelu,
    layer_norm,
    poison_undecided,
    rows_of,
    sparse_dispatch,
    straight_through,
    straight_through_routes,
    tokens,
    unsort,
)

#: Sparse dispatch buckets: hard samples on the "both" route, soft samples (both on
#: the attention + FFN path, in that order), hard samples on the image/text route.
BOTH, SOFT, SINGLE = 0, 1, 2


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

    Soft and "both" samples share the attention and the FFN, so each sample runs
    that deep path once, with its own mixing weights and LayerNorm, or the
    projection $P$. ``dispatch`` (see ``_layers.DISPATCHES``): ``"dense"`` computes
    the deep path, the gate and $P$ for every sample and selects with ``torch.where``
    (no host synchronisation; compiles, exports, CUDA graphs); ``"sparse"`` sorts
    the samples into the three buckets and runs each path on its own rows (one host
    read of the bucket sizes); ``"auto"`` (default) chooses per call. Dropout as the original:
    after the confidence/router/projection GELUs, attention weights, FFN. With
    ``straight_through`` a hard sample's output is multiplied by $1 + r_k - \mathrm{sg}(r_k)$
    (``straight_through_routes="chosen"``), or, by default (``"all"``), gains
    $\sum_j (r_j - \mathrm{sg}(r_j))\,\mathrm{sg}(y_j)$ over the three routes' outputs
    $y_j$: a call that trains the router then computes every path on every sample
    (dense), whatever the dispatch.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``confidence`` ``(B, 2)``,
    ``route_probs`` ``(B, 3)``, ``hard`` and ``fallback`` ``(B,)`` 0/1, ``route``
    ``(B,)`` int32.

    Missing modality: a sample with one modality takes that modality's hard path
    (route 0 or 1, whatever ``use_hard_routing`` says); neither: route ``-1``.
    """

    kind = "shomr"
    spec: ShomrSpec
    routes = True

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        dispatch: str = "auto",
        **fields: Unpack[ShomrFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
        d, p = s.dim, s.dropout
        self.dispatch = dispatch
        self.confidence = RouterMlp(2 * d, d, 2, dropout=p)
        self.router = RouterMlp(2 * d, d, 3, dropout=p)
        self.attn = Attention(d, s.heads, dropout=p)
        self.gate = nn.Linear(2 * d, d)
        self.norm1 = layer_norm(d, s.layer_norm_eps)
        self.norm2 = layer_norm(d, s.layer_norm_eps)
        self.ffn = FeedForward(d, s.ffn_mult * d, hidden_dropout=p, output_dropout=p)
        self.single = nn.Linear(d, d)
        self.reset_parameters()

    def _deep(self, x: Tensor) -> Tensor:
        r"""$x + \mathrm{FFN}(x)$ for normalised rows ``x`` ``(N, D)`` (soft and "both")."""
        return x + self.ffn(x)

    def _single(self, x: Tensor) -> Tensor:
        r"""The shared projection $P(x) = \mathrm{GELU}(W_p x + b_p)$ of the image/text routes."""
        return dropout(gelu(self.single(x)), self.dropout_rate, self.training)

    def _pooled(self, v: Tensor, t: Tensor) -> Tensor:
        return self.attn.pooled(tokens(v, t))  # (N, D)

    def _dense(self, v, t, h, c, hard, route, every: bool = False):
        """Every path on every sample, selected per sample: ``(B, D)``. ``every``: also
        each route's output on every hard sample, ``(P(v), P(t), "both")`` (on soft
        samples the third is their soft output, which no hard sample reads)."""
        g = torch.sigmoid(self.gate(h))  # (B, D)
        hard_ = hard[:, None]
        a = self._pooled(v, t)
        soft = self.norm1(c[:, :1] * v + c[:, 1:] * t + a)
        both = self.norm2(blend(g, v, t) + a)
        deep = self._deep(torch.where(hard_, both, soft))
        if every:  # both projections (two calls: a chunk of the (2B, D) rows would
            # tie the exported batch size to a guard on it)
            single_v, single_t = self._single(v), self._single(t)
            single = torch.where((route == 0)[:, None], single_v, single_t)
        else:
            single = self._single(torch.where((route == 0)[:, None], v, t))
        out = torch.where((hard & (route < 2))[:, None], single, deep)
        return (out, (single_v, single_t, deep)) if every else out

    def _sparse(self, v, t, h, c, hard, route) -> Tensor:
        """Each path on its own bucket of rows, scattered back: ``(B, D)``."""
        key = torch.where(hard, torch.where(route == 2, BOTH, SINGLE), SOFT)  # (B,)
        order, (n_both, n_soft, _) = bucket_sizes(key, 3)
        deep_rows, single_rows = order[: n_both + n_soft], order[n_both + n_soft :]
        d = v.shape[1]
        h_d = rows_of(h, deep_rows)  # (n_both + n_soft, 2D), "both" rows first: one gather
        v_d, t_d = h_d[:, :d], h_d[:, d:]
        a = self._pooled(v_d, t_d)
        g = torch.sigmoid(self.gate(h_d[:n_both]))  # (n_both, D)
        c_s = rows_of(c, deep_rows[n_both:])  # (n_soft, 2)
        v_b, v_s, t_b, t_s = v_d[:n_both], v_d[n_both:], t_d[:n_both], t_d[n_both:]
        both = self.norm2(blend(g, v_b, t_b) + a[:n_both])
        soft = self.norm1(c_s[:, :1] * v_s + c_s[:, 1:] * t_s + a[n_both:])
        deep = self._deep(torch.cat([both, soft]))
        # the image/text rows: one gather of the chosen modality's row of h viewed (2B, D)
        pick = 2 * single_rows + (rows_of(route, single_rows) != 0).to(single_rows.dtype)
        x1 = rows_of(h.reshape(-1, d), pick)  # (n_single, D)
        return unsort(order, torch.cat([deep, self._single(x1)]))

    def fuse(
        self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True, use_hard_routing=None
    ):
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
        if present is not None:  # one modality: its own hard path; neither: route -1
            route = present.single_route(route)
            r = present.route_probs(r, route)
            c = torch.where(
                present.both[:, None], c, torch.stack([present.image, present.text], 1).to(c.dtype)
            )
            hard = (hard & present.both) | (present.image ^ present.text)  # (no bool Where in ORT)

        # the router's gradient compares every route's output: all three on every hard
        # sample, so the dense paths whatever the dispatch
        every = (
            s.straight_through
            and s.straight_through_routes == "all"
            and r.requires_grad
            and torch.is_grad_enabled()
        )
        if every:
            out, outputs = self._dense(v, t, h, c, hard, route, every=True)
        elif sparse_dispatch(self.dispatch, v):
            out = self._sparse(v, t, h, c, hard, route)
        else:
            out = self._dense(v, t, h, c, hard, route)  # (B, D)
        routed = poison_undecided(out, r)  # on the hard (routed) samples only
        if every:
            routed = straight_through_routes(routed, r, outputs)
        elif s.straight_through:
            routed = straight_through(routed, r, route)
        out = torch.where(hard[:, None], routed, out)
        if s.fallback:
            fallback = ~hard & (m < s.fallback_threshold)
            if present is not None:
                fallback = fallback & present.both
            out = torch.where(fallback[:, None], 0.5 * (v + t), out)
        elif want_aux:
            fallback = torch.zeros_like(hard)
        if not want_aux:
            return out, {}
        aux = {
            "confidence": c,
            "route_probs": r,
            "hard": hard.to(out.dtype),
            "route": route.to(torch.int32),
            "fallback": fallback.to(out.dtype),
        }
        return out, aux
