"""``modality_dropout``: keep masks from noise, then ``W_2 ReLU(W_1 [k_v v; k_t t] + b_1) + b_2``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._layers import FusionModule


class ModalityDropoutFusion(FusionModule):
    r"""$\tilde v = k_v v$, $\tilde t = k_t t$, $f = W_2\,\mathrm{ReLU}(W_1 [\tilde v; \tilde t] + b_1) + b_2$.

    In training $k_v = [u_v \ge p_{img}]$, $k_t = [u_t \ge p_{txt}]$ from the noise
    ``drop_image``, ``drop_text``: shape ``(1,)`` (one draw for the batch, the
    original's ``torch.rand(1)``) or ``(B,)`` with ``drop_granularity="sample"``;
    $k_v = k_t = 1$ in eval. ``mlp.0``: $2D \to D$, ``mlp.1``: $D \to D$.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``keep_image``,
    ``keep_text`` ``(B,)`` 0/1.
    """

    kind = "modality_dropout"

    def __init__(self, spec, *, generator=None):
        super().__init__(spec, generator=generator)
        d = self.spec.dim
        self.mlp = nn.ModuleList([nn.Linear(2 * d, d), nn.Linear(d, d)])
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None):
        s = self.spec
        ones = v.new_ones(v.shape[0])  # (B,)
        if self.training:
            keep_v = ones * (noise["drop_image"] >= s.p_img).to(v.dtype)  # (1,) or (B,) -> (B,)
            keep_t = ones * (noise["drop_text"] >= s.p_txt).to(v.dtype)
        else:
            keep_v = keep_t = ones
        if present is not None:  # an absent modality is a dropped one
            keep_v = keep_v * present.image.to(v.dtype)
            keep_t = keep_t * present.text.to(v.dtype)
        if self.training or present is not None:
            h = torch.cat([keep_v[:, None] * v, keep_t[:, None] * t], dim=-1)  # (B, 2D)
        else:  # nothing dropped: no multiplications by one
            h = torch.cat([v, t], dim=-1)  # (B, 2D)
        out = self.mlp[1](torch.relu(self.mlp[0](h)))
        return out, {"keep_image": keep_v, "keep_text": keep_t}
