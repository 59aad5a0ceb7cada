"""Planted bugs of ``gated``: the gate's direction and its gradient."""

from __future__ import annotations

from ._base import Broken, PlantedBug


class GateComplement(Broken):
    """``(1 - g) v + g t`` instead of ``g v + (1 - g) t``."""

    bug = "gated-gate-complement"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        g = aux["gate"]
        return (1.0 - g) * v + g * t, aux


BUGS = (
    PlantedBug(
        "gated-gate-complement",
        ("gated",),
        GateComplement,
        "The gate weighs t instead of v.",
        ("gated/forward/gated_default",),
    ),
    PlantedBug(
        "gated-gate-detached",
        ("gated",),
        "fusion_spec.conformance.broken_torch:GateDetached",
        "The gate detached from the graph: forward right, the gate's weights get no gradient.",
        ("gated/gradient/gated_default",),
        requires="torch",
    ),
)
