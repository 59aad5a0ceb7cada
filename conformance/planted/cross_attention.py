"""Planted bugs of ``cross_attention``: the two LayerNorms, the lone modality's gradient."""

from __future__ import annotations

from fusion_spec.fusion_ref import _layers

from ._base import Broken, PlantedBug, patched_in


def _skipping(norm: str):
    def layer_norm(p, name, x, eps):
        return x if name == norm else _layers.layer_norm(p, name, x, eps)

    return layer_norm


class _NormSkipped(Broken):
    norm = ""

    def forward(self, model, v, t, **kw):
        with patched_in("cross_attention", "layer_norm", _skipping(self.norm)):
            return super().forward(model, v, t, **kw)


class QueryNormSkipped(_NormSkipped):
    bug = "cross-attention-query-norm-skipped"
    norm = "norm1"


class FeedForwardNormSkipped(_NormSkipped):
    bug = "cross-attention-ffn-norm-skipped"
    norm = "norm2"


BUGS = (
    PlantedBug(
        "cross-attention-query-norm-skipped",
        ("cross_attention",),
        QueryNormSkipped,
        "The query (v + t) / 2 not normalised by LN1.",
        ("cross_attention/forward/cross_attention_default",),
    ),
    PlantedBug(
        "cross-attention-ffn-norm-skipped",
        ("cross_attention",),
        FeedForwardNormSkipped,
        "The feed-forward reads z instead of LN2(z).",
        ("cross_attention/forward/cross_attention_default",),
    ),
    PlantedBug(
        "cross-attention-lone-gradient-passed",
        ("cross_attention",),
        "fusion_spec.conformance.broken_torch:LoneGradientPassed",
        "lone_gradient='stop' ignored: forward right, a lone sample's present input "
        "gets its gradient.",
        ("cross_attention/gradient/cross_attention_missing",
         "cross_attention/gradient/cross_attention_input_norm_training"),
        requires="torch",
    ),
)
