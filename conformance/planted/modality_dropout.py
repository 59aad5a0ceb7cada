"""Planted bugs of ``modality_dropout``: the drop comparisons, probabilities and draws."""

from __future__ import annotations

import math

from .. import broken
from ._base import Broken, PlantedBug, nudged

RULE = ("modality_dropout",)


class DropLessEqual(Broken):
    """A modality drops where ``u <= p`` instead of ``u < p``."""

    bug = "modality-drop-less-equal"

    def build(self, s, params):
        return super().build(nudged(nudged(s, "p_img", math.inf), "p_txt", math.inf), params)


class SharedUniform(Broken):
    """With its own RNG, one uniform decides both drops."""

    bug = "modality-drop-shared-uniform"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        if training and noise is None:
            shape = model.spec.noise(v.shape[0], training=True)[0].shape
            u = model.rng.random(shape)
            noise = {"drop_image": u, "drop_text": u.copy()}
        return super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )


class ProbabilitiesSwapped(Broken):
    bug = "modality-drop-probabilities-swapped"

    def build(self, s, params):
        return super().build(s.model_copy(update={"p_img": s.p_txt, "p_txt": s.p_img}), params)


class KeepProbability(Broken):
    """``p_img``/``p_txt`` read as keep probabilities: drop where ``u < 1 - p``."""

    bug = "modality-drop-keep-probability"

    def build(self, s, params):
        return super().build(
            s.model_copy(update={"p_img": 1.0 - s.p_img, "p_txt": 1.0 - s.p_txt}), params
        )


class AbsentDropped(Broken):
    """``missing_modality="zero_fill"`` computed as ``"drop"``: an absent modality's
    fill never reaches the MLP (the behaviour before the option)."""

    bug = "modality-drop-absent-dropped"

    def build(self, s, params):
        return super().build(s.replace(missing_modality="drop"), params)


class AbsentFilled(Broken):
    """``missing_modality="drop"`` computed as ``"zero_fill"``: an absent modality's fill
    goes through the draws."""

    bug = "modality-drop-absent-filled"

    def build(self, s, params):
        return super().build(s.replace(missing_modality="zero_fill"), params)


F = "modality_dropout/forward/modality_dropout_"
D = "modality_dropout/distribution/modality_dropout_"

BUGS = (
    PlantedBug(
        "modality-drop-less-equal",
        RULE,
        DropLessEqual,
        "Drop where u <= p instead of u < p.",
        (F + "training_exact_threshold",),
        flips=("modality_dropout.drop_image", "modality_dropout.drop_text"),
    ),
    PlantedBug(
        "modality-drop-shared-uniform",
        RULE,
        SharedUniform,
        "Own RNG: one uniform for drop_image and drop_text. Each rate is right; their "
        "joint probability is not.",
        (D + "batch_rates", D + "sample_rates"),
    ),
    PlantedBug(
        "modality-drop-probabilities-swapped",
        RULE,
        ProbabilitiesSwapped,
        "p_img applied to t and p_txt to v.",
        (F + "training_exact_threshold", D + "sample_rates"),
    ),
    PlantedBug(
        "modality-drop-keep-probability",
        RULE,
        KeepProbability,
        "p read as the keep probability.",
        (F + "training_exact_threshold", D + "batch_rates"),
    ),
    PlantedBug(
        "modality-drop-absent-dropped",
        RULE,
        AbsentDropped,
        "missing_modality='zero_fill' computed as 'drop': an absent row's fill never "
        "reaches the MLP.",
        (F + "missing", D + "missing_rates"),
    ),
    PlantedBug(
        "modality-drop-absent-filled",
        RULE,
        AbsentFilled,
        "missing_modality='drop' computed as 'zero_fill': an absent row's fill goes "
        "through the draws.",
        (F + "missing_drop", D + "missing_drop_rates"),
    ),
    PlantedBug(
        "modality-drop-per-sample",
        RULE,
        broken.ModalityDropPerSample,
        "Own RNG: drops per sample although drop_granularity='batch'.",
        (D + "batch_rates",),
    ),
)
