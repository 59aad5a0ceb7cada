"""Planted bugs of ``shomr``: the hard and fallback decisions, forced routing, routes, temperature."""

from __future__ import annotations

import math

import numpy as np

from fusion_spec.fusion_ref import _layers

from .. import broken
from ._base import Broken, PlantedBug, nudged, patched_in


def argmax_last(probs: np.ndarray):
    """Argmax whose ties go to the last maximal index (``>=`` while scanning)."""
    K = probs.shape[-1]
    route = K - 1 - np.argmax(probs[:, ::-1], axis=-1)
    top = np.sort(probs, axis=-1)
    return route.astype(np.int64), top[:, -1] - top[:, -2]


class ArgmaxLastIndex(Broken):
    bug = "argmax-last-index"

    def forward(self, model, v, t, **kw):
        with broken.patched("argmax", argmax_last):
            return super().forward(model, v, t, **kw)


class HardGreaterEqual(Broken):
    """A sample is hard where ``max(c) >= confidence_threshold``."""

    bug = "shomr-hard-greater-equal"

    def build(self, s, params):
        return super().build(nudged(s, "confidence_threshold", -math.inf), params)


class FallbackLessEqual(Broken):
    """The fallback fires where ``max(c) <= fallback_threshold``."""

    bug = "shomr-fallback-less-equal"

    def build(self, s, params):
        return super().build(nudged(s, "fallback_threshold", math.inf), params)


class FallbackOnHardSamples(Broken):
    """The fallback tests ``max(c) < fallback_threshold`` on every sample, hard ones included."""

    bug = "shomr-fallback-on-hard-samples"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        s = model.spec
        if s.fallback:
            fires = aux["confidence"].max(axis=-1) < s.fallback_threshold
            out = np.where(fires[:, None], 0.5 * (v + t), out)
            aux["fallback"] = fires.astype(np.float64)
        return out, aux


class FallbackIgnored(Broken):
    bug = "shomr-fallback-ignored"

    def build(self, s, params):
        return super().build(s.model_copy(update={"fallback": False}), params)


class ForcedRoutingIgnored(Broken):
    """``use_hard_routing`` dropped: every call routes automatically."""

    bug = "shomr-forced-routing-ignored"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        options = {k: o for k, o in options.items() if k != "use_hard_routing"}
        return super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )


class TemperatureMultiplies(Broken):
    """Router logits multiplied by the temperature instead of divided."""

    bug = "shomr-temperature-multiplies"

    def build(self, s, params):
        return super().build(
            s.model_copy(update={"routing_temperature": 1.0 / s.routing_temperature}), params
        )


class ImageTextRoutesSwapped(Broken):
    """The hard image route projects ``t`` and the text route ``v``."""

    bug = "shomr-image-text-routes-swapped"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        p = model.params
        swapped = {0: t, 1: v}
        for k, x in swapped.items():
            rows = (aux["hard"] > 0) & (aux["route"] == k)
            out = np.where(rows[:, None], _layers.gelu(_layers.linear(p, "single", x)), out)
        return out, aux


class SoftWeightsSwapped(Broken):
    """The soft path weighs ``v`` by ``c_t`` and ``t`` by ``c_v``."""

    bug = "shomr-soft-weights-swapped"

    def forward(self, model, v, t, **kw):
        def swapped_softmax(x, axis=-1):
            r = _layers.softmax(x, axis=axis)
            return r[:, ::-1] if r.shape[-1] == 2 else r

        out, aux = super().forward(model, v, t, **kw)
        with patched_in("shomr", "softmax", swapped_softmax):
            wrong, _ = super().forward(model, v, t, **kw)
        soft = aux["hard"] == 0
        return np.where((soft & (aux["fallback"] == 0))[:, None], wrong, out), aux


BUGS = (
    PlantedBug(
        "shomr-hard-greater-equal",
        ("shomr",),
        HardGreaterEqual,
        "Hard where max(c) >= confidence_threshold instead of >.",
        ("shomr/forward/shomr_hard_exact_boundary",),
        flips=("shomr.hard",),
    ),
    PlantedBug(
        "shomr-fallback-less-equal",
        ("shomr",),
        FallbackLessEqual,
        "Fallback where max(c) <= fallback_threshold instead of <.",
        ("shomr/forward/shomr_fallback_exact_boundary",),
        flips=("shomr.fallback",),
    ),
    PlantedBug(
        "shomr-fallback-on-hard-samples",
        ("shomr",),
        FallbackOnHardSamples,
        "The fallback flag (and (v + t) / 2) also set on hard samples below fallback_threshold.",
        ("shomr/forward/shomr_fallback_mixed",),
    ),
    PlantedBug(
        "shomr-fallback-ignored",
        ("shomr",),
        FallbackIgnored,
        "fallback=True ignored: soft samples below fallback_threshold keep the soft output.",
        ("shomr/forward/shomr_fallback_fires", "shomr/forward/shomr_fallback_mixed"),
    ),
    PlantedBug(
        "shomr-forced-routing-ignored",
        ("shomr",),
        ForcedRoutingIgnored,
        "use_hard_routing=True/False ignored: automatic routing every call.",
        ("shomr/forward/shomr_forced_soft", "shomr/forward/shomr_forced_hard"),
    ),
    PlantedBug(
        "temperature-ignored",
        ("shomr",),
        broken.TemperatureIgnored,
        "routing_temperature ignored (router logits not divided).",
        (
            "shomr/forward/shomr_temperature_2",
            "shomr/distribution/shomr_route_frequencies_temperature_2",
        ),
    ),
    PlantedBug(
        "shomr-temperature-multiplies",
        ("shomr",),
        TemperatureMultiplies,
        "Router logits multiplied by routing_temperature instead of divided.",
        ("shomr/forward/shomr_temperature_2", "shomr/forward/shomr_temperature_half"),
    ),
    PlantedBug(
        "shomr-image-text-routes-swapped",
        ("shomr",),
        ImageTextRoutesSwapped,
        "Hard route 0 (image) projects t and route 1 (text) projects v.",
        ("shomr/forward/shomr_route_image", "shomr/forward/shomr_route_text"),
    ),
    PlantedBug(
        "shomr-soft-weights-swapped",
        ("shomr",),
        SoftWeightsSwapped,
        "The soft path computes c_t v + c_v t.",
        ("shomr/forward/shomr_forced_soft",),
    ),
    PlantedBug(
        "argmax-last-index",
        ("shomr", "energy_aware_adaptive"),
        ArgmaxLastIndex,
        "Eval argmax ties go to the last maximal route instead of the first.",
        (
            "shomr/forward/shomr_argmax_tie",
            "energy_aware_adaptive/forward/energy_aware_adaptive_argmax_tie",
        ),
        flips=("shomr.route_argmax", "energy_aware_adaptive.route_argmax"),
    ),
    PlantedBug(
        "shomr-straight-through-on-soft-samples",
        ("shomr",),
        "fusion_spec.conformance.broken_torch:StraightThroughOnSoftSamples",
        "The straight-through factor 1 + r_k - sg(r_k) applied to soft samples too: forward "
        "unchanged, the router receives a gradient from soft samples.",
        (
            "shomr/gradient/shomr_straight_through_soft",
            "shomr/gradient/shomr_straight_through_automatic",
        ),
        requires="torch",
        scope=("shomr/forward/*", "shomr/gradient/*"),
    ),
    PlantedBug(
        "straight-through-ignored",
        ("shomr", "energy_aware_adaptive"),
        "fusion_spec.conformance.broken_torch:StraightThroughIgnored",
        "straight_through=True ignored: the router receives no gradient.",
        (
            "shomr/gradient/shomr_straight_through",
            "energy_aware_adaptive/gradient/energy_aware_adaptive_straight_through",
        ),
        requires="torch",
        scope=(
            "shomr/forward/*",
            "shomr/gradient/*",
            "energy_aware_adaptive/forward/*",
            "energy_aware_adaptive/gradient/*",
        ),
    ),
    PlantedBug(
        "shomr-straight-through-chosen-only",
        ("shomr",),
        "fusion_spec.conformance.broken_torch:StraightThroughChosenRouteOnly",
        "straight_through_routes='all' computed as 'chosen': the router learns to scale "
        "the routed output, never that another route would do better.",
        (
            "shomr/gradient/shomr_straight_through",
            "shomr/gradient/shomr_straight_through_automatic",
            "shomr/gradient/shomr_straight_through_missing",
        ),
        requires="torch",
        scope=("shomr/forward/*", "shomr/gradient/*"),
    ),
    PlantedBug(
        "straight-through-temperature-1",
        ("shomr",),
        "fusion_spec.conformance.broken_torch:StraightThroughTemperatureOne",
        "The straight-through factor uses softmax(z), not the routed softmax(z / T).",
        (
            "shomr/gradient/shomr_straight_through_temperature_2",
            "shomr/gradient/shomr_straight_through_temperature_half",
        ),
        requires="torch",
        scope=("shomr/forward/*", "shomr/gradient/*"),
    ),
    PlantedBug(
        "straight-through-argmax-route",
        ("shomr", "energy_aware_adaptive"),
        "fusion_spec.conformance.broken_torch:StraightThroughArgmaxRoute",
        "The straight-through factor uses r of the argmax route, not of the route taken.",
        ("energy_aware_adaptive/gradient/energy_aware_adaptive_straight_through_chosen",),
        requires="torch",
        scope=(
            "shomr/forward/*",
            "shomr/gradient/*",
            "energy_aware_adaptive/forward/*",
            "energy_aware_adaptive/gradient/*",
        ),
    ),
)
