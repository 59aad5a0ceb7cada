"""Planted bugs of ``concat_mlp``: the activation."""

from __future__ import annotations

from fusion_spec.fusion_ref import _layers

from ._base import Broken, PlantedBug, patched_in


class ReluInsteadOfGelu(Broken):
    bug = "concat-mlp-relu"

    def forward(self, model, v, t, **kw):
        with patched_in("concat_mlp", "gelu", _layers.relu):
            return super().forward(model, v, t, **kw)


class GeluAfterLastLayer(Broken):
    bug = "concat-mlp-gelu-after-last-layer"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        return _layers.gelu(out), aux


BUGS = (
    PlantedBug(
        "concat-mlp-relu",
        ("concat_mlp",),
        ReluInsteadOfGelu,
        "ReLU between the layers instead of GELU.",
        ("concat_mlp/forward/concat_mlp_default",),
    ),
    PlantedBug(
        "concat-mlp-gelu-after-last-layer",
        ("concat_mlp",),
        GeluAfterLastLayer,
        "A GELU after the last layer too.",
        ("concat_mlp/forward/concat_mlp_default",),
    ),
)
