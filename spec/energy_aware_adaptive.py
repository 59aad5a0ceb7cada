"""``energy_aware_adaptive``: route each sample to image, text or both under an energy budget."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ._base import (
    AttentionSpecBase,
    AuxSpec,
    CallOption,
    Comparison,
    Init,
    NoiseSpec,
    ParamSpec,
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

#: Upper bound of the energy fields: keeps costs, the mean energy and the loss
#: (up to ENERGY_MAX**2) finite and exact enough in float32.
ENERGY_MAX = 1e6


class EnergyAwareAdaptiveSpec(AttentionSpecBase):
    r"""Route $k$ from $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t]))$: $v$, $t$, or
    $\mathrm{FFN}(\mathrm{LN}(g v + (1-g) t + a))$; energy loss
    $\lambda \max(0, \overline{\kappa^\top r} - E_{budget})$ with $\kappa$ the energy costs.
    """

    summary = "Router picks image, text or both (gated + attention + FFN); reports an energy loss."
    dropout_sites = (
        'the attention weights (after the softmax)',
        "the FFN output of the 'both' path (no dropout in the router)",
    )
    call_options = (
        CallOption(
            "progress",
            "float | None",
            None,
            "Training progress in [0, 1] (the original's current_epoch / total_epochs); "
            "when given in training, enables the progressive output dropout.",
        ),
    )

    comparisons = (
        Comparison("route_draw", "route", "noise route", "<", "cumsum(route_probs)"),
        Comparison("route_argmax", "route", "argmax(route_probs) in eval", "first", ""),
        Comparison(
            "output_drop_gate",
            "output_kept",
            "noise output_drop_gate",
            "<",
            "output_drop_probability(progress)",
        ),
        Comparison(
            "output_drop_flags", "output_kept", "noise output_drop_flags", "<", "output_drop_flag_p"
        ),
    )

    kind: Literal["energy_aware_adaptive"] = "energy_aware_adaptive"
    energy_budget_mJ: float = Field(
        default=8.0, ge=0.0, le=ENERGY_MAX, description="Energy budget E_budget in mJ, in [0, 1e6]."
    )
    energy_costs_mJ: tuple[float, float, float] = Field(
        default=(3.2, 4.1, 9.8),
        description="Energy of the image, text and both routes in mJ, each in [0, 1e6].",
    )
    energy_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=ENERGY_MAX,
        description=(
            "lambda in the energy loss, in [0, 1e6]: the task-loss units one mJ over the "
            "budget costs. At 1 the budget binds (the batch's mean expected energy settles "
            "at it); at the original's 0.01 a router that compares routes ignores it. A "
            "fixed hyperparameter by default; the original's learnable lambda_energy "
            "(from_legacy reads its value from the checkpoint) could be driven negative by "
            "the optimiser."
        ),
    )
    energy_weight_trainable: bool = Field(
        default=False,
        description=(
            "Fidelity option: make lambda a parameter 'energy_weight' initialised to "
            "energy_weight, as the original's lambda_energy."
        ),
    )
    eval_routing: Literal["argmax", "sample"] = Field(
        default="argmax",
        description="Eval route: argmax of r (deterministic), or 'sample' as the original did.",
    )
    router_init_bias: tuple[float, float, float] | None = router_init_bias_field()
    straight_through: bool = Field(
        default=True,
        description=(
            "Give the router a straight-through gradient from the task loss (forward value "
            "unchanged; straight_through_routes says which). False (the original; "
            "from_legacy sets it): the router learns from the energy loss alone, which is "
            "0 while the expected energy is within the budget."
        ),
    )
    straight_through_routes: Literal["all", "chosen"] = straight_through_routes_field(
        "the 'both' path for every sample"
    )
    output_drop_start: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Progressive output dropout: p at progress 0."
    )
    output_drop_ramp: float = Field(
        default=0.3,
        ge=0.0,
        le=ENERGY_MAX,
        description="Progressive output dropout: p grows by this over progress.",
    )
    output_drop_max: float = Field(default=0.4, ge=0.0, le=1.0, description="Cap on p.")
    output_drop_flag_p: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Each of a sample's two flags is set with this prob."
    )

    missing_modality: Literal["route"] = missing_field(
        "route",
        "a sample with one modality is routed to that modality's path and never to the "
        "other or to 'both', in eval and in training draws.",
    )

    missing_semantics = {
        "route": (
            r"A sample with one modality is routed to it, never to the other or to "
            r'"both", in eval and in every draw: $f = v$ (image only, route 0), $f = t$ '
            r"(text only, route 1). Its `route_probs` are the one-hot of that route, so "
            r"its expected energy is that route's cost $\kappa_k$ and no energy gradient "
            r"reaches the router from it; with `straight_through=True` its factor "
            r"$1 + r_k - \mathrm{sg}(r_k)$ reads that one-hot too ($r_k = 1$, a constant), "
            r"so no straight-through gradient either. A sample with neither has `route` $-1$, "
            r"zero `route_probs` and expected energy 0 (it still counts in the batch mean); "
            r"its `output_kept` follows the progressive output drop's draw like any sample's "
            r"(its output is zeros either way)."
        ),
    }

    @field_validator("energy_costs_mJ")
    @classmethod
    def _costs_in_range(cls, costs):
        """Every route's energy cost is in [0, 1e6] (finite: NaN and inf are refused first)."""
        if not all(0.0 <= c <= ENERGY_MAX for c in costs):
            raise ValueError("every cost expected in [0, 1e6]")
        return costs

    def output_drop_probability(self, progress: float) -> float:
        """p = min(output_drop_max, output_drop_start + output_drop_ramp * progress)."""
        return min(self.output_drop_max, self.output_drop_start + self.output_drop_ramp * progress)

    def samples_route(self, training: bool) -> bool:
        return training or self.eval_routing == "sample"

    def rule_params(self):
        d = self.dim
        specs = (
            linear("router.hidden", 2 * d, d, "Router MLP, GELU after.")
            + router_logits(
                "router.out", d, self.router_init_bias, "Route logits for (image, text, both)."
            )
            + linear("gate", 2 * d, d, "Gate of the 'both' path.")
            + attention("attn", d)
            + layer_norm("norm", d)
            + feed_forward("ffn", d, self.ffn_mult * d)
        )
        if self.energy_weight_trainable:
            init = Init(
                "constant",
                value=self.energy_weight,
                origin="the field energy_weight (the original's lambda_energy started at 0.01)",
            )
            specs.append(
                ParamSpec(
                    "energy_weight",
                    (),
                    init,
                    doc="lambda of the energy loss; starts at the field energy_weight.",
                )
            )
        return specs

    def check_call_options(self, options):
        options = super().check_call_options(options)
        progress = options["progress"]
        if progress is not None:
            ok = isinstance(progress, (int, float, np.integer, np.floating)) and not isinstance(
                progress, (bool, np.bool_)
            )
            if not (ok and 0.0 <= float(progress) <= 1.0):
                raise InputError(
                    f"energy_aware_adaptive: call option 'progress' expected None or a float "
                    f"in [0, 1]; received {describe(progress)}"
                )
            options["progress"] = float(progress)
        return options

    def no_output_gradient(self) -> set[str]:
        names = {"energy_weight"} if self.energy_weight_trainable else set()
        if not self.straight_through:
            names |= {p.name for p in self.params() if p.name.startswith("router.")}
        return names

    def noise(self, batch, *, training, progress=None, **options):
        specs = []
        if self.samples_route(training):
            specs.append(
                NoiseSpec("route", (batch,), "Categorical draw of the route from route_probs.")
            )
        if training and progress is not None:
            specs.append(
                NoiseSpec("output_drop_gate", (1,), "Batch-level: active where < p(progress).")
            )
            specs.append(
                NoiseSpec(
                    "output_drop_flags",
                    (batch, 2),
                    "Per sample: flag set where < output_drop_flag_p.",
                )
            )
        return specs

    def aux(self, batch, *, training=False, **options):
        b = (batch,)
        return [
            AuxSpec("route_probs", (batch, 3), "value", "Router probabilities r."),
            AuxSpec(
                "route",
                b,
                "decision",
                "Route index k (0 image, 1 text, 2 both); -1 for a sample with neither "
                "modality.",
                margin="route_margin",
                dtype="int",
            ),
            AuxSpec("expected_energy", b, "value", "Per-sample expected energy energy_costs_mJ . r in mJ."),
            AuxSpec(
                "energy_loss",
                (),
                "value",
                "lambda * max(0, mean(expected_energy) - budget): a loss term (differentiable "
                "in the router's parameters and a trainable energy_weight).",
                differentiable=True,
            ),
            AuxSpec(
                "output_kept",
                b,
                "decision",
                "0 where the progressive output dropout zeroed the sample, else 1 (always 1 "
                "in eval or without progress). A sample with neither modality follows the "
                "draw like any other (its output is zeros either way).",
                margin="output_kept_margin",
            ),
            AuxSpec("route_margin", b, "margin", "Distance of the route decision from a flip."),
            AuxSpec(
                "output_kept_margin",
                b,
                "margin",
                "Distance of the output-drop decision from a flip.",
            ),
        ]

    def rule_macs(self):
        d, h = self.dim, self.ffn_mult * self.dim
        routing = linear_macs(2 * d, d) + linear_macs(d, 3)
        both = (
            linear_macs(2 * d, d) + attention_macs(d, 2, 2) + linear_macs(d, h) + linear_macs(h, d)
        )
        return {"image": routing, "text": routing, "both": routing + both}
