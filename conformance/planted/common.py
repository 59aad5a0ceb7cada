"""Planted bugs that touch several rules: activation, LayerNorm, weights, inputs, registry."""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

from fusion_spec import fusion_ref
from fusion_spec.fusion_ref import _layers

from .. import broken
from ._base import Broken, PlantedBug, patched_in

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
LAYER_NORM_RULES = ATTENTION_RULES
ALL_RULES = tuple(fusion_ref.RULES)


def naive_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` without subtracting the maximum: overflows for logits > 709."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(x)
        return z / np.sum(z, axis=axis, keepdims=True)


def _pool_over_all_tokens(x, w):
    return x.mean(axis=1)  # padding (zeroed) counted in the mean


class PoolReadsPadding(Broken):
    """The masked mean divides by ``L``, not by the real tokens' count (padding, already
    zero, counted in)."""

    bug = "pool-reads-padding"

    def forward(self, model, v, t, **kw):
        with patched_in("", "pool", _pool_over_all_tokens):
            return super().forward(model, v, t, **kw)


def _padding_as_keys(original):
    def keys(s, w, present):
        # every token of a modality that has a real one becomes a key (padding attended)
        return original(s, [x | x.any(axis=1, keepdims=True) for x in w], present)

    return keys


class PaddingKeysAttended(Broken):
    """Padding tokens are attended to (the key mask forgets the padding mask)."""

    bug = "padding-keys-attended"

    def forward(self, model, v, t, **kw):
        with contextlib.ExitStack() as stack:
            for rule in ("simple", "transformer_concat", "cross_attention"):
                m = importlib.import_module(f"fusion_spec.fusion_ref.{rule}")
                stack.enter_context(patched_in(rule, "token_keys", _padding_as_keys(m.token_keys)))
            return super().forward(model, v, t, **kw)


def _sequences_by_product(original):
    def sequences(v, t, mask, padding):
        seqs, w, m = original(v, t, mask, padding)
        raw = [x if x.ndim == 3 else x[:, None] for x in (v, t)]
        # padding "removed" by a product with the mask: NaN * 0 is NaN
        return [x * ww[..., None] for x, ww in zip(raw, w, strict=True)], w, m

    return sequences


def _pool_by_product(x, w):
    count = np.maximum(w.sum(axis=1), 1)[:, None]
    return (x * w[..., None]).sum(axis=1) / count  # NaN * 0 is NaN


class PaddingZeroedByProduct(Broken):
    """Padding multiplied by the mask instead of selected away (in the sequences and in
    the masked mean): NaN or inf in a padding token poisons the sample."""

    bug = "padding-zeroed-by-product"

    def forward(self, model, v, t, **kw):
        with (
            patched_in("", "_sequences", _sequences_by_product(fusion_ref._sequences)),
            patched_in("", "pool", _pool_by_product),
        ):
            return super().forward(model, v, t, **kw)


def _sequences_padding_keeps_presence(original):
    def sequences(v, t, mask, padding):
        seqs, w, m = original(v, t, mask, padding)
        if m is not None:  # a modality all padding stays present (its tokens all zero)
            present = mask if mask is not None else np.ones((seqs[0].shape[0], 2), dtype=bool)
            m = fusion_ref.Presence(present[:, 0], present[:, 1])
        return seqs, w, m

    return sequences


class AllPaddingStaysPresent(Broken):
    """A modality whose tokens are all padding is not treated as absent."""

    bug = "all-padding-stays-present"

    def forward(self, model, v, t, **kw):
        with patched_in("", "_sequences", _sequences_padding_keeps_presence(fusion_ref._sequences)):
            return super().forward(model, v, t, **kw)


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


def finite_key_mask(p, name, query, keys, heads, key_mask=None):
    """Attention whose masked keys get the score ``-1e4`` (an additive mask), not ``-inf``:
    weight exactly 0 while the scores are small, the masked key's once they exceed 1e4."""
    if key_mask is None:
        return _attention(p, name, query, keys, heads)
    B, Tq, D = query.shape
    Tk = keys.shape[1]
    dh = D // heads
    split = lambda x, T: x.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
    q = split(_layers.linear(p, f"{name}.query", query), Tq)
    k = split(_layers.linear(p, f"{name}.key", keys), Tk)
    v = split(_layers.linear(p, f"{name}.value", keys), Tk)
    scores = (q @ k.transpose(0, 1, 3, 2)) / np.sqrt(dh)
    scores = scores + np.where(key_mask[:, None, None, :], 0.0, -1e4)
    weights = _layers.softmax(scores, axis=-1)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(B, Tq, D)
    return _layers.linear(p, f"{name}.output", mixed), weights


_attention = _layers.attention


class FiniteKeyMask(Broken):
    bug = "finite-key-mask"

    def forward(self, model, v, t, **kw):
        with broken.patched("attention", finite_key_mask):
            return super().forward(model, v, t, **kw)


class NanRoutePicksFirst(Broken):
    """A routed sample with NaN route probabilities takes the argmax's route 0 (its ``v``,
    finite for a NaN in ``t``) instead of an all-NaN row."""

    bug = "nan-route-picks-first"

    def forward(self, model, v, t, **kw):
        with broken.patched("poison_undecided", lambda out, probs: out):
            return super().forward(model, v, t, **kw)


class NanSpreadsOverBatch(Broken):
    """One sample's NaN makes every row NaN (a statistic over the batch, a reduction across
    samples)."""

    bug = "nan-spreads-over-batch"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        rows = np.isfinite(v).all(axis=1) & np.isfinite(t).all(axis=1)
        present = kw.get("present")
        if present is None and not rows.all():
            out = np.full_like(out, np.nan)
        return out, aux


def sigmoid_exp_ratio(x: np.ndarray) -> np.ndarray:
    """``exp(x) / (1 + exp(x))``: inf / inf = NaN once x exceeds 709."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return e / (1.0 + e)


class SigmoidExpRatio(Broken):
    bug = "sigmoid-exp-ratio"

    def forward(self, model, v, t, **kw):
        with broken.patched("sigmoid", sigmoid_exp_ratio):
            return super().forward(model, v, t, **kw)


_softmax = _layers.softmax


class SoftmaxClipped(Broken):
    """Softmax of logits clipped to [-1e4, 1e4] (against overflow): logits beyond the clip
    tie."""

    bug = "softmax-logits-clipped"

    def forward(self, model, v, t, **kw):
        clipped = lambda x, axis=-1: _softmax(np.clip(x, -1e4, 1e4), axis=axis)  # noqa: E731
        with broken.patched("softmax", clipped):
            return super().forward(model, v, t, **kw)


_project = fusion_ref._project


def _project_keeping_bias(s, p, x, w):
    """The input projections applied to every row: an absent row becomes the bias."""
    return _project(s, p, x, [np.ones_like(wi) for wi in w])


class ProjectionBiasOnAbsentRows(Broken):
    """``input_proj`` applied after the absent rows were zeroed and not re-zeroed: an
    absent modality's row holds the projection's bias, which zero-filling rules read."""

    bug = "input-proj-bias-on-absent-rows"

    def forward(self, model, v, t, **kw):
        # the pooling rules read the row as it is (the reference's masked mean would
        # select the absent row away again)
        with (
            patched_in("", "_project", _project_keeping_bias),
            patched_in("", "pool", lambda x, w, _pool=fusion_ref.pool: _pool(x, np.ones_like(w))),
        ):
            return super().forward(model, v, t, **kw)


class InputNormEpsIgnored(Broken):
    """``input_norm="batch"`` with epsilon 1e-5 whatever ``input_norm_eps`` says."""

    bug = "input-norm-eps-ignored"

    def build(self, s, params):
        return super().build(s.replace(input_norm_eps=1e-5), params)


class InputNormAbsentAtMean(Broken):
    """``input_norm="batch"`` with an absent row at the present rows' mean (0) whatever
    ``input_norm_absent`` says: the behaviour before the field."""

    bug = "input-norm-absent-at-mean"

    def build(self, s, params):
        return super().build(s.replace(input_norm_absent="mean"), params)


def _pool_zeros(x, w):
    """The masked mean with zeros where there is no real token, not the first token."""
    count = np.maximum(w.sum(axis=1), 1)[:, None]
    return np.where(w[..., None], x, 0.0).sum(axis=1) / count


class PoolZerosAbsent(Broken):
    """Each modality's masked mean is zeros for an absent modality: the normalised zero
    row ``input_norm_absent="zero"`` placed there never reaches a pooling rule."""

    bug = "pool-zeros-absent"

    def forward(self, model, v, t, **kw):
        with patched_in("", "pool", _pool_zeros):
            return super().forward(model, v, t, **kw)


class NanZeroed(Broken):
    """Non-finite inputs replaced by 0 (a "robust" front end): a NaN sample gets a finite row."""

    bug = "nan-zeroed"

    def forward(self, model, v, t, **kw):
        if kw.get("present") is None:
            v, t = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0), np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        return super().forward(model, v, t, **kw)


class InputsClipped(Broken):
    """Inputs clipped to +-1e30 (against overflow): an infinite input gives a finite row."""

    bug = "inputs-clipped"

    def forward(self, model, v, t, **kw):
        if kw.get("present") is None:
            v, t = np.clip(v, -1e30, 1e30), np.clip(t, -1e30, 1e30)
        return super().forward(model, v, t, **kw)


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
        "finite-key-mask",
        ATTENTION_RULES,
        FiniteKeyMask,
        "Masked keys get the score -1e4 (an additive mask) instead of -inf: invisible while "
        "scores are small.",
        ("cross_attention/forward/cross_attention_missing_huge",),
    ),
    PlantedBug(
        "nan-route-picks-first",
        ROUTING_RULES,
        NanRoutePicksFirst,
        "A routed sample with NaN route probabilities takes route 0 (a finite v for a NaN in t) "
        "instead of an all-NaN row.",
        ("shomr/property/nan_rows", "energy_aware_adaptive/property/nan_rows"),
    ),
    PlantedBug(
        "nan-spreads-over-batch",
        ALL_RULES,
        NanSpreadsOverBatch,
        "One sample's NaN makes every output row NaN.",
        ("gated/property/nan_rows", "simple/property/nan_rows"),
    ),
    PlantedBug(
        "torch-layer-norm-one-pass",
        LAYER_NORM_RULES,
        "fusion_spec.conformance.broken_torch:LayerNormOnePass",
        "The PyTorch backend's LayerNorm with the one-pass variance E[x^2] - E[x]^2 in float32.",
        ("cross_attention/forward/cross_attention_offset",),
        requires="torch",
        scope=tuple(f"{r}/forward/*" for r in LAYER_NORM_RULES),
    ),
    PlantedBug(
        "torch-layer-norm-eps-outside-sqrt",
        LAYER_NORM_RULES,
        "fusion_spec.conformance.broken_torch:LayerNormEpsOutsideSqrt",
        "The PyTorch backend's LayerNorm divides by sqrt(var) + eps, not sqrt(var + eps).",
        ("simple/forward/simple_tiny", "shomr/forward/shomr_tiny"),
        requires="torch",
        scope=tuple(f"{r}/forward/*" for r in LAYER_NORM_RULES),
    ),
    PlantedBug(
        "sigmoid-exp-ratio",
        ("gated", "shomr", "energy_aware_adaptive"),
        SigmoidExpRatio,
        "The logistic function as exp(x) / (1 + exp(x)): NaN for x > 709.",
        ("gated/forward/gated_huge", "gated/forward/gated_missing_huge"),
    ),
    PlantedBug(
        "softmax-logits-clipped",
        ATTENTION_RULES,
        SoftmaxClipped,
        "Softmax of logits clipped to [-1e4, 1e4]: logits beyond the clip tie.",
        ("simple/forward/simple_huge", "cross_attention/forward/cross_attention_missing_huge"),
    ),
    PlantedBug(
        "input-proj-bias-on-absent-rows",
        ALL_RULES,
        ProjectionBiasOnAbsentRows,
        "The input projection applied to absent rows too: they hold its bias, not zeros.",
        ("gated/forward/gated_widths_missing", "concat_mlp/forward/concat_mlp_widths_missing"),
    ),
    PlantedBug(
        "input-norm-eps-ignored",
        ALL_RULES,
        InputNormEpsIgnored,
        "input_norm='batch' with epsilon 1e-5 whatever input_norm_eps says.",
        ("gated/forward/gated_non_default", "film/forward/film_non_default_training"),
    ),
    PlantedBug(
        "input-norm-absent-at-mean",
        ALL_RULES,
        InputNormAbsentAtMean,
        "input_norm='batch' with an absent row at the present rows' mean whatever "
        "input_norm_absent says.",
        ("film/forward/film_input_norm_training", "concat_mlp/forward/concat_mlp_input_norm_absent_zero_tokens"),
    ),
    PlantedBug(
        "pool-zeros-absent",
        ALL_RULES,
        PoolZerosAbsent,
        "Each modality's masked mean is zeros for an absent modality, not its fill.",
        ("film/forward/film_input_norm_absent_zero_tokens",),
    ),
    PlantedBug(
        "nan-zeroed",
        ALL_RULES,
        NanZeroed,
        "NaN and inf inputs replaced by 0: the sample's row comes back finite.",
        ("gated/property/nan_rows", "cross_attention/property/nan_rows"),
    ),
    PlantedBug(
        "inputs-clipped",
        ALL_RULES,
        InputsClipped,
        "Inputs clipped to +-1e30: an infinite input's row comes back finite.",
        ("film/property/nan_rows",),
    ),
    PlantedBug(
        "pool-reads-padding",
        ("concat_mlp", "gated", "film", "modality_dropout", "shomr", "energy_aware_adaptive"),
        PoolReadsPadding,
        "Each modality's mean over all L tokens, padding (zeroed) counted in.",
        ("gated/forward/gated_tokens", "shomr/forward/shomr_tokens"),
    ),
    PlantedBug(
        "padding-keys-attended",
        ("simple", "transformer_concat", "cross_attention"),
        PaddingKeysAttended,
        "The attention's key mask forgets the padding: padding tokens are attended to.",
        ("simple/forward/simple_tokens", "cross_attention/forward/cross_attention_tokens"),
    ),
    PlantedBug(
        "padding-zeroed-by-product",
        ALL_RULES,
        PaddingZeroedByProduct,
        "Padding multiplied by its mask instead of selected away: NaN in padding leaks.",
        ("film/forward/film_tokens", "simple/forward/simple_tokens"),
    ),
    PlantedBug(
        "all-padding-stays-present",
        ALL_RULES,
        AllPaddingStaysPresent,
        "A modality whose tokens are all padding is still present (zero tokens, not absent).",
        ("gated/forward/gated_tokens", "energy_aware_adaptive/forward/energy_aware_adaptive_tokens"),
    ),
    PlantedBug(
        "torch-layer-norm-eps-1e-6",
        LAYER_NORM_RULES,
        "fusion_spec.conformance.broken_torch:LayerNormEps1e6",
        "The PyTorch backend's LayerNorm with epsilon 1e-6 (Flax's default): within float32 "
        "tolerance at unit variance.",
        ("simple/forward/simple_tiny", "cross_attention/forward/cross_attention_tiny"),
        requires="torch",
        scope=tuple(f"{r}/forward/*" for r in LAYER_NORM_RULES),
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
