"""Planted bugs of ``simple``: the encoder stack."""

from __future__ import annotations

from fusion_spec.fusion_ref import _layers

from ._base import Broken, PlantedBug, patched_in


def pre_norm_layer(p, name, x, heads, eps, key_mask=None):
    """A pre-norm encoder layer, ``x + MHA(LN1(x))`` then ``x + FFN(LN2(x))``."""
    h = _layers.layer_norm(p, f"{name}.norm1", x, eps)
    x = x + _layers.attention(p, f"{name}.attn", h, h, heads, key_mask)[0]
    return x + _layers.feed_forward(
        p, f"{name}.ffn", _layers.layer_norm(p, f"{name}.norm2", x, eps)
    )


def first_layer_only(p, name, x, heads, eps, key_mask=None):
    """Every encoder layer but ``encoder.0`` skipped."""
    return _layers.encoder_layer(p, name, x, heads, eps, key_mask) if name.endswith(".0") else x


class PreNorm(Broken):
    bug = "simple-pre-norm"

    def forward(self, model, v, t, **kw):
        with patched_in("simple", "encoder_layer", pre_norm_layer):
            return super().forward(model, v, t, **kw)


class FirstLayerOnly(Broken):
    bug = "simple-first-layer-only"

    def forward(self, model, v, t, **kw):
        with patched_in("simple", "encoder_layer", first_layer_only):
            return super().forward(model, v, t, **kw)


BUGS = (
    PlantedBug(
        "simple-pre-norm",
        ("simple",),
        PreNorm,
        "Pre-norm encoder layers instead of the spec's post-norm.",
        ("simple/forward/simple_default",),
    ),
    PlantedBug(
        "simple-first-layer-only",
        ("simple",),
        FirstLayerOnly,
        "Only the first of `layers` encoder layers applied.",
        ("simple/forward/simple_dim12_layers3",),
    ),
)
