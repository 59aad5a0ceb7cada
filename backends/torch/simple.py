"""``simple``: ``f = mean_tokens(T([v, t]))``, ``T`` a post-norm Transformer encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import SimpleSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import SimpleFields

from ._layers import EncoderLayer, FusionModule, key_mean, present_mean, token_keys, tokens


class SimpleFusion(FusionModule):
    r"""Encoder fusion: $f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v, t])$.

    $\mathcal{T}$ is ``layers`` post-norm encoder layers (``encoder.{i}``) over the
    two tokens $[v, t] \in \mathbb{R}^{B \times 2 \times D}$; dropout as in
    ``torch.nn.TransformerEncoderLayer``. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``.
    No aux outputs.
    """

    kind = "simple"
    chunked_eval = True
    spec: SimpleSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[SimpleFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
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
        for layer in self.encoder:
            x = layer(x, key_mask)
        return present_mean(x, present), {}

    def fuse_tokens(self, v: Tensor, t: Tensor, w, *, noise, present=None, want_aux=True):
        """Token sequences ``(B, L_v, D)``, ``(B, L_t, D)``: the encoder over both, averaged
        over its keys (``token_keys``)."""
        keys = token_keys(self.spec, w, present)  # (B, L_v + L_t)
        x = torch.cat([v, t], dim=1)  # (B, L_v + L_t, D)
        for layer in self.encoder:
            x = layer(x, keys)
        return key_mean(x, keys), {}
