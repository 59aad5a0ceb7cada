"""``film``: ``f = gamma(t) v + beta(t)``."""

from __future__ import annotations

from torch import Tensor, nn

from ._layers import FusionModule


class FilmFusion(FusionModule):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$, $f = \gamma \odot v + \beta$.

    Asymmetric: text conditions vision. ``gamma`` and ``beta`` are linears $D \to D$.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gamma``, ``beta`` ``(B, D)``.
    """

    kind = "film"

    def __init__(self, spec, *, generator=None):
        super().__init__(spec, generator=generator)
        self.gamma = nn.Linear(self.spec.dim, self.spec.dim)
        self.beta = nn.Linear(self.spec.dim, self.spec.dim)
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise):
        gamma = self.gamma(t)  # (B, D)
        beta = self.beta(t)  # (B, D)
        return gamma * v + beta, {"gamma": gamma, "beta": beta}
