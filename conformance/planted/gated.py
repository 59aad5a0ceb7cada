"""Planted bugs of ``gated``: the gate's direction and its gradient."""

from __future__ import annotations

import numpy as np

from ._base import Broken, PlantedBug


class GateComplement(Broken):
    """``(1 - g) v + g t`` instead of ``g v + (1 - g) t``."""

    bug = "gated-gate-complement"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        g = aux["gate"]
        return (1.0 - g) * v + g * t, aux


class GateClamped(Broken):
    """The gate clamped to ``[1e-6, 1 - 1e-6]`` (against log(0) elsewhere): off by 1e-6 of
    ``v - t`` where the gate saturates."""

    bug = "gated-gate-clamped"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        g = np.clip(aux["gate"], 1e-6, 1.0 - 1e-6)
        vv, tt = np.nan_to_num(np.asarray(v, np.float64)), np.nan_to_num(np.asarray(t, np.float64))
        fixed = g * vv + (1.0 - g) * tt
        saturated = (aux["gate"] != g) & np.isfinite(out)
        aux["gate"] = g
        return np.where(saturated, fixed, out), aux


BUGS = (
    PlantedBug(
        "gated-gate-complement",
        ("gated",),
        GateComplement,
        "The gate weighs t instead of v.",
        ("gated/forward/gated_default",),
    ),
    PlantedBug(
        "gated-gate-clamped",
        ("gated",),
        GateClamped,
        "The gate clamped to [1e-6, 1 - 1e-6]: visible only where it saturates.",
        ("gated/forward/gated_huge",),
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
