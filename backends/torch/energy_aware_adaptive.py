"""``energy_aware_adaptive``: route to ``v``, ``t`` or ``FFN(LN(g v + (1-g) t + a))``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import EnergyAwareAdaptiveSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import EnergyAwareAdaptiveFields

from ._layers import (
    Attention,
    FeedForward,
    FusionModule,
    RouterMlp,
    argmax,
    blend,
    bucket_sizes,
    categorical,
    layer_norm,
    poison_undecided,
    rows_of,
    select,
    sparse_dispatch,
    straight_through,
    straight_through_routes,
    tokens,
)


class EnergyAwareAdaptiveFusion(FusionModule):
    r"""Route $k$ from $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t])) \in \mathbb{R}^{B \times 3}$:
    $v$, $t$ or $\mathrm{FFN}(\mathrm{LN}(g v + (1-g) t + a))$.

    The route is a categorical draw with ``noise["route"]`` ``(B,)`` in training (and
    in eval with ``eval_routing="sample"``), else the argmax. $g = \sigma(W_g [v;t] + b_g)$,
    $a$ the token mean of self-attention over $[v, t]$; dropout as the original
    (attention weights, FFN output). Energy $e = \kappa^\top r \in \mathbb{R}^B$
    ($\kappa$ the route costs), loss $\lambda \max(0, \bar e - E_{budget})$ ($\lambda$
    the parameter ``energy_weight`` with ``energy_weight_trainable``), reported in the
    aux, not added anywhere.
    Training with call option ``progress``: a sample's output is zeroed where the
    batch gate $u_g < p(\mathrm{progress})$ and either of its two flags $< p_{flag}$.

    ``dispatch`` (see ``_layers.DISPATCHES``): ``"dense"`` computes the "both" path
    for every sample and selects with ``torch.where`` (no host synchronisation;
    compiles, exports, CUDA graphs); ``"sparse"`` runs it on the rows routed to it
    only (one host read of the bucket sizes); ``"auto"`` (default) chooses per call.
    A call that trains the router with ``straight_through_routes="all"`` computes the
    "both" path for every row whatever the dispatch: the router's gradient reads it.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``route_probs`` ``(B, 3)``,
    ``route`` ``(B,)`` int32, ``expected_energy`` ``(B,)``, ``energy_loss`` ``()``,
    ``output_kept`` ``(B,)`` 0/1.

    Missing modality: a sample with one modality is routed to it (one-hot
    ``route_probs``); neither: route ``-1``, zero ``route_probs``.
    """

    kind = "energy_aware_adaptive"
    spec: EnergyAwareAdaptiveSpec
    routes = True

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        dispatch: str = "auto",
        **fields: Unpack[EnergyAwareAdaptiveFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
        d = s.dim
        self.dispatch = dispatch
        self.router = RouterMlp(2 * d, d, 3)
        self.gate = nn.Linear(2 * d, d)
        self.attn = Attention(d, s.heads, dropout=s.dropout)
        self.norm = layer_norm(d, s.layer_norm_eps)
        self.ffn = FeedForward(d, s.ffn_mult * d, output_dropout=s.dropout)
        if s.energy_weight_trainable:
            self.energy_weight = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def _both(self, v: Tensor, t: Tensor, h: Tensor) -> Tensor:
        r"""$\mathrm{FFN}(\mathrm{LN}(g v + (1-g) t + a))$ for rows ``(N, D)``, ``h = [v; t]``."""
        a = self.attn.pooled(tokens(v, t))  # (N, D)
        g = torch.sigmoid(self.gate(h))  # (N, D)
        return self.ffn(self.norm(blend(g, v, t) + a))

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True, progress=None):
        s = self.spec
        h = torch.cat([v, t], dim=-1)  # (B, 2D)

        r = torch.softmax(self.router(h), dim=-1)  # (B, 3)
        if s.samples_route(self.training):
            route = categorical(r, noise["route"])  # (B,)
        else:
            route = argmax(r)
        if present is not None:  # one modality: routed to it; neither: route -1
            route = present.single_route(route)
            r = present.route_probs(r, route)

        # the router's gradient compares every route's output: "both" for every sample
        every_route = (
            s.straight_through
            and s.straight_through_routes == "all"
            and r.requires_grad
            and torch.is_grad_enabled()
        )
        if not every_route and sparse_dispatch(self.dispatch, v):
            # the "both" path on its rows only, scattered into zeros; image/text rows
            # selected element-wise (cheaper than a gather and its backward)
            order, (n_kept, _) = bucket_sizes((route == 2).to(torch.int64), 2)
            idx = order[n_kept:]  # the "both" rows
            h_b = rows_of(h, idx)  # (n_both, 2D): one gather for v, t and h
            d = v.shape[1]
            both = self._both(h_b[:, :d], h_b[:, d:], h_b)  # (n_both, D)
            both = both.new_zeros((v.shape[0], both.shape[1])).index_copy(0, idx, both)
            out = select(route, v, t, both)
        else:
            both = self._both(v, t, h)
            out = select(route, v, t, both)
        out = poison_undecided(out, r)
        if every_route:
            out = straight_through_routes(out, r, (v, t, both))
        elif s.straight_through and s.straight_through_routes == "chosen":
            out = straight_through(out, r, route)

        kept = None
        if self.training and progress is not None:
            gate = noise["output_drop_gate"] < s.output_drop_probability(progress)  # (1,)
            flagged = noise["output_drop_flags"].amin(dim=-1) < s.output_drop_flag_p  # (B,)
            kept = 1.0 - (gate & flagged).to(r.dtype)  # (B,)
            out = out * kept[:, None].to(out.dtype)
        if not want_aux:  # the energy terms are aux outputs only
            return out, {}

        c_v, c_t, c_b = s.energy_costs_mJ
        expected = c_v * r[:, 0] + c_t * r[:, 1] + c_b * r[:, 2]  # (B,)
        weight = self.energy_weight if s.energy_weight_trainable else s.energy_weight
        mean_energy = expected.sum() / max(expected.shape[0], 1)  # 0, not NaN, for B = 0
        energy_loss = weight * torch.relu(mean_energy - s.energy_budget_mJ)

        if kept is None:
            kept = torch.ones_like(expected)  # (B,)
        aux = {
            "route_probs": r,
            "route": route.to(torch.int32),
            "expected_energy": expected,
            "energy_loss": energy_loss,
            "output_kept": kept,
        }
        return out, aux
