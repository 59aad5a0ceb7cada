"""``gated``: a per-dimension convex blend of ``v`` and ``t``."""

from __future__ import annotations

from typing import Literal

from ._base import AuxSpec, FusionSpecBase, linear, linear_macs


class GatedSpec(FusionSpecBase):
    r"""$g = \sigma(W_g [v; t] + b_g)$, $f = g \odot v + (1 - g) \odot t$."""

    summary = "Sigmoid gate on [v; t] blends v and t per dimension."

    kind: Literal["gated"] = "gated"

    def params(self):
        return linear("gate", 2 * self.dim, self.dim)

    def aux(self, batch, *, training=False, **options):
        return [AuxSpec("gate", (batch, self.dim), "value", "The gate g in (0, 1).")]

    def macs(self):
        return {"all": linear_macs(2 * self.dim, self.dim)}
