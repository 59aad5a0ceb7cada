"""``gated``: ``g = sigmoid(W_g [v; t] + b_g)``, ``f = g v + (1 - g) t``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import GatedSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import GatedFields

from ._layers import FusionModule, blend


class GatedFusion(FusionModule):
    r"""$g = \sigma(W_g [v; t] + b_g) \in (0, 1)^{B \times D}$, $f = g \odot v + (1 - g) \odot t$.

    ``gate`` is a linear $2D \to D$. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``.
    Aux: ``gate`` $g$ ``(B, D)``. Missing modality (spec ``missing_modality``):
    ``present_alone`` outputs the present modality (gate reported 1 or 0),
    ``zero_fill`` blends with zeros.
    """

    kind = "gated"
    spec: GatedSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[GatedFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        self.gate = nn.Linear(2 * self.spec.dim, self.spec.dim)
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        g = torch.sigmoid(self.gate(torch.cat([v, t], dim=-1)))  # (B, D)
        out = blend(g, v, t)  # g v + (1 - g) t
        if present is not None and self.spec.missing_modality == "present_alone":
            out = torch.where(
                present.both[:, None], out, torch.where(present.image[:, None], v, t)
            )
            g = torch.where(
                present.image_only[:, None],
                1.0,
                torch.where(present.text_only[:, None], 0.0, g),
            )
        return out, {"gate": g}
