"""``shomr``: soft-hard modality routing."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ._base import (
    AttentionSpecBase,
    AuxSpec,
    CallOption,
    Comparison,
    NoiseSpec,
    attention,
    attention_macs,
    feed_forward,
    layer_norm,
    linear,
    linear_macs,
    missing_field,
    router_init_bias_field,
    router_logits,
    straight_through_routes_field,
)
from ._errors import InputError, describe

ROUTES = ("image", "text", "both")
#: Range of routing_temperature where float32 backends agree with the reference.
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-3, 1e3


class ShomrSpec(AttentionSpecBase):
    r"""Confidence $c = \mathrm{softmax}(\mathrm{MLP}_c([v;t]))$ picks soft or hard routing per sample.

    Soft samples: $s = \mathrm{LN}_1(c_v v + c_t t + a)$, $f = s + \mathrm{FFN}(s)$ with
    $a$ the token mean of self-attention over $[v, t]$. Hard samples follow the route
    $k$ drawn from $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t]) / T)$ (argmax in eval):
    $P(v)$, $P(t)$ with $P = \mathrm{GELU}(W_p \cdot + b_p)$, or the gated "both" path
    $z = \mathrm{LN}_2(g v + (1-g) t + a)$, $f = z + \mathrm{FFN}(z)$.
    """

    summary = "Confidence picks soft (weighted sum + attention) or hard routing (image/text/both)."
    dropout_sites = (
        "the confidence MLP's hidden activation, after the GELU",
        "the router MLP's hidden activation, after the GELU",
        'the attention weights (after the softmax)',
        'the FFN hidden activation, after the GELU',
        'the FFN output, before the residual add',
        'the hard image/text projection, after its GELU',
    )
    call_options = (
        CallOption(
            "use_hard_routing",
            "bool | None",
            None,
            "None: per sample, hard where max confidence > confidence_threshold; "
            "True: every sample hard; False: every sample soft.",
        ),
    )

    comparisons = (
        Comparison("hard", "hard", "max(confidence)", ">", "confidence_threshold"),
        Comparison("fallback", "fallback", "max(confidence) of a soft sample", "<", "fallback_threshold"),
        Comparison("route_draw", "route", "noise route", "<", "cumsum(route_probs)"),
        Comparison("route_argmax", "route", "argmax(route_probs) in eval", "first", ""),
    )
    routing_dependent = ("straight_through", "straight_through_routes")

    kind: Literal["shomr"] = "shomr"
    confidence_threshold: float = Field(
        default=0.6, ge=0.0, le=1.0, description="A sample is hard where max confidence > this (strict)."
    )
    routing_temperature: float = Field(
        default=1.0,
        ge=TEMPERATURE_MIN,
        le=TEMPERATURE_MAX,
        description=(
            "Router logits are divided by this before the softmax; in [1e-3, 1e3], so that "
            "logits / T stays finite in float32 (1e-50 overflows to inf, and the softmax to NaN)."
        ),
    )
    fallback: bool = Field(
        default=True,
        description=(
            "Keep the original's low-confidence fallback: soft samples with max "
            "confidence < fallback_threshold output (v + t) / 2. With two modalities "
            "max confidence >= 1/2, so it never fires at the default threshold 0.3."
        ),
    )
    fallback_threshold: float = Field(default=0.3, ge=0.0, le=1.0, description="See fallback.")
    router_init_bias: tuple[float, float, float] | None = router_init_bias_field()
    straight_through: bool = Field(
        default=True,
        description=(
            "Give the router a straight-through gradient from a hard sample's routed "
            "output (forward value unchanged; straight_through_routes says which routes it "
            "compares); without it an untrained router hard-routes most samples for good. "
            "False (the original; from_legacy sets it): the router gets no gradient."
        ),
    )
    straight_through_routes: Literal["all", "chosen"] = straight_through_routes_field(
        "both image/text projections and the 'both' path for every hard sample"
    )

    missing_modality: Literal["route"] = missing_field(
        "route",
        "a sample with one modality is routed (hard) to that modality's path and never "
        "to the other or to 'both', in eval and in training draws, whatever "
        "use_hard_routing says.",
    )

    missing_semantics = {
        "route": (
            r"A sample with one modality takes that modality's hard path, never the other "
            r'or "both", in eval and in training draws and whatever `use_hard_routing` '
            r"says: $f = P(v)$ (image only, route 0), $f = P(t)$ (text only, route 1). Its "
            r"aux report what was applied: `hard` 1, `confidence` $(\pi_v, \pi_t)$, "
            r"`route_probs` the one-hot of its route, `fallback` 0, margins $\infty$. "
            r"With `straight_through=True` its straight-through term reads that one-hot (a "
            r"constant, not the router's probabilities), so the router receives no gradient "
            r"from the sample. A sample with neither has `route` $-1$, "
            r"`hard` 0, `fallback` 0, zero `confidence` and `route_probs`, margins $\infty$."
        ),
    }

    def rule_params(self):
        d = self.dim
        return (
            linear("confidence.hidden", 2 * d, d, "Confidence MLP, GELU after.")
            + linear("confidence.out", d, 2, "Confidence logits for (v, t).")
            + linear("router.hidden", 2 * d, d, "Router MLP, GELU after.")
            + router_logits(
                "router.out", d, self.router_init_bias, "Route logits for (image, text, both)."
            )
            + attention("attn", d)
            + linear("gate", 2 * d, d, "Gate of the hard 'both' path.")
            + layer_norm("norm1", d, "Soft path.")
            + layer_norm("norm2", d, "Hard 'both' path.")
            + feed_forward("ffn", d, self.ffn_mult * d)
            + linear("single", d, d, "Shared projection of the hard image/text paths.")
        )

    def check_call_options(self, options):
        options = super().check_call_options(options)
        value = options["use_hard_routing"]
        if not (value is None or isinstance(value, (bool, np.bool_))):
            raise InputError(
                f"shomr: call option 'use_hard_routing' expected None, True or False; "
                f"received {describe(value)}"
            )
        options["use_hard_routing"] = None if value is None else bool(value)
        return options

    def no_output_gradient(self) -> set[str]:
        if self.straight_through:
            return set()
        return {p.name for p in self.params() if p.name.startswith("router.")}

    def noise(self, batch, *, training, **options):
        if not training:
            return []
        return [NoiseSpec("route", (batch,), "Categorical draw of the route from route_probs.")]

    def aux(self, batch, *, training=False, **options):
        b = (batch,)
        return [
            AuxSpec("confidence", (batch, 2), "value", "Confidence weights (c_v, c_t)."),
            AuxSpec("route_probs", (batch, 3), "value", "Router probabilities r."),
            AuxSpec("hard", b, "decision", "1 for hard samples, 0 for soft (and for a sample with neither modality).", margin="hard_margin"),
            AuxSpec(
                "route",
                b,
                "decision",
                "Route index k (0 image, 1 text, 2 both), the router's choice, reported for "
                "soft samples too (their output does not use it); -1 for a sample with "
                "neither modality.",
                margin="route_margin",
                dtype="int",
            ),
            AuxSpec(
                "fallback",
                b,
                "decision",
                "1 where the fallback replaced the output.",
                margin="fallback_margin",
            ),
            AuxSpec("hard_margin", b, "margin", "|max(c) - confidence_threshold| (inf if forced)."),
            AuxSpec("route_margin", b, "margin", "Distance of the route decision from a flip."),
            AuxSpec("fallback_margin", b, "margin", "|max(c) - fallback_threshold| (inf if off)."),
        ]

    def rule_macs(self):
        d, h = self.dim, self.ffn_mult * self.dim
        routing = linear_macs(2 * d, d) * 2 + linear_macs(d, 2) + linear_macs(d, 3)
        ffn = linear_macs(d, h) + linear_macs(h, d)
        attn = attention_macs(d, 2, 2)
        single = linear_macs(d, d)
        return {
            "soft": routing + attn + ffn,
            "hard_image": routing + single,
            "hard_text": routing + single,
            "hard_both": routing + linear_macs(2 * d, d) + attn + ffn,
        }
