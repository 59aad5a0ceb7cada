"""``transformer_concat``: the encoder of ``simple`` with learned modality embeddings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import (
    AttentionSpecBase,
    Count,
    Init,
    ParamSpec,
    missing_field,
)
from ._encoder import encoder, encoder_macs


class TransformerConcatSpec(AttentionSpecBase):
    r"""$f(v, t) = \tfrac12 (X_1 + X_2)$ with $X = \mathcal{T}([v + e_v, t + e_t])$."""

    summary = "Encoder over [v + e_v, t + e_t] (learned modality embeddings), mean of tokens."
    dropout_sites = (
        'encoder layer: the attention weights (after the softmax)',
        'encoder layer: the attention output, before its residual add',
        'encoder layer: the FFN hidden activation, after the GELU',
        'encoder layer: the FFN output, before its residual add',
    )

    kind: Literal["transformer_concat"] = "transformer_concat"
    layers: Count = Field(4, gt=0, description="Number of encoder layers.")
    modality_embeddings: bool = Field(
        True,
        description=(
            "Add a learned embedding per modality to the two tokens (the evident intent "
            "of the original's modality_token, whose forward crashes). False gives the "
            "seed's reading: the token is unused and the rule equals `simple`."
        ),
    )

    modality_embedding_std: float = Field(
        0.02,
        gt=0.0,
        description=(
            "Standard deviation of the modality embeddings' initial N(0, std^2): small "
            "beside typical embeddings, as BERT/ViT position embeddings. 1.0 is the "
            "original's torch.randn, which leaves training at chance for some seeds "
            "(from_legacy sets it)."
        ),
    )

    missing_modality: Literal["zero_fill", "key_mask"] = missing_field(
        "zero_fill",
        "'zero_fill': the absent embedding is zeros (its token keeps its modality "
        "embedding) and the rule runs unchanged; 'key_mask': no token attends to the "
        "absent one and the output is the present token's row.",
    )

    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is zeros, its token keeps the modality embedding: "
            r"$f = \tfrac12 (X_1 + X_2)$ with $X = \mathcal{T}([\hat v + e_v, \hat t + e_t])$."
        ),
        "key_mask": (
            r"Every attention masks the absent token as a key (its score is $-\infty$), and "
            r"the output is the mean over present tokens: $f = X_1$ (image only), $X_2$ "
            r"(text only), $\tfrac12 (X_1 + X_2)$ (both), "
            r"$X = \mathcal{T}_{\pi}([\hat v + e_v, \hat t + e_t])$."
        ),
    }

    def rule_params(self):
        specs = []
        if self.modality_embeddings:
            origin = (
                "torch.randn (the original's modality_token)"
                if self.modality_embedding_std == 1.0
                else "small, as BERT/ViT position embeddings (the original: torch.randn)"
            )
            init = Init("normal", std=self.modality_embedding_std, origin=origin)
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
