"""``transformer_concat``: the encoder of ``simple`` with learned modality embeddings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import (
    Dropout,
    FfnMult,
    FusionSpecBase,
    GeluForm,
    Heads,
    Init,
    LayerNormEps,
    ParamSpec,
    check_heads,
)
from ._encoder import encoder, encoder_macs


class TransformerConcatSpec(FusionSpecBase):
    r"""$f(v, t) = \tfrac12 (X_1 + X_2)$ with $X = \mathcal{T}([v + e_v, t + e_t])$."""

    summary = "Encoder over [v + e_v, t + e_t] (learned modality embeddings), mean of tokens."

    kind: Literal["transformer_concat"] = "transformer_concat"
    heads: int = Heads
    layers: int = Field(4, gt=0, description="Number of encoder layers.")
    dropout: float = Dropout
    modality_embeddings: bool = Field(
        True,
        description=(
            "Add a learned embedding per modality to the two tokens (the evident intent "
            "of the original's modality_token, whose forward crashes). False gives the "
            "seed's reading: the token is unused and the rule equals `simple`."
        ),
    )
    layer_norm_eps: LayerNormEps = Field(1e-05, description="LayerNorm epsilon.")
    gelu: GeluForm = Field("erf", description="GELU form: exact, x * Phi(x) with erf.")
    ffn_mult: FfnMult = Field(4, description="Feed-forward width is ffn_mult * dim.")

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        check_heads(self.kind, self.dim, self.heads)
        return self

    def params(self):
        specs = []
        if self.modality_embeddings:
            init = Init("normal", std=1.0, origin="torch.randn (the original's modality_token)")
            specs.append(
                ParamSpec(
                    "modality_embedding",
                    (2, self.dim),
                    init,
                    doc="Row 0 is added to v, row 1 to t.",
                )
            )
        return specs + encoder("encoder", self.dim, self.layers, self.ffn_mult)

    def macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
