"""``simple``: a post-norm Transformer encoder over the two tokens, then their mean."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import Dropout, FfnMult, FusionSpecBase, GeluForm, Heads, LayerNormEps, check_heads
from ._encoder import encoder, encoder_macs


class SimpleSpec(FusionSpecBase):
    r"""Encoder fusion: $f(v, t) = \tfrac12 (X_1 + X_2)$ with $X = \mathcal{T}([v, t])$."""

    summary = "Transformer encoder over [v, t], mean of the two output tokens."

    kind: Literal["simple"] = "simple"
    heads: int = Heads
    layers: int = Field(2, gt=0, description="Number of encoder layers.")
    dropout: float = Dropout
    layer_norm_eps: LayerNormEps = Field(1e-05, description="LayerNorm epsilon.")
    gelu: GeluForm = Field("erf", description="GELU form: exact, x * Phi(x) with erf.")
    ffn_mult: FfnMult = Field(4, description="Feed-forward width is ffn_mult * dim.")

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        check_heads(self.kind, self.dim, self.heads)
        return self

    def params(self):
        return encoder("encoder", self.dim, self.layers, self.ffn_mult)

    def macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
