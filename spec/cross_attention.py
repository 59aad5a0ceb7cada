"""``cross_attention``: attention pooling of the two tokens by their normalised mean."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ._base import (
    AttentionSpecBase,
    AuxSpec,
    attention,
    attention_macs,
    feed_forward,
    layer_norm,
    linear_macs,
    missing_field,
)


class CrossAttentionSpec(AttentionSpecBase):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t))$, $z = \mathrm{MHA}(q, X, X)$, $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$."""

    summary = "Query = LN(mean(v, t)) attends over [v, t]; residual FFN on top."
    dropout_sites = (
        'the attention weights (after the softmax)',
        'the FFN output, before the residual add',
    )

    kind: Literal["cross_attention"] = "cross_attention"
    missing_modality: Literal["key_mask", "zero_fill"] = missing_field(
        "key_mask",
        "'key_mask': the query is the normalised mean of the present tokens and "
        "attention runs over present tokens only; 'zero_fill': the absent token is "
        "zeros and the rule runs unchanged.",
    )

    lone_gradient: Literal["stop", "pass"] = Field(
        default="stop",
        description=(
            "With a presence mask (or a token sequence of padding only: that modality is "
            "absent), the gradient that a sample with one modality passes "
            "back from its output through the rule's input (the present modality's row "
            "after input_proj and input_norm). 'stop' (the default): none, so it trains "
            "the rule's parameters but neither input_proj nor the encoder of v or t "
            "(which still get the other samples' gradient, through input_norm's batch "
            "statistics too). Trained with a share of the samples missing one modality "
            "and both encoders from scratch, that gradient cost accuracy on complete "
            "samples against training without the mask (guide 'Training end to end'). "
            "'pass': it flows as any other sample's (the behaviour before this field). "
            "The forward pass is the same under both."
        ),
    )

    token_semantics = (
        r"One query $q = \mathrm{LN}_1(\tfrac12(\bar v + \bar t))$ from the two modalities' masked means attends over all $L_v + L_t$ tokens, padding masked as keys; `attention_weights` is $(B, h, L_v + L_t)$, 0 on padding."
    )
    missing_semantics = {
        "key_mask": (
            r"Attention over present tokens only: the query is the normalised mean of "
            r"the present tokens, $q = \mathrm{LN}_1(v)$ (image only), $\mathrm{LN}_1(t)$ "
            r"(text only), and the absent token's score is $-\infty$, so its attention "
            r"weight is exactly 0 and $z = W_{\mathrm{output}} (W_{\mathrm{value}} x + "
            r"b_{\mathrm{value}}) + b_{\mathrm{output}}$ for the present token $x$ (attention "
            r"projections as in the building blocks); $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$."
        ),
        "zero_fill": (
            r"The absent token is zeros: $q = \mathrm{LN}_1(\tfrac12(\hat v + \hat t))$, "
            r"$z = \mathrm{MHA}(q, [\hat v, \hat t])$, so the zero token still takes "
            r"attention weight."
        ),
    }

    def stops_lone_gradient(self) -> bool:
        return self.lone_gradient == "stop"

    def stopped_input_rows(self, present):
        """``lone_gradient="stop"``: the present modality of each sample with exactly one,
        ``(B, 2)`` bool (image, text); ``None`` without a mask or with ``"pass"``."""
        if present is None or not self.stops_lone_gradient():
            return None
        present = np.asarray(present, dtype=bool)
        return present & (present[:, :1] ^ present[:, 1:])

    def rule_params(self):
        d = self.dim
        return (
            layer_norm("norm1", d, "Normalises the mean query.")
            + attention("attn", d)
            + layer_norm("norm2", d, "Normalises the FFN input.")
            + feed_forward("ffn", d, self.ffn_mult * d)
        )

    def aux(self, batch, *, training=False, tokens=(1, 1), **options):
        return [
            AuxSpec(
                "attention_weights",
                (batch, self.heads, tokens[0] + tokens[1]),
                "value",
                "Per head, the weight of v (index 0) and t (index 1); with token sequences, "
                "of each image token then each text token (L_v + L_t keys, 0 on padding). "
                "For a sample with neither modality: 0 everywhere under "
                "missing_modality='key_mask', 1/2 and 1/2 under 'zero_fill' (two equal "
                "zero keys).",
            )
        ]

    def rule_macs(self):
        d, h = self.dim, self.ffn_mult * self.dim
        return {"all": attention_macs(d, 1, 2) + linear_macs(d, h) + linear_macs(h, d)}
