"""Planted bugs of ``film``: the modulation and its gradient."""

from __future__ import annotations

from ._base import Broken, PlantedBug


class GammaPlusOne(Broken):
    """``(1 + gamma) v + beta``, the residual FiLM variant, instead of ``gamma v + beta``."""

    bug = "film-gamma-plus-one"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        return out + v, aux


BUGS = (
    PlantedBug(
        "film-gamma-plus-one",
        ("film",),
        GammaPlusOne,
        "(1 + gamma) v + beta, the residual variant.",
        ("film/forward/film_default",),
    ),
    PlantedBug(
        "film-beta-detached",
        ("film",),
        "fusion_spec.conformance.broken_torch:BetaDetached",
        "beta detached from the graph: forward right, beta's weights get no gradient.",
        ("film/gradient/film_default",),
        requires="torch",
    ),
)
