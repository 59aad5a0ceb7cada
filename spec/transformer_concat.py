"""``transformer_concat``: the encoder of ``simple`` with learned modality embeddings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import (
    MAX_LAYERS,
    AttentionSpecBase,
    Count,
    Init,
    ParamSpec,
    missing_field,
)
from ._encoder import encoder, encoder_macs


class TransformerConcatSpec(AttentionSpecBase):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v + e_v, t + e_t])$.

    $\mathcal{T}$ is the stack of ``layers`` post-norm encoder layers over the two
    tokens; $X \in \mathbb{R}^{2 \times D}$ is its output, row 0 the image token and
    row 1 the text token (rows count from 0, like routes).
    """

    summary = "Encoder over [v + e_v, t + e_t] (learned modality embeddings), mean of tokens."
    dropout_sites = (
        'encoder layer: the attention weights (after the softmax)',
        'encoder layer: the attention output, before its residual add',
        'encoder layer: the FFN hidden activation, after the GELU',
        'encoder layer: the FFN output, before its residual add',
    )

    kind: Literal["transformer_concat"] = "transformer_concat"
    layers: Count = Field(default=4, gt=0, le=MAX_LAYERS, description="Number of encoder layers.")
    modality_embeddings: bool = Field(
        default=True,
        description=(
            "Add a learned embedding per modality to the two tokens (the evident intent "
            "of the original's modality_token, whose forward crashes). False gives the "
            "seed's reading: the token is unused and the rule equals `simple`."
        ),
    )

    modality_embedding_std: float = Field(
        default=0.02,
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

    token_semantics = (
        r"The encoder over all $L_v + L_t$ tokens $[v_1 + e_v \dots v_{L_v} + e_v, t_1 + e_t \dots t_{L_t} + e_t]$ ($e_v$ on every image token, $e_t$ on every text token), padding masked as keys, and the mean of its output over the keys."
    )
    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is zeros, its token keeps the modality embedding: "
            r"$f = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with "
            r"$X = \mathcal{T}([\hat v + e_v, \hat t + e_t])$, where $\mathcal{T}$ is the stack "
            r"of the $L$ encoder layers ($\mathcal{T}(X^{(0)}) = X^{(L)}$) and rows count from 0 "
            r"(row 0 the image token, row 1 the text token)."
        ),
        "key_mask": (
            r"Every attention masks the absent token as a key (its score is $-\infty$): "
            r"$X = \mathcal{T}_{\pi_v, \pi_t}([\hat v + e_v, \hat t + e_t])$, where "
            r"$\mathcal{T}_{\pi_v, \pi_t}$ is the stack of the $L$ encoder layers with that key "
            r"mask in each layer's attention. The output is the mean over the present tokens' "
            r"rows (row 0 the image token, row 1 the text token): $f = X_{0,:}^\top$ (image "
            r"only), $X_{1,:}^\top$ (text only), $\tfrac12 (X_{0,:} + X_{1,:})^\top$ (both)."
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

    def rule_macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
