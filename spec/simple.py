"""``simple``: a post-norm Transformer encoder over the two tokens, then their mean."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import AttentionSpecBase, Count, missing_field
from ._encoder import encoder, encoder_macs


class SimpleSpec(AttentionSpecBase):
    r"""Encoder fusion: $f(v, t) = \tfrac12 (X_1 + X_2)$ with $X = \mathcal{T}([v, t])$."""

    summary = "Transformer encoder over [v, t], mean of the two output tokens."
    dropout_sites = (
        'encoder layer: the attention weights (after the softmax)',
        'encoder layer: the attention output, before its residual add',
        'encoder layer: the FFN hidden activation, after the GELU',
        'encoder layer: the FFN output, before its residual add',
    )

    kind: Literal["simple"] = "simple"
    layers: Count = Field(2, gt=0, description="Number of encoder layers.")
    missing_modality: Literal["zero_fill", "key_mask"] = missing_field(
        "zero_fill",
        "'zero_fill': the absent token is zeros and the rule runs unchanged; 'key_mask': "
        "no token attends to the absent one and the output is the present token's row.",
    )

    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is a zero token: $f = \tfrac12 (X_1 + X_2)$ with "
            r"$X = \mathcal{T}([\hat v, \hat t])$."
        ),
        "key_mask": (
            r"Every attention masks the absent token as a key (its score is $-\infty$), and "
            r"the output is the mean over present tokens: $f = X_1$ (image only), $X_2$ "
            r"(text only), $\tfrac12 (X_1 + X_2)$ (both), $X = \mathcal{T}_{\pi}([\hat v, \hat t])$."
        ),
    }

    def rule_params(self):
        return encoder("encoder", self.dim, self.layers, self.ffn_mult)

    def macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
