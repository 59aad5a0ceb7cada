"""Planted bugs of ``energy_aware_adaptive``: the progressive output dropout, energy, eval routing.

The output-dropout bugs re-implement the three lines of that stage on top of
the reference's undropped output, with one change each.
"""

from __future__ import annotations

import numpy as np

from fusion_spec import fusion_ref

from .. import broken
from ._base import Broken, PlantedBug

RULE = ("energy_aware_adaptive",)


class _OutputDrop(Broken):
    """The progressive output dropout, stage by stage; subclasses change one stage."""

    def probability(self, s, progress: float) -> float:
        return s.output_drop_probability(progress)

    def active(self, gate: np.ndarray, p: float) -> np.ndarray:
        return gate < p

    def flagged(self, s, flags: np.ndarray) -> np.ndarray:
        return np.any(flags < s.output_drop_flag_p, axis=-1)

    def draw(self, model, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Gate ``(1,)`` and flags ``(B, 2)`` from the backend's own RNG."""
        return model.rng.random(1), model.rng.random((batch, 2))

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        s, progress = model.spec, options.get("progress")
        if s.kind != "energy_aware_adaptive" or not training or progress is None:
            return super().forward(
                model, v, t, training=training, noise=noise, options=options, present=present, **masks
            )
        B = v.shape[0]
        if noise is None:
            route = model.rng.random(B)
            gate, flags = self.draw(model, B)
        else:
            route, gate, flags = (
                noise[k] for k in ("route", "output_drop_gate", "output_drop_flags")
            )
        out, aux = fusion_ref.forward(
            s, model.params, v, t, present, training=True, noise={"route": route}, return_aux=True
        )
        dropped = self.active(np.asarray(gate), self.probability(s, progress)) & self.flagged(
            s, np.asarray(flags)
        )
        aux["output_kept"] = 1.0 - dropped.astype(np.float64)
        return out * aux["output_kept"][:, None], aux


class OutputDropGateLessEqual(_OutputDrop):
    bug = "output-drop-gate-less-equal"

    def active(self, gate, p):
        return gate <= p


class OutputDropFlagsLessEqual(_OutputDrop):
    bug = "output-drop-flags-less-equal"

    def flagged(self, s, flags):
        return np.any(flags <= s.output_drop_flag_p, axis=-1)


class OutputDropRampReversed(_OutputDrop):
    bug = "output-drop-ramp-reversed"

    def probability(self, s, progress):
        return min(s.output_drop_max, s.output_drop_start + s.output_drop_ramp * (1.0 - progress))


class OutputDropCapDropped(_OutputDrop):
    bug = "output-drop-cap-dropped"

    def probability(self, s, progress):
        return s.output_drop_start + s.output_drop_ramp * progress


class OutputDropBothFlags(_OutputDrop):
    bug = "output-drop-both-flags"

    def flagged(self, s, flags):
        return np.all(flags < s.output_drop_flag_p, axis=-1)


class OutputDropGatePerSample(_OutputDrop):
    """With its own RNG, draws the gate once per sample instead of once per batch."""

    bug = "output-drop-gate-per-sample"

    def draw(self, model, batch):
        return model.rng.random(batch), model.rng.random((batch, 2))


class OutputDropFlagsPerBatch(_OutputDrop):
    """With its own RNG, draws one pair of flags for the whole batch."""

    bug = "output-drop-flags-per-batch"

    def draw(self, model, batch):
        return model.rng.random(1), np.broadcast_to(model.rng.random((1, 2)), (batch, 2))


class EnergyCostsPermuted(Broken):
    """Energy costs read in the order (text, image, both)."""

    bug = "energy-costs-permuted"

    def build(self, s, params):
        c = s.energy_costs_mJ
        return super().build(s.model_copy(update={"energy_costs_mJ": (c[1], c[0], c[2])}), params)


class EnergyLossWithoutRelu(Broken):
    """``lambda * (mean energy - budget)``: negative under the budget."""

    bug = "energy-loss-without-relu"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        s = model.spec
        weight = model.params["energy_weight"] if s.energy_weight_trainable else s.energy_weight
        aux["energy_loss"] = np.asarray(
            float(weight) * (aux["expected_energy"].mean() - s.energy_budget_mJ)
        )
        return out, aux


class TrainableWeightIgnored(Broken):
    """The energy loss reads the field ``energy_weight``, not the trained parameter."""

    bug = "energy-weight-parameter-ignored"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        s = model.spec
        excess = max(float(aux["expected_energy"].mean()) - s.energy_budget_mJ, 0.0)
        aux["energy_loss"] = np.asarray(s.energy_weight * excess)
        return out, aux


class EvalRoutingSampleIgnored(Broken):
    """``eval_routing='sample'`` ignored: eval takes the argmax and reads no route noise."""

    bug = "eval-routing-sample-ignored"

    def build(self, s, params):
        return super().build(s.model_copy(update={"eval_routing": "argmax"}), params)

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        if not training and noise:
            noise = {k: u for k, u in noise.items() if k != "route"}
        return super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )


class EnergyMeanOverPresent(Broken):
    """The energy loss's mean over the samples with a modality, not over all B rows (a
    neither row's expected energy 0 left out of the denominator)."""

    bug = "energy-mean-over-present"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        out, aux = super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )
        s = model.spec
        if present is not None and np.asarray(present).any(axis=1).any():
            weight = model.params["energy_weight"] if s.energy_weight_trainable else s.energy_weight
            e = aux["expected_energy"][np.asarray(present).any(axis=1)]
            aux["energy_loss"] = np.asarray(float(weight) * max(e.mean() - s.energy_budget_mJ, 0.0))
        return out, aux


class OutputScaledInEval(Broken):
    """Eval with ``progress`` given scales the output by ``1 - p(progress)``, the kept
    fraction of training (the inverted-dropout habit), instead of leaving it alone."""

    bug = "output-scaled-in-eval"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        out, aux = super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )
        progress = options.get("progress")
        if not training and progress is not None:
            out = out * (1.0 - model.spec.output_drop_probability(progress))
        return out, aux


class OutputDropFlagPIgnored(Broken):
    """The drop flags compared with 1/2 whatever ``output_drop_flag_p`` says."""

    bug = "output-drop-flag-p-ignored"

    def build(self, s, params):
        return super().build(s.replace(output_drop_flag_p=0.5), params)


class NeitherRowCostsImage(Broken):
    """A sample with neither modality (route -1) costs the image route's energy: a one-hot
    of the clamped route instead of zeros."""

    bug = "neither-row-costs-image"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        out, aux = super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )
        s = model.spec
        if present is not None:
            neither = ~np.asarray(present).any(axis=1)
            e = np.where(neither, s.energy_costs_mJ[0], aux["expected_energy"])
            weight = model.params["energy_weight"] if s.energy_weight_trainable else s.energy_weight
            aux["expected_energy"] = e
            aux["energy_loss"] = np.asarray(float(weight) * max(e.mean() - s.energy_budget_mJ, 0.0))
        return out, aux


class EnergyLossNanOnEmptyBatch(Broken):
    """The energy loss as a plain mean: NaN for an empty batch (a mean over nothing)."""

    bug = "energy-loss-nan-on-empty-batch"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        if np.shape(v)[0] == 0:
            aux["energy_loss"] = np.asarray(np.nan)
        return out, aux


def _bug(name, cls, doc, caught_by, **kw):
    return PlantedBug(name, RULE, cls, doc, caught_by, **kw)


F = "energy_aware_adaptive/forward/energy_aware_adaptive_"
D = "energy_aware_adaptive/distribution/energy_aware_adaptive_"

BUGS = (
    _bug(
        "output-drop-gate-less-equal",
        OutputDropGateLessEqual,
        "Output dropout active where gate <= p(progress) instead of <.",
        (F + "output_drop_gate_exact_boundary",),
        flips=("energy_aware_adaptive.output_drop_gate",),
    ),
    _bug(
        "output-drop-flags-less-equal",
        OutputDropFlagsLessEqual,
        "A drop flag set where u <= output_drop_flag_p instead of <.",
        (F + "output_drop_flag_exact_boundary",),
        flips=("energy_aware_adaptive.output_drop_flags",),
    ),
    _bug(
        "output-drop-ramp-reversed",
        OutputDropRampReversed,
        "p = start + ramp * (1 - progress): the ramp runs backwards.",
        (F + "output_drop_progress_zero", F + "output_drop_ramp"),
    ),
    _bug(
        "output-drop-cap-dropped",
        OutputDropCapDropped,
        "p = start + ramp * progress without min(output_drop_max, ...).",
        (F + "output_drop_cap",),
    ),
    _bug(
        "output-drop-both-flags",
        OutputDropBothFlags,
        "A sample drops only when both flags are set (all instead of any).",
        (F + "output_drop", D + "output_drop_rates"),
    ),
    _bug(
        "output-drop-gate-per-sample",
        OutputDropGatePerSample,
        "Own RNG: the batch-level gate drawn per sample.",
        (D + "output_drop_rates",),
    ),
    _bug(
        "output-drop-flags-per-batch",
        OutputDropFlagsPerBatch,
        "Own RNG: one pair of flags shared by every sample of the batch.",
        (D + "output_drop_rates",),
    ),
    _bug(
        "energy-loss-averaged-wrongly",
        broken.EnergyLossAveragedWrongly,
        "lambda * mean(relu(e_b - budget)) instead of lambda * relu(mean(e_b) - budget).",
        (F + "energy_budget_split",),
    ),
    _bug(
        "energy-loss-without-relu",
        EnergyLossWithoutRelu,
        "lambda * (mean energy - budget): negative below the budget.",
        (F + "route_text",),  # text-only routes: under the budget, the loss is 0
    ),
    _bug(
        "energy-costs-permuted",
        EnergyCostsPermuted,
        "Energy costs read as (text, image, both).",
        (F + "default",),
    ),
    _bug(
        "energy-weight-parameter-ignored",
        TrainableWeightIgnored,
        "energy_weight_trainable: the loss reads the field, not the parameter.",
        (F + "trainable_weight",),
    ),
    _bug(
        "energy-mean-over-present",
        EnergyMeanOverPresent,
        "The energy loss averages the expected energy over the samples with a modality, not "
        "over all B rows.",
        (F + "missing_over_budget", F + "missing_over_budget_training"),
    ),
    _bug(
        "output-scaled-in-eval",
        OutputScaledInEval,
        "Eval with progress given scales the output by 1 - p(progress).",
        (F + "eval_progress",),
    ),
    _bug(
        "energy-loss-router-detached",
        "fusion_spec.conformance.broken_torch:EnergyLossRouterDetached",
        "PyTorch: the energy loss from detached router probabilities: right value, no router "
        "gradient.",
        ("energy_aware_adaptive/gradient/energy_aware_adaptive_energy_loss_gradient",),
        requires="torch",
        scope=("energy_aware_adaptive/forward/*", "energy_aware_adaptive/gradient/*"),
    ),
    _bug(
        "straight-through-chosen-route-only",
        "fusion_spec.conformance.broken_torch:StraightThroughChosenRouteOnly",
        "PyTorch: straight_through_routes='all' computed as 'chosen': the router learns to "
        "scale the routed output, never that another route would do better.",
        (
            "energy_aware_adaptive/gradient/energy_aware_adaptive_straight_through",
            "energy_aware_adaptive/gradient/energy_aware_adaptive_straight_through_eval",
        ),
        requires="torch",
        scope=("energy_aware_adaptive/forward/*", "energy_aware_adaptive/gradient/*"),
    ),
    _bug(
        "energy-weight-detached",
        "fusion_spec.conformance.broken_torch:EnergyWeightDetached",
        "PyTorch: a trainable energy_weight read detached in the loss: it never learns.",
        ("energy_aware_adaptive/gradient/energy_aware_adaptive_energy_loss_gradient",),
        requires="torch",
        scope=("energy_aware_adaptive/forward/*", "energy_aware_adaptive/gradient/*"),
    ),
    _bug(
        "output-drop-flag-p-ignored",
        OutputDropFlagPIgnored,
        "The drop flags compared with 1/2 whatever output_drop_flag_p says.",
        (F + "non_default_training",),
    ),
    _bug(
        "neither-row-costs-image",
        NeitherRowCostsImage,
        "A sample with neither modality costs the image route's energy instead of 0.",
        (F + "missing_over_budget", F + "missing_over_budget_training"),
    ),
    _bug(
        "energy-loss-per-sample-relu-gradient",
        "fusion_spec.conformance.broken_torch:EnergyLossPerSampleReluGradient",
        "PyTorch: the energy loss's value right, its gradient that of the mean of per-sample "
        "relu: samples under the budget get none.",
        (F.replace("forward", "gradient") + "missing_over_budget_training",),
        requires="torch",
        scope=("energy_aware_adaptive/forward/*", "energy_aware_adaptive/gradient/*"),
    ),
    _bug(
        "energy-loss-nan-on-empty-batch",
        EnergyLossNanOnEmptyBatch,
        "The energy loss as a plain mean: NaN for an empty batch.",
        ("energy_aware_adaptive/property/empty_batch",),
    ),
    _bug(
        "eval-routing-sample-ignored",
        EvalRoutingSampleIgnored,
        "eval_routing='sample' ignored: eval takes the argmax.",
        (F + "eval_sample", D + "eval_sample_frequencies"),
    ),
)
