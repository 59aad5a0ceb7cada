"""``film``: ``f = gamma(t) v + beta(t)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import FilmSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import FilmFields

from ._layers import FusionModule


class FilmFusion(FusionModule):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$, $f = \gamma \odot v + \beta$.

    Asymmetric: text conditions vision. ``gamma`` and ``beta`` are linears $D \to D$.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gamma``, ``beta`` ``(B, D)``.
    Missing modality (spec ``missing_modality``): ``identity`` leaves the image
    unmodulated without text and outputs $\beta(t)$ without the image.
    """

    kind = "film"
    spec: FilmSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[FilmFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        self.gamma = nn.Linear(self.spec.dim, self.spec.dim)
        self.beta = nn.Linear(self.spec.dim, self.spec.dim)
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        gamma = self.gamma(t)  # (B, D)
        beta = self.beta(t)  # (B, D)
        out = torch.addcmul(beta, gamma, v)  # gamma v + beta, one kernel
        if present is not None and self.spec.missing_modality == "identity":
            image, text = present.image[:, None], present.text[:, None]
            out = torch.where(image & text, out, torch.where(image, v, beta))
            gamma = torch.where(text, gamma, 1.0)
            beta = torch.where(text, beta, 0.0)
        return out, {"gamma": gamma, "beta": beta}
