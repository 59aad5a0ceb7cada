"""``film``: text produces an affine modulation of the image embedding."""

from __future__ import annotations

from typing import Literal

from ._base import AuxSpec, FusionSpecBase, linear, linear_macs


class FilmSpec(FusionSpecBase):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$, $f = \gamma \odot v + \beta$."""

    summary = "FiLM: gamma(t) * v + beta(t); asymmetric (text conditions vision)."

    kind: Literal["film"] = "film"

    def params(self):
        return linear("gamma", self.dim, self.dim) + linear("beta", self.dim, self.dim)

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec("gamma", (batch, self.dim), "value", "Multiplicative modulation."),
            AuxSpec("beta", (batch, self.dim), "value", "Additive modulation."),
        ]

    def macs(self):
        return {"all": 2 * linear_macs(self.dim, self.dim)}
