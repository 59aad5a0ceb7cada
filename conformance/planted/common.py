"""Planted bugs that touch several rules: activation, LayerNorm, weights, inputs, registry."""

from __future__ import annotations

import numpy as np

from fusion_spec import fusion_ref

from .. import broken
from ._base import Broken, PlantedBug

ATTENTION_RULES = (
    "simple",
    "transformer_concat",
    "cross_attention",
    "shomr",
    "energy_aware_adaptive",
)
GELU_RULES = (
    "simple",
    "concat_mlp",
    "transformer_concat",
    "cross_attention",
    "shomr",
    "energy_aware_adaptive",
)
ROUTING_RULES = ("shomr", "energy_aware_adaptive")
ALL_RULES = tuple(fusion_ref.RULES)


def naive_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` without subtracting the maximum: overflows for logits > 709."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(x)
        return z / np.sum(z, axis=axis, keepdims=True)


class NaiveSoftmax(Broken):
    bug = "naive-softmax"

    def forward(self, model, v, t, **kw):
        with broken.patched("softmax", naive_softmax):
            return super().forward(model, v, t, **kw)


class ExportsKernelLayout(Broken):
    """``canonical_params()`` returns dense weights in the framework's ``(in, out)`` layout."""

    bug = "exports-kernel-layout"

    def canonical_params(self, model):
        held = super().canonical_params(model)
        return {
            k: np.ascontiguousarray(p.T) if k.endswith(".weight") and p.ndim == 2 else p
            for k, p in held.items()
        }


BUGS = (
    PlantedBug(
        "tanh-gelu",
        GELU_RULES,
        broken.TanhGelu,
        "GELU by the tanh approximation (Keras's and PyTorch's approximate default) "
        "instead of the exact erf form.",
        ("concat_mlp/forward/concat_mlp_default", "shomr/forward/shomr_default"),
    ),
    PlantedBug(
        "layer-norm-eps-1e-3",
        ATTENTION_RULES,
        broken.LayerNormEps1e3,
        "LayerNorm epsilon 1e-3 (Keras's default) instead of the spec's 1e-5.",
        ("simple/forward/simple_default", "cross_attention/forward/cross_attention_l2"),
    ),
    PlantedBug(
        "transposed-square-weight",
        ALL_RULES,
        broken.TransposedSquareWeight,
        "One D x D weight loaded without its transpose: every shape check passes.",
        ("film/forward/film_default", "film/property/params_roundtrip"),
    ),
    PlantedBug(
        "swapped-v-t",
        ALL_RULES,
        broken.SwappedInputs,
        "v and t swapped at the call.",
        ("gated/forward/gated_default", "film/forward/film_default"),
    ),
    PlantedBug(
        "attention-scale-1-over-dim",
        ATTENTION_RULES,
        broken.AttentionScaleOneOverDim,
        "Attention scores scaled by 1/dim instead of 1/sqrt(dim/heads).",
        ("simple/forward/simple_default", "cross_attention/forward/cross_attention_heads1"),
    ),
    PlantedBug(
        "categorical-less-equal",
        ROUTING_RULES,
        broken.CategoricalLessEqual,
        "The categorical draw takes the first k with u <= cdf_k instead of u < cdf_k.",
        (
            "shomr/forward/shomr_categorical_exact_boundary",
            "energy_aware_adaptive/forward/energy_aware_adaptive_categorical_exact_boundary",
        ),
        flips=("shomr.route_draw", "energy_aware_adaptive.route_draw"),
    ),
    PlantedBug(
        "categorical-reversed-cdf",
        ROUTING_RULES,
        broken.CategoricalReversedCdf,
        "The categorical draw walks the CDF from the last route: right frequencies, wrong "
        "route for the given noise.",
        (
            "shomr/forward/shomr_training",
            "energy_aware_adaptive/forward/energy_aware_adaptive_training",
        ),
    ),
    PlantedBug(
        "sampling-in-eval",
        ROUTING_RULES,
        broken.SamplingInEval,
        "Eval draws the route from the router probabilities instead of taking the argmax.",
        ("shomr/property/eval_deterministic", "shomr/distribution/shomr_eval_is_argmax"),
    ),
    PlantedBug(
        "unregistered-param",
        ALL_RULES,
        broken.UnregisteredParam,
        "The last parameter is computed with but never registered with the framework.",
        ("gated/property/params_roundtrip", "shomr/property/params_roundtrip"),
    ),
    PlantedBug(
        "naive-softmax",
        ATTENTION_RULES,
        NaiveSoftmax,
        "Softmax without subtracting the maximum: NaN once a logit exceeds 709.",
        ("shomr/property/finite_outputs", "simple/property/finite_outputs"),
    ),
    PlantedBug(
        "exports-kernel-layout",
        ALL_RULES,
        ExportsKernelLayout,
        "canonical_params() exports dense weights (in, out), as Keras holds them.",
        ("gated/property/params_roundtrip", "film/property/params_roundtrip"),
    ),
    PlantedBug(
        "torch-tanh-gelu",
        ("concat_mlp", "gated"),
        "fusion_spec.conformance.broken_torch:TorchTanhGelu",
        "The PyTorch backend with F.gelu(approximate='tanh'), judged in float32.",
        ("concat_mlp/forward/concat_mlp_default", "concat_mlp/gradient/concat_mlp_hidden3_dim12"),
        requires="torch",
    ),
    PlantedBug(
        "torch-unregistered-param",
        ("gated", "film"),
        "fusion_spec.conformance.broken_torch:TorchUnregisteredParam",
        "A PyTorch parameter turned into a plain tensor attribute: forward right, never "
        "trained, saved or moved.",
        ("gated/property/params_roundtrip", "gated/gradient/gated_default"),
        requires="torch",
    ),
)
