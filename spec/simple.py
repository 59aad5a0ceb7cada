"""``simple``: a post-norm Transformer encoder over the two tokens, then their mean."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import AttentionSpecBase
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
    layers: int = Field(2, gt=0, description="Number of encoder layers.")

    def params(self):
        return encoder("encoder", self.dim, self.layers, self.ffn_mult)

    def macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
