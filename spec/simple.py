"""``simple``: a post-norm Transformer encoder over the two tokens, then their mean."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import MAX_LAYERS, AttentionSpecBase, Count, missing_field
from ._encoder import encoder, encoder_macs


class SimpleSpec(AttentionSpecBase):
    r"""Encoder fusion: $f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v, t])$.

    $\mathcal{T}$ is the stack of ``layers`` post-norm encoder layers over the two
    tokens; $X \in \mathbb{R}^{2 \times D}$ is its output, row 0 the image token and
    row 1 the text token (rows count from 0, like routes).
    """

    summary = "Transformer encoder over [v, t], mean of the two output tokens."
    dropout_sites = (
        'encoder layer: the attention weights (after the softmax)',
        'encoder layer: the attention output, before its residual add',
        'encoder layer: the FFN hidden activation, after the GELU',
        'encoder layer: the FFN output, before its residual add',
    )

    kind: Literal["simple"] = "simple"
    layers: Count = Field(default=2, gt=0, le=MAX_LAYERS, description="Number of encoder layers.")
    missing_modality: Literal["zero_fill", "key_mask"] = missing_field(
        "zero_fill",
        "'zero_fill': the absent token is zeros and the rule runs unchanged; 'key_mask': "
        "no token attends to the absent one and the output is the present token's row.",
    )

    token_semantics = (
        r"The encoder over all $L_v + L_t$ tokens $[v_1 \dots v_{L_v}, t_1 \dots t_{L_t}]$, padding masked as keys, and the mean of its output over the keys (the real tokens of present modalities; under `zero_fill` an absent modality is one zero token)."
    )
    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is a zero token: $f = \tfrac12 (X_{0,:} + X_{1,:})^\top$ "
            r"with $X = \mathcal{T}([\hat v, \hat t])$, where $\mathcal{T}$ is the stack of "
            r"the $L$ encoder layers ($\mathcal{T}(X^{(0)}) = X^{(L)}$) and rows count from 0 "
            r"(row 0 the image token, row 1 the text token)."
        ),
        "key_mask": (
            r"Every attention masks the absent token as a key (its score is $-\infty$): "
            r"$X = \mathcal{T}_{\pi_v, \pi_t}([\hat v, \hat t])$, where "
            r"$\mathcal{T}_{\pi_v, \pi_t}$ is the stack of the $L$ encoder layers with that key "
            r"mask in each layer's attention. The output is the mean over the present tokens' "
            r"rows (row 0 the image token, row 1 the text token): $f = X_{0,:}^\top$ (image "
            r"only), $X_{1,:}^\top$ (text only), $\tfrac12 (X_{0,:} + X_{1,:})^\top$ (both)."
        ),
    }

    def rule_params(self):
        return encoder("encoder", self.dim, self.layers, self.ffn_mult)

    def rule_macs(self):
        return {"all": encoder_macs(self.dim, self.layers, self.ffn_mult)}
