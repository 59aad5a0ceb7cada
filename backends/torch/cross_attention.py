"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fusion_spec.spec import CrossAttentionSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import CrossAttentionFields

from ._layers import Attention, FeedForward, FusionModule, layer_norm, pool, token_keys, tokens


class CrossAttentionFusion(FusionModule):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t))$, $z = \mathrm{MHA}(q, X, X)$, $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$.

    $X = [v, t] \in \mathbb{R}^{B \times 2 \times D}$, one query token per sample.
    Dropout as the original: attention weights and the FFN output.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``attention_weights``
    ``(B, h, 2)``, per head the weight of $v$ and of $t$ (before dropout).
    Missing modality (spec ``missing_modality``): ``key_mask`` queries with the
    present token and gives the absent one weight 0.
    """

    kind = "cross_attention"
    chunked_eval = True
    spec: CrossAttentionSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[CrossAttentionFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
        self.norm1 = layer_norm(s.dim, s.layer_norm_eps)
        self.attn = Attention(s.dim, s.heads, dropout=s.dropout)
        self.norm2 = layer_norm(s.dim, s.layer_norm_eps)
        self.ffn = FeedForward(s.dim, s.ffn_mult * s.dim, output_dropout=s.dropout)
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        if self.spec.missing_modality != "key_mask":
            present = None  # zero_fill: the rule runs unchanged on the zeroed rows
        q = 0.5 * (v + t)
        key_mask = None
        if present is not None:
            key_mask = present.key_mask()
            single = torch.where(present.image[:, None], v, t)
            q = torch.where(present.both[:, None], q, single)  # mean of the present tokens
        z, weights = self.attn(
            self.norm1(q)[:, None], tokens(v, t), key_mask, need_weights=want_aux
        )  # (B, 1, D)
        z = z[:, 0]  # (B, D)
        out = z + self.ffn(self.norm2(z))
        if not want_aux:
            return out, {}
        weights = weights[:, :, 0]  # (B, h, 2)
        if present is not None:
            weights = torch.where(present.neither[:, None, None], 0.0, weights)
        return out, {"attention_weights": weights}

    def fuse_tokens(self, v: Tensor, t: Tensor, w, *, noise, present=None, want_aux=True):
        """Token sequences: the query from each modality's masked mean, the keys every
        token (``token_keys``); ``attention_weights`` ``(B, h, L_v + L_t)``."""
        keys = token_keys(self.spec, w, present)  # (B, L_v + L_t)
        x = torch.cat([v, t], dim=1)  # (B, L_v + L_t, D)
        v, t = pool(v, w[0]), pool(t, w[1])  # (B, D) each
        q = 0.5 * (v + t)
        key_mask = self.spec.missing_modality == "key_mask" and present is not None
        if key_mask:
            single = torch.where(present.image[:, None], v, t)
            q = torch.where(present.both[:, None], q, single)  # mean of the present modalities
        z, weights = self.attn(self.norm1(q)[:, None], x, keys, need_weights=want_aux)
        z = z[:, 0]  # (B, D)
        out = z + self.ffn(self.norm2(z))
        if not want_aux:
            return out, {}
        weights = weights[:, :, 0]  # (B, h, L_v + L_t)
        if key_mask:
            weights = torch.where(present.neither[:, None, None], 0.0, weights)
        return out, {"attention_weights": weights}
