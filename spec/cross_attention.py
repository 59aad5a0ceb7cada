"""``cross_attention``: attention pooling of the two tokens by their normalised mean."""

from __future__ import annotations

from typing import Literal

from ._base import (
    AttentionSpecBase,
    AuxSpec,
    attention,
    attention_macs,
    feed_forward,
    layer_norm,
    linear_macs,
)


class CrossAttentionSpec(AttentionSpecBase):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t))$, $z = \mathrm{MHA}(q, X, X)$, $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$."""

    summary = "Query = LN(mean(v, t)) attends over [v, t]; residual FFN on top."
    dropout_sites = (
        'the attention weights (after the softmax)',
        'the FFN output, before the residual add',
    )

    kind: Literal["cross_attention"] = "cross_attention"

    def params(self):
        d = self.dim
        return (
            layer_norm("norm1", d, "Normalises the mean query.")
            + attention("attn", d)
            + layer_norm("norm2", d, "Normalises the FFN input.")
            + feed_forward("ffn", d, self.ffn_mult * d)
        )

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec(
                "attention_weights",
                (batch, self.heads, 2),
                "value",
                "Per head, the weight of v (index 0) and t (index 1).",
            )
        ]

    def macs(self):
        d, h = self.dim, self.ffn_mult * self.dim
        return {"all": attention_macs(d, 1, 2) + linear_macs(d, h) + linear_macs(h, d)}
