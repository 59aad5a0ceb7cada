"""``gated``: a per-dimension convex blend of ``v`` and ``t``."""

from __future__ import annotations

from typing import Literal

from ._base import AuxSpec, FusionSpecBase, linear, linear_macs, missing_field


class GatedSpec(FusionSpecBase):
    r"""$g = \sigma(W_g [v; t] + b_g)$, $f = g \odot v + (1 - g) \odot t$."""

    summary = "Sigmoid gate on [v; t] blends v and t per dimension."

    kind: Literal["gated"] = "gated"
    missing_modality: Literal["present_alone", "zero_fill"] = missing_field(
        "present_alone",
        "'present_alone': the output is the present modality itself (gate 1 or 0); "
        "'zero_fill': the absent embedding is zeros and the blend runs unchanged.",
    )

    missing_semantics = {
        "present_alone": (
            r"The present modality alone: $f = \hat v$ (image only, reported gate "
            r"$g = \mathbf{1}$), $f = \hat t$ (text only, $g = \mathbf{0}$); both: "
            r"the rule. $g = \sigma(W_g [\hat v; \hat t] + b_g)$ is the gate the rule "
            r"computes on the masked inputs."
        ),
        "zero_fill": (
            r"The absent embedding is zeros: $g = \sigma(W_g [\hat v; \hat t] + b_g)$, "
            r"$f = g \odot \hat v + (1 - g) \odot \hat t$, so a lone modality is "
            r"scaled by its gate."
        ),
    }

    def rule_params(self):
        return linear("gate", 2 * self.dim, self.dim)

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec(
                "gate",
                (batch, self.dim),
                "value",
                "The gate g in (0, 1). With present: 1 (image only) and 0 (text only) under "
                "missing_modality='present_alone'; for a sample with neither modality, "
                "sigmoid(gate.bias), the gate of zero inputs, under either setting.",
            )
        ]

    def rule_macs(self):
        return {"all": linear_macs(2 * self.dim, self.dim)}
