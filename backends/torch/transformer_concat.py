"""``transformer_concat``: ``f = mean_tokens(T([v + e_v, t + e_t]))``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import TransformerConcatSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import TransformerConcatFields

from ._layers import EncoderLayer, FusionModule, key_mean, present_mean, token_keys, tokens


class TransformerConcatFusion(FusionModule):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v + e_v, t + e_t])$.

    ``modality_embedding`` $E \in \mathbb{R}^{2 \times D}$ (row 0 $e_v$, row 1 $e_t$) is
    present only with ``modality_embeddings=True``; without it the rule equals
    ``simple``. $\mathcal{T}$: ``layers`` post-norm encoder layers (``encoder.{i}``).
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "transformer_concat"
    chunked_eval = True
    spec: TransformerConcatSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[TransformerConcatFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
        if s.modality_embeddings:
            self.modality_embedding = nn.Parameter(torch.empty(2, s.dim))
        self.encoder = nn.ModuleList(
            EncoderLayer(s.dim, s.heads, s.ffn_mult, s.dropout, s.layer_norm_eps)
            for _ in range(s.layers)
        )
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        if self.spec.missing_modality != "key_mask":
            present = None  # zero_fill: the rule runs unchanged on the zeroed rows
        key_mask = None if present is None else present.key_mask()
        x = tokens(v, t)  # (B, 2, D)
        if self.spec.modality_embeddings:
            x = x + self.modality_embedding.to(x.dtype)  # (2, D) broadcast over B
        for layer in self.encoder:
            x = layer(x, key_mask)
        return present_mean(x, present), {}

    def fuse_tokens(self, v: Tensor, t: Tensor, w, *, noise, present=None, want_aux=True):
        """Token sequences ``(B, L_v, D)``, ``(B, L_t, D)``: the encoder over both, averaged
        over its keys (``token_keys``)."""
        keys = token_keys(self.spec, w, present)  # (B, L_v + L_t)
        if self.spec.modality_embeddings:
            e = self.modality_embedding.to(v.dtype)  # (2, D): e_v on image, e_t on text tokens
            v, t = v + e[0], t + e[1]
        x = torch.cat([v, t], dim=1)  # (B, L_v + L_t, D)
        for layer in self.encoder:
            x = layer(x, keys)
        return key_mean(x, keys), {}
