"""The named case catalogue: one seeded ``export_<case>()`` function per case.

Every case fixes a spec, canonical float32 params, float32 inputs ``v`` and
``t``, the mode, the injected noise (float32 values, so a float32 backend reads
exactly what the reference reads) and the call options. Params are the spec's
initial draw plus ``N(0, 0.1^2)`` (``perturbed``): at initialisation attention
biases are 0, LayerNorm is the identity affine and encoder layers are copies of
layer 0, so a backend ignoring any of those would pass a case built from
``spec.init_params`` alone.

Cases are designed so that each known bug is visible:

* non-square dims (``hidden_mult=3``, ``dim=12``) and random, non-symmetric
  square weights catch transposes; ``heads=1`` and ``heads=dim`` catch a wrong
  attention scale or head split;
* ``temperature`` in ``{0.5, 2}`` catches an ignored temperature;
* ``*_categorical_exact_boundary`` uses router probabilities ``(1/2, 1/2, 0)``
  (exact in every IEEE format: logits ``(0, 0, -200)``, ``exp(-200)``
  vanishes next to 2) and noise ``u = 1/2 = cdf_0``, so ``u < cdf`` versus
  ``u <= cdf`` gives different routes with no rounding to blame;
* the energy loss case straddles the budget, so ``relu`` of the batch mean and the
  mean of per-sample ``relu`` differ.

Name = function name without ``export_``; names are unique (a test checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion_spec import spec

#: Batch size of most cases.
BATCH = 6
#: The widths of the width cases: an image encoder wider than dim, a text encoder narrower.
IMAGE_DIM, TEXT_DIM = 12, 6


#: What the common variants are for, when a case has no ``doc`` of its own.
VARIANT_DOCS = {
    "default": "Every spec default but dim (8), input_norm='none' (the rule's per-sample "
    "math, as every case not named for input_norm) and a routing rule's router_init_bias=None.",
    "batch1": "B = 1.",
    "l2": "L2-normalised v and t.",
    "zeros": "v = t = 0: LayerNorm of a constant, zero logits.",
    "large": "Inputs of magnitude 1e3: saturated softmax and gates.",
    "dim12": "dim not a power of two.",
    "heads1": "One head: scale 1/sqrt(dim).",
    "heads_dim": "heads = dim: head size 1.",
    "training": "Training mode, dropout 0, injected noise where declared.",
}


@dataclass(frozen=True)
class Case:
    """One named conformance case.

    ``exact_decisions``: the case's probabilities and noise are exactly
    representable, so decisions are compared exactly even at zero margin.
    ``gradient``: the case is also a gradient case (its decisions sit away from
    every boundary, checked when the finite differences are taken).
    """

    name: str
    spec: Any
    params: dict[str, np.ndarray]
    v: np.ndarray
    t: np.ndarray
    training: bool = False
    noise: dict[str, np.ndarray] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    exact_decisions: bool = False
    gradient: bool = False
    doc: str = ""
    #: ``(B, 2)`` bool presence mask (image, text), or ``None`` (every modality present).
    present: np.ndarray | None = None
    #: The gradient case's loss also holds the spec's differentiable aux outputs
    #: (``AuxSpec.differentiable``, e.g. ``energy_loss``), each times a seeded cotangent.
    aux_gradient: bool = False
    #: ``(B, L_v)`` / ``(B, L_t)`` bool padding masks of token sequences (True: a real
    #: token), or ``None``; ``v`` / ``t`` are ``(B, L, D)`` in the token cases.
    image_mask: np.ndarray | None = None
    text_mask: np.ndarray | None = None

    @property
    def call_masks(self) -> dict[str, np.ndarray]:
        """The masks this case's call passes: ``present``, ``image_mask``, ``text_mask``
        where set."""
        masks = {"present": self.present, "image_mask": self.image_mask, "text_mask": self.text_mask}
        return {k: m for k, m in masks.items() if m is not None}

    @property
    def tokens(self) -> tuple[int, int]:
        """``(L_v, L_t)``: the token counts (1 for a vector input)."""
        return tuple(x.shape[1] if x.ndim == 3 else 1 for x in (self.v, self.t))  # type: ignore[return-value]

    @property
    def masked(self) -> bool:
        """A presence or padding mask is passed: the aux outputs include ``neither``."""
        return self.present is not None or self.image_mask is not None or self.text_mask is not None

    @property
    def rule(self) -> str:
        return self.spec.kind

    @property
    def purpose(self) -> str:
        """``doc``, or the description of the case's variant."""
        if self.doc:
            return self.doc
        variant = self.name[len(self.rule) + 1 :]
        return next((d for v, d in VARIANT_DOCS.items() if variant.startswith(v)), "")


# --- building blocks ------------------------------------------------------------------


def make_spec(kind: str, **fields: Any):
    """``kind`` with ``fields``; everything else the spec's defaults."""
    return spec.parse({"kind": kind, **fields})


def perturbed(s, seed: int, scale: float = 0.1) -> dict[str, np.ndarray]:
    """``spec.init_params(s, seed)`` plus float32 ``N(0, scale^2)`` on every entry."""
    rng = np.random.default_rng(seed + 7919)
    return {
        name: (value + scale * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in spec.init_params(s, seed=seed).items()
    }


#: The stress distributions of ``inputs`` (every rule, with and without missing modalities).
#: ``offset``: N(OFFSET, 1): a one-pass variance ``E[x^2] - E[x]^2`` in float32 loses about
#: ``OFFSET^2 * 6e-8`` of a unit variance, a two-pass one ``OFFSET * 6e-8``.
OFFSET = 300.0
#: ``tiny``: N(0, TINY^2), variance 1e-8, a thousandth of the LayerNorm epsilon 1e-5: where
#: epsilon sits (inside the square root, added to the deviation, ignored) decides the output.
TINY = 1e-4
#: ``huge``: N(0, HUGE^2): saturated gates and softmaxes, squares near float32's range.
HUGE = 1e5
#: ``near_equal``: t = v + NEAR * N(0, 1).
NEAR = 1e-3
#: The stress kinds and what each catches (docs of their cases).
STRESS = {
    "offset": f"Inputs N({OFFSET:g}, 1): a large common offset (a one-pass variance formula "
    "loses the unit spread in float32).",
    "tiny": f"Inputs N(0, {TINY:g}^2): variance a thousandth of the LayerNorm epsilon (where "
    "epsilon enters decides the output).",
    "huge": f"Inputs N(0, {HUGE:g}^2): saturated gates and softmaxes, squares near the float32 range.",
    "near_equal": f"t = v + {NEAR:g} N(0, 1): differences of nearly equal values.",
}


def inputs(
    dim: int, batch: int, seed: int, kind: str = "normal", widths: tuple[int, int] | None = None
) -> tuple[np.ndarray, ...]:
    """``v``, ``t`` ``(batch, dim)`` float32: ``normal``, ``l2`` (unit rows), ``zeros``,
    ``large`` (normal times 1e3), ``opposite`` (``t = -v``, magnitude 1e3) or a ``STRESS``
    kind. ``widths``: ``(D_v, D_t)`` when they differ from ``dim`` (``normal`` only)."""
    rng = np.random.default_rng(seed)
    if widths is not None and widths != (dim, dim):
        if kind != "normal":
            raise ValueError(f"inputs: widths {widths} take kind 'normal'; received {kind!r}")
        v = rng.standard_normal((batch, widths[0]))
        t = rng.standard_normal((batch, widths[1]))
        return v.astype(np.float32), t.astype(np.float32)
    v = rng.standard_normal((batch, dim))
    t = rng.standard_normal((batch, dim))
    if kind == "l2":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
    elif kind == "zeros":
        v, t = np.zeros_like(v), np.zeros_like(t)
    elif kind == "large":
        v, t = 1e3 * v, 1e3 * t
    elif kind == "opposite":
        v = 1e3 * v
        t = -v
    elif kind == "offset":  # a large common offset over a unit spread: ReLU features
        v, t = v + OFFSET, t + OFFSET
    elif kind == "tiny":  # variance far below a LayerNorm's epsilon
        v, t = TINY * v, TINY * t
    elif kind == "huge":
        v, t = HUGE * v, HUGE * t
    elif kind == "near_equal":  # t within 1e-3 of v: differences of nearly equal values
        t = v + NEAR * t
    elif kind != "normal":
        raise ValueError(
            "inputs: kind expected normal/l2/zeros/large/opposite/offset/tiny/huge/near_equal; "
            f"received {kind!r}"
        )
    return v.astype(np.float32), t.astype(np.float32)


def draw_noise(s, batch: int, seed: int, training: bool, **options) -> dict[str, np.ndarray]:
    """The spec's declared noise for this call: float32 uniforms on ``[0, 1)``."""
    rng = np.random.default_rng(seed + 104729)
    out = {}
    for n in s.noise(batch, training=training, **options):
        out[n.name] = np.minimum(rng.uniform(size=n.shape), 0.9999).astype(np.float32)
    return out


def case(
    name: str,
    kind: str,
    *,
    seed: int,
    batch: int = BATCH,
    data: str = "normal",
    training: bool = False,
    options: dict | None = None,
    noise: dict | None = None,
    edit: Callable[[Any, dict], None] | None = None,
    edit_inputs: Callable[[np.ndarray, np.ndarray], None] | None = None,
    exact_decisions: bool = False,
    gradient: bool = False,
    doc: str = "",
    present: np.ndarray | None = None,
    aux_gradient: bool = False,
    tokens: tuple[np.ndarray | int, np.ndarray | int] | None = None,
    **fields: Any,
) -> Case:
    """Assemble a case; ``edit(s, params)`` may overwrite params in place (route forcing),
    ``edit_inputs(v, t)`` the float32 inputs.

    With ``present``, the absent rows of ``v`` hold NaN and those of ``t`` ``1e30``:
    their content must not matter. ``tokens``: per modality a token count ``L`` (no
    padding mask) or a ``(B, L)`` padding mask; ``v``, ``t`` are then ``(B, L, D)``, and
    their padding tokens hold NaN and ``1e30`` too.
    """
    if training and "dropout" in spec.RULES[kind].model_fields:
        fields.setdefault("dropout", 0.0)
    if "router_init_bias" in spec.RULES[kind].model_fields:
        # the router bias drawn as the original's (uniform): the decisions of the routing
        # cases sit where they were designed; *_router_init_bias cases take the default
        fields.setdefault("router_init_bias", None)
    # the rule's per-sample math, on which the cases' inputs, decisions and stresses were
    # designed; the *_input_norm*, *_non_default* and *_spec_defaults* cases take "batch"
    fields.setdefault("input_norm", "none")
    s = make_spec(kind, **fields)
    params = perturbed(s, seed)
    if edit is not None:
        edit(s, params)
    masks = (None, None)
    if tokens is not None:
        masks = tuple(None if np.ndim(x) == 0 else np.asarray(x, dtype=bool) for x in tokens)
        lengths = [int(x) if np.ndim(x) == 0 else np.shape(x)[1] for x in tokens]
        rng = np.random.default_rng(seed)
        v, t = (
            rng.standard_normal((batch, n, s.width(m))).astype(np.float32)
            for n, m in zip(lengths, ("image", "text"), strict=True)
        )
        if masks[0] is not None:
            v[~masks[0]] = np.nan
        if masks[1] is not None:
            t[~masks[1]] = np.float32(1e30)
    else:
        v, t = inputs(s.dim, batch, seed, data, (s.width("image"), s.width("text")))
    if edit_inputs is not None:
        edit_inputs(v, t)
    if present is not None:
        present = np.asarray(present, dtype=bool)
        v[~present[:, 0]] = np.nan
        t[~present[:, 1]] = np.float32(1e30)
    options = dict(options or {})
    if noise is None:
        noise = draw_noise(s, batch, seed, training, **options)
    noise = {k: np.asarray(u, dtype=np.float32) for k, u in noise.items()}
    return Case(
        name,
        s,
        params,
        v,
        t,
        training,
        noise or None,
        options,
        exact_decisions,
        gradient,
        doc,
        present,
        aux_gradient,
        *masks,
    )


def route_logits(prefix: str, logits: tuple[float, ...]) -> Callable[[Any, dict], None]:
    """An ``edit`` that makes ``{prefix}.out`` ignore its input: weight 0, bias ``logits``."""

    def edit(s, params):
        w = params[f"{prefix}.out.weight"]
        params[f"{prefix}.out.weight"] = np.zeros_like(w)
        params[f"{prefix}.out.bias"] = np.asarray(logits, dtype=np.float32)

    return edit


def favour(prefix: str, k: int) -> Callable[[Any, dict], None]:
    """An ``edit`` that adds 8 to logit ``k`` of ``{prefix}.out``: route ``k`` by a wide margin."""

    def edit(s, params):
        params[f"{prefix}.out.bias"] = params[f"{prefix}.out.bias"].copy()
        params[f"{prefix}.out.bias"][k] += 8.0

    return edit


def confidence_from_v0(scale: float = 1.0) -> Callable[[Any, dict], None]:
    """An ``edit`` making ``shomr``'s confidence logits ``(scale * GELU(v[:, 0]), 0)``.

    Hidden unit 0 of the confidence MLP reads ``v[:, 0]`` alone; the output layer
    reads hidden unit 0 alone, with zero biases. A sample with ``v[:, 0] = 0``
    has logits ``(0, 0)`` exactly (every other term is a product with 0) and so
    confidence ``(1/2, 1/2)`` exactly, in every IEEE format; any other ``v[:, 0]``
    sets ``max(c) = sigmoid(scale * GELU(v[:, 0]))``.
    """

    def edit(s, params):
        hidden_w = params["confidence.hidden.weight"].copy()
        hidden_w[0] = 0.0
        hidden_w[0, 0] = 1.0
        hidden_b = params["confidence.hidden.bias"].copy()
        hidden_b[0] = 0.0
        out_w = np.zeros_like(params["confidence.out.weight"])
        out_w[0, 0] = scale
        params["confidence.hidden.weight"] = hidden_w
        params["confidence.hidden.bias"] = hidden_b
        params["confidence.out.weight"] = out_w
        params["confidence.out.bias"] = np.zeros_like(params["confidence.out.bias"])

    return edit


def first_feature(values) -> Callable[[np.ndarray, np.ndarray], None]:
    """An ``edit_inputs`` setting ``v[:, 0]`` to ``values`` (float32-exact literals)."""

    def edit(v, t):
        v[:, 0] = np.asarray(values, dtype=np.float32)

    return edit


#: ``v[:, 0]`` under ``confidence_from_v0(1)``: max confidence 0.537, 0.653, 0.586, 0.802,
#: 0.5, 0.676 (soft, hard, soft, hard, soft, hard at threshold 0.6).
MIXED_CONFIDENCE = (0.25, 0.8, 0.5, 1.5, 0.0, 0.9)

#: The spec's default router_init_bias (the catalogue's other cases use None).
DEFAULT_ROUTER_BIAS = spec.RULES["shomr"].model_fields["router_init_bias"].default

#: Router probabilities (1/2, 1/2, 0), exact in every IEEE format.
HALF_HALF_ZERO = (0.0, 0.0, -200.0)
#: Noise on and around the boundary cdf_0 = 1/2 of HALF_HALF_ZERO, all exact in float32.
BOUNDARY_NOISE = np.array([0.5, 0.0, 0.25, 0.75, 0.5, 0.9375], dtype=np.float32)


# --- simple --------------------------------------------------------------------------


def export_simple_default():
    return case("simple_default", "simple", seed=1, dim=8)


def export_simple_batch1():
    return case("simple_batch1", "simple", seed=2, batch=1, dim=8)


def export_simple_l2():
    return case("simple_l2", "simple", seed=3, data="l2", dim=8)


def export_simple_zeros():
    return case("simple_zeros", "simple", seed=4, data="zeros", dim=8)


def export_simple_large():
    return case("simple_large", "simple", seed=5, data="large", dim=8)


def export_simple_heads1():
    return case("simple_heads1", "simple", seed=6, dim=8, heads=1, layers=1, gradient=True)


def export_simple_heads_dim():
    return case("simple_heads_dim", "simple", seed=7, dim=12, heads=12, layers=2)


def export_simple_dim12_layers3():
    return case("simple_dim12_layers3", "simple", seed=8, dim=12, heads=3, layers=3)


def export_simple_training():
    return case("simple_training", "simple", seed=9, training=True, dim=8, heads=2, gradient=True)


# --- concat_mlp ----------------------------------------------------------------------


def export_concat_mlp_default():
    return case("concat_mlp_default", "concat_mlp", seed=11, dim=8)


def export_concat_mlp_batch1():
    return case("concat_mlp_batch1", "concat_mlp", seed=12, batch=1, dim=8)


def export_concat_mlp_l2():
    return case("concat_mlp_l2", "concat_mlp", seed=13, data="l2", dim=8)


def export_concat_mlp_zeros():
    return case("concat_mlp_zeros", "concat_mlp", seed=14, data="zeros", dim=8)


def export_concat_mlp_large():
    return case("concat_mlp_large", "concat_mlp", seed=15, data="large", dim=8)


def export_concat_mlp_hidden3_dim12():
    return case(
        "concat_mlp_hidden3_dim12", "concat_mlp", seed=16, dim=12, hidden_mult=3, gradient=True
    )


def export_concat_mlp_layers1():
    return case("concat_mlp_layers1", "concat_mlp", seed=17, dim=8, layers=1)


def export_concat_mlp_layers3():
    return case("concat_mlp_layers3", "concat_mlp", seed=18, dim=8, layers=3, hidden_mult=3)


def export_concat_mlp_training():
    return case("concat_mlp_training", "concat_mlp", seed=19, training=True, dim=8)


# --- gated ---------------------------------------------------------------------------


def export_gated_default():
    return case("gated_default", "gated", seed=21, dim=16, gradient=True)


def export_gated_batch1():
    return case("gated_batch1", "gated", seed=22, batch=1, dim=8)


def export_gated_l2():
    return case("gated_l2", "gated", seed=23, data="l2", dim=8)


def export_gated_zeros():
    return case("gated_zeros", "gated", seed=24, data="zeros", dim=8)


def export_gated_large():
    return case("gated_large", "gated", seed=25, data="large", dim=8)


def export_gated_opposite():
    return case(
        "gated_opposite",
        "gated",
        seed=26,
        data="opposite",
        dim=8,
        doc="t = -v with |v| ~ 1e3: outputs near 0 from terms near 1e3 (cancellation).",
    )


def export_gated_dim12():
    return case("gated_dim12", "gated", seed=27, dim=12)


def export_gated_training():
    return case("gated_training", "gated", seed=28, training=True, dim=8)


# --- film ----------------------------------------------------------------------------


def export_film_default():
    return case("film_default", "film", seed=31, dim=16, gradient=True)


def export_film_batch1():
    return case("film_batch1", "film", seed=32, batch=1, dim=8)


def export_film_l2():
    return case("film_l2", "film", seed=33, data="l2", dim=8)


def export_film_zeros():
    return case("film_zeros", "film", seed=34, data="zeros", dim=8)


def export_film_large():
    return case("film_large", "film", seed=35, data="large", dim=8)


def export_film_dim12():
    return case("film_dim12", "film", seed=36, dim=12)


def export_film_training():
    return case("film_training", "film", seed=37, training=True, dim=8)


# --- modality_dropout ----------------------------------------------------------------


def export_modality_dropout_default():
    return case("modality_dropout_default", "modality_dropout", seed=41, dim=8)


def export_modality_dropout_batch1():
    return case("modality_dropout_batch1", "modality_dropout", seed=42, batch=1, dim=8)


def export_modality_dropout_l2():
    return case("modality_dropout_l2", "modality_dropout", seed=43, data="l2", dim=8)


def export_modality_dropout_zeros():
    return case("modality_dropout_zeros", "modality_dropout", seed=44, data="zeros", dim=8)


def export_modality_dropout_large():
    return case("modality_dropout_large", "modality_dropout", seed=45, data="large", dim=8)


def export_modality_dropout_training_keep():
    noise = {"drop_image": [0.8], "drop_text": [0.6]}
    return case(
        "modality_dropout_training_keep",
        "modality_dropout",
        seed=46,
        training=True,
        noise=noise,
        dim=8,
        gradient=True,
    )


def export_modality_dropout_training_drop_image():
    noise = {"drop_image": [0.1], "drop_text": [0.9]}
    return case(
        "modality_dropout_training_drop_image",
        "modality_dropout",
        seed=47,
        training=True,
        noise=noise,
        dim=8,
        gradient=True,
    )


def export_modality_dropout_training_drop_both():
    noise = {"drop_image": [0.05], "drop_text": [0.25]}
    return case(
        "modality_dropout_training_drop_both",
        "modality_dropout",
        seed=48,
        training=True,
        noise=noise,
        dim=8,
    )


def export_modality_dropout_training_exact_threshold():
    noise = {"drop_image": [0.5], "drop_text": [0.4375]}
    return case(
        "modality_dropout_training_exact_threshold",
        "modality_dropout",
        seed=49,
        training=True,
        noise=noise,
        dim=8,
        p_img=0.5,
        p_txt=0.4375,
        exact_decisions=True,
        doc="u == p exactly (both float32): kept, since a modality drops only where u < p.",
    )


def export_modality_dropout_training_per_sample():
    noise = {
        "drop_image": [0.1, 0.5, 0.2, 0.9, 0.35, 0.75],
        "drop_text": [0.6, 0.15, 0.05, 0.7, 0.95, 0.4],
    }
    return case(
        "modality_dropout_training_per_sample",
        "modality_dropout",
        seed=50,
        training=True,
        noise=noise,
        dim=8,
        drop_granularity="sample",
        gradient=True,
    )


def export_modality_dropout_training_extremes():
    noise = {"drop_image": [0.9999], "drop_text": [0.0]}
    return case(
        "modality_dropout_training_extremes",
        "modality_dropout",
        seed=51,
        training=True,
        noise=noise,
        dim=8,
        p_img=1.0,
        p_txt=0.0,
        doc="p_img = 1 drops v for every u < 1; p_txt = 0 keeps t even at u = 0.",
    )


# --- transformer_concat --------------------------------------------------------------


def export_transformer_concat_default():
    return case("transformer_concat_default", "transformer_concat", seed=61, dim=8)


def export_transformer_concat_batch1():
    return case("transformer_concat_batch1", "transformer_concat", seed=62, batch=1, dim=8)


def export_transformer_concat_l2():
    return case("transformer_concat_l2", "transformer_concat", seed=63, data="l2", dim=8)


def export_transformer_concat_zeros():
    return case("transformer_concat_zeros", "transformer_concat", seed=64, data="zeros", dim=8)


def export_transformer_concat_large():
    return case("transformer_concat_large", "transformer_concat", seed=65, data="large", dim=8)


def export_transformer_concat_no_modality_embeddings():
    return case(
        "transformer_concat_no_modality_embeddings",
        "transformer_concat",
        seed=66,
        dim=8,
        heads=2,
        layers=2,
        modality_embeddings=False,
        gradient=True,
    )


def export_transformer_concat_heads1():
    return case(
        "transformer_concat_heads1",
        "transformer_concat",
        seed=67,
        dim=8,
        heads=1,
        layers=1,
        gradient=True,
    )


def export_transformer_concat_heads_dim():
    return case(
        "transformer_concat_heads_dim", "transformer_concat", seed=68, dim=12, heads=12, layers=2
    )


def export_transformer_concat_training():
    return case(
        "transformer_concat_training",
        "transformer_concat",
        seed=69,
        training=True,
        dim=12,
        heads=3,
        layers=2,
    )


# --- cross_attention -----------------------------------------------------------------


def export_cross_attention_default():
    return case("cross_attention_default", "cross_attention", seed=71, dim=8)


def export_cross_attention_batch1():
    return case("cross_attention_batch1", "cross_attention", seed=72, batch=1, dim=8)


def export_cross_attention_l2():
    return case("cross_attention_l2", "cross_attention", seed=73, data="l2", dim=8)


def export_cross_attention_zeros():
    return case("cross_attention_zeros", "cross_attention", seed=74, data="zeros", dim=8)


def export_cross_attention_large():
    return case("cross_attention_large", "cross_attention", seed=75, data="large", dim=8)


def export_cross_attention_heads1():
    return case("cross_attention_heads1", "cross_attention", seed=76, dim=8, heads=1, gradient=True)


def export_cross_attention_heads_dim():
    return case("cross_attention_heads_dim", "cross_attention", seed=77, dim=12, heads=12)


def export_cross_attention_dim12():
    return case("cross_attention_dim12", "cross_attention", seed=78, dim=12, heads=3)


def export_cross_attention_training():
    return case(
        "cross_attention_training", "cross_attention", seed=79, training=True, dim=8, heads=2
    )


# --- shomr ---------------------------------------------------------------------------


def export_shomr_default():
    return case("shomr_default", "shomr", seed=81, dim=8, router_init_bias=DEFAULT_ROUTER_BIAS)


def export_shomr_batch1():
    return case("shomr_batch1", "shomr", seed=82, batch=1, dim=8)


def export_shomr_l2():
    return case("shomr_l2", "shomr", seed=83, data="l2", dim=8)


def export_shomr_zeros():
    return case("shomr_zeros", "shomr", seed=84, data="zeros", dim=8)


def export_shomr_large():
    return case("shomr_large", "shomr", seed=85, data="large", dim=8)


def export_shomr_forced_soft():
    return case(
        "shomr_forced_soft",
        "shomr",
        seed=86,
        dim=8,
        heads=2,
        options={"use_hard_routing": False},
        gradient=True,
    )


def export_shomr_forced_hard():
    return case(
        "shomr_forced_hard", "shomr", seed=87, dim=8, heads=2, options={"use_hard_routing": True}
    )


def _shomr_route(name: str, k: int, seed: int) -> Case:
    return case(
        name,
        "shomr",
        seed=seed,
        dim=8,
        heads=2,
        options={"use_hard_routing": True},
        edit=favour("router", k),
        gradient=True,
    )


def export_shomr_route_image():
    return _shomr_route("shomr_route_image", 0, 88)


def export_shomr_route_text():
    return _shomr_route("shomr_route_text", 1, 89)


def export_shomr_route_both():
    return _shomr_route("shomr_route_both", 2, 90)


def export_shomr_automatic_mixed():
    return case(
        "shomr_automatic_mixed",
        "shomr",
        seed=91,
        dim=8,
        heads=2,
        confidence_threshold=0.58,
        doc="Automatic routing with the threshold inside the spread of max confidence.",
    )


def export_shomr_temperature_half():
    return case(
        "shomr_temperature_half",
        "shomr",
        seed=92,
        dim=8,
        heads=2,
        routing_temperature=0.5,
        options={"use_hard_routing": True},
    )


def export_shomr_temperature_2():
    return case(
        "shomr_temperature_2",
        "shomr",
        seed=93,
        dim=8,
        heads=2,
        routing_temperature=2.0,
        options={"use_hard_routing": True},
    )


def export_shomr_training():
    return case(
        "shomr_training",
        "shomr",
        seed=94,
        training=True,
        dim=8,
        heads=2,
        options={"use_hard_routing": True},
        gradient=True,
    )


def export_shomr_training_temperature_2():
    return case(
        "shomr_training_temperature_2",
        "shomr",
        seed=95,
        training=True,
        dim=8,
        heads=2,
        routing_temperature=2.0,
        options={"use_hard_routing": True},
        edit=route_logits("router", (math.log(0.2), math.log(0.3), math.log(0.5))),
        noise={"route": np.array([0.1, 0.24, 0.3, 0.55, 0.7, 0.95])},
        doc="Probabilities (0.2, 0.3, 0.5) at T=1 become (0.26, 0.32, 0.42) at T=2.",
    )


def export_shomr_training_automatic():
    return case(
        "shomr_training_automatic",
        "shomr",
        seed=96,
        training=True,
        dim=8,
        heads=2,
        confidence_threshold=0.58,
    )


def export_shomr_straight_through():
    return case(
        "shomr_straight_through",
        "shomr",
        seed=97,
        training=True,
        dim=8,
        heads=2,
        straight_through=True,
        options={"use_hard_routing": True},
        gradient=True,
    )


def export_shomr_no_fallback():
    return case(
        "shomr_no_fallback",
        "shomr",
        seed=98,
        dim=8,
        heads=2,
        fallback=False,
        fallback_threshold=0.9,
        options={"use_hard_routing": False},
        gradient=True,
    )


def export_shomr_fallback_fires():
    return case(
        "shomr_fallback_fires",
        "shomr",
        seed=99,
        dim=8,
        heads=2,
        fallback_threshold=0.56,
        options={"use_hard_routing": False},
        doc="Soft samples with max confidence < 0.56 output (v + t) / 2.",
    )


def export_shomr_threshold_zero():
    return case("shomr_threshold_zero", "shomr", seed=100, dim=8, heads=2, confidence_threshold=0.0)


def export_shomr_categorical_exact_boundary():
    return case(
        "shomr_categorical_exact_boundary",
        "shomr",
        seed=101,
        training=True,
        dim=8,
        heads=2,
        options={"use_hard_routing": True},
        edit=route_logits("router", HALF_HALF_ZERO),
        noise={"route": BOUNDARY_NOISE},
        exact_decisions=True,
        doc="r = (1/2, 1/2, 0) exactly; u = 1/2 = cdf_0 takes route 1 (u < cdf_1), not 0.",
    )


def export_shomr_argmax_tie():
    return case(
        "shomr_argmax_tie",
        "shomr",
        seed=102,
        dim=8,
        heads=2,
        options={"use_hard_routing": True},
        edit=route_logits("router", HALF_HALF_ZERO),
        exact_decisions=True,
        doc="r = (1/2, 1/2, 0) exactly: argmax ties go to the first index, route 0.",
    )


def export_shomr_hard_exact_boundary():
    return case(
        "shomr_hard_exact_boundary",
        "shomr",
        seed=104,
        dim=8,
        heads=2,
        confidence_threshold=0.5,
        edit=confidence_from_v0(),
        edit_inputs=first_feature([0.0, 1.5, 0.0, 2.0, 0.0, 1.0]),
        exact_decisions=True,
        doc="max(c) = 1/2 = confidence_threshold exactly on samples 0, 2, 4: soft "
        "(hard only where max(c) > threshold); the others are hard.",
    )


def export_shomr_fallback_exact_boundary():
    return case(
        "shomr_fallback_exact_boundary",
        "shomr",
        seed=105,
        dim=8,
        heads=2,
        confidence_threshold=0.9,
        fallback_threshold=0.5,
        edit=confidence_from_v0(),
        edit_inputs=first_feature([0.0, 0.5, 0.0, 1.0, 0.0, 0.25]),
        exact_decisions=True,
        doc="Soft samples with max(c) = 1/2 = fallback_threshold exactly: no fallback "
        "(it fires only where max(c) < threshold).",
    )


def export_shomr_fallback_mixed():
    return case(
        "shomr_fallback_mixed",
        "shomr",
        seed=106,
        dim=8,
        heads=2,
        confidence_threshold=0.6,
        fallback_threshold=0.7,
        edit=confidence_from_v0(),
        edit_inputs=first_feature(MIXED_CONFIDENCE),
        gradient=True,
        doc="fallback_threshold 0.7 > 1/2: the fallback fires on the soft samples; hard "
        "samples with max(c) in (0.6, 0.7) keep their routed output.",
    )


def _shomr_straight_through(
    name: str,
    seed: int,
    use_hard_routing,
    doc: str,
    straight_through: bool = True,
    straight_through_routes: str = "all",
) -> Case:
    return case(
        name,
        "shomr",
        seed=seed,
        training=True,
        dim=8,
        heads=2,
        straight_through=straight_through,
        straight_through_routes=straight_through_routes,
        confidence_threshold=0.6,
        options={"use_hard_routing": use_hard_routing},
        edit=confidence_from_v0(),
        edit_inputs=first_feature(MIXED_CONFIDENCE),
        gradient=True,
        doc=doc,
    )


def export_shomr_straight_through_automatic():
    return _shomr_straight_through(
        "shomr_straight_through_automatic",
        107,
        None,
        "Automatic routing, hard and soft samples: only the hard ones carry the "
        "straight-through term (every route's output: straight_through_routes='all').",
    )


def export_shomr_straight_through_soft():
    return _shomr_straight_through(
        "shomr_straight_through_soft",
        108,
        False,
        "Every sample soft: straight_through changes nothing, the router gets no gradient.",
    )


def export_shomr_no_straight_through_hard():
    return _shomr_straight_through(
        "shomr_no_straight_through_hard",
        109,
        True,
        "straight_through=False (the original's behaviour), every sample hard: the router "
        "gets no gradient.",
        straight_through=False,
    )


def export_shomr_no_straight_through_automatic():
    return _shomr_straight_through(
        "shomr_no_straight_through_automatic",
        110,
        None,
        "straight_through=False, automatic routing with hard and soft samples.",
        straight_through=False,
    )


def export_shomr_no_straight_through_soft():
    return _shomr_straight_through(
        "shomr_no_straight_through_soft",
        111,
        False,
        "straight_through=False, every sample soft.",
        straight_through=False,
    )


def export_shomr_straight_through_chosen_hard():
    return _shomr_straight_through(
        "shomr_straight_through_chosen_hard",
        97,
        True,
        "straight_through_routes='chosen', every sample hard: the routed output times "
        "1 + r_k - sg(r_k), the router's gradient from the chosen route alone.",
        straight_through_routes="chosen",
    )


def export_shomr_straight_through_chosen_automatic():
    return _shomr_straight_through(
        "shomr_straight_through_chosen_automatic",
        107,
        None,
        "straight_through_routes='chosen' (the inputs and weights of "
        "shomr_straight_through_automatic): only the hard samples carry the factor.",
        straight_through_routes="chosen",
    )


def export_shomr_straight_through_chosen_soft():
    return _shomr_straight_through(
        "shomr_straight_through_chosen_soft",
        108,
        False,
        "straight_through_routes='chosen', every sample soft: the router gets no gradient.",
        straight_through_routes="chosen",
    )


def export_shomr_straight_through_missing():
    return case(
        "shomr_straight_through_missing",
        "shomr",
        seed=112,
        training=True,
        dim=8,
        heads=2,
        options={"use_hard_routing": True},
        present=PRESENT,
        gradient=True,
        doc="Every route's output in the router's gradient, with samples of one modality "
        "(their forced route's one-hot gives the router no gradient) beside complete ones.",
    )


def export_shomr_dim12():
    return case("shomr_dim12", "shomr", seed=103, dim=12, heads=3)


# --- energy_aware_adaptive -----------------------------------------------------------


def export_energy_aware_adaptive_default():
    return case(
        "energy_aware_adaptive_default",
        "energy_aware_adaptive",
        seed=111,
        dim=8,
        router_init_bias=DEFAULT_ROUTER_BIAS,
    )


def export_energy_aware_adaptive_batch1():
    return case("energy_aware_adaptive_batch1", "energy_aware_adaptive", seed=112, batch=1, dim=8)


def export_energy_aware_adaptive_l2():
    return case("energy_aware_adaptive_l2", "energy_aware_adaptive", seed=113, data="l2", dim=8)


def export_energy_aware_adaptive_zeros():
    return case(
        "energy_aware_adaptive_zeros", "energy_aware_adaptive", seed=114, data="zeros", dim=8
    )


def export_energy_aware_adaptive_large():
    return case(
        "energy_aware_adaptive_large", "energy_aware_adaptive", seed=115, data="large", dim=8
    )


def _eaa_route(name: str, k: int, seed: int) -> Case:
    return case(
        name,
        "energy_aware_adaptive",
        seed=seed,
        dim=8,
        heads=2,
        edit=favour("router", k),
        gradient=k == 2,
    )


def export_energy_aware_adaptive_route_image():
    return _eaa_route("energy_aware_adaptive_route_image", 0, 116)


def export_energy_aware_adaptive_route_text():
    return _eaa_route("energy_aware_adaptive_route_text", 1, 117)


def export_energy_aware_adaptive_route_both():
    return _eaa_route("energy_aware_adaptive_route_both", 2, 118)


def export_energy_aware_adaptive_eval_sample():
    return case(
        "energy_aware_adaptive_eval_sample",
        "energy_aware_adaptive",
        seed=119,
        dim=8,
        heads=2,
        eval_routing="sample",
        doc="The original's stochastic eval: the route is drawn from noise in eval too.",
        gradient=True,
    )


def export_energy_aware_adaptive_training():
    return case(
        "energy_aware_adaptive_training",
        "energy_aware_adaptive",
        seed=120,
        training=True,
        dim=8,
        heads=2,
        gradient=True,
    )


def export_energy_aware_adaptive_output_drop():
    flags = np.array([[0.9, 0.7], [0.2, 0.8], [0.6, 0.45], [0.1, 0.3], [0.75, 0.55], [0.99, 0.0]])
    return case(
        "energy_aware_adaptive_output_drop",
        "energy_aware_adaptive",
        seed=121,
        training=True,
        dim=8,
        heads=2,
        options={"progress": 0.5},
        noise={
            "route": np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2]),
            "output_drop_gate": np.array([0.2]),
            "output_drop_flags": flags,
        },
        doc="p(0.5) = min(0.4, 0.1 + 0.15) = 0.25 > gate 0.2: flagged samples are zeroed.",
    )


def export_energy_aware_adaptive_output_drop_inactive():
    return case(
        "energy_aware_adaptive_output_drop_inactive",
        "energy_aware_adaptive",
        seed=122,
        training=True,
        dim=8,
        heads=2,
        options={"progress": 1.0},
        noise={
            "route": np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2]),
            "output_drop_gate": np.array([0.45]),
            "output_drop_flags": np.full((6, 2), 0.1),
        },
        doc="p(1.0) = 0.4 (capped) < gate 0.45: nothing dropped although every flag is set.",
    )


def export_energy_aware_adaptive_energy_budget_split():
    return case(
        "energy_aware_adaptive_energy_budget_split",
        "energy_aware_adaptive",
        seed=123,
        dim=8,
        heads=2,
        energy_budget_mJ=6.0,
        energy_weight=1.0,
        energy_costs_mJ=(1.0, 5.0, 10.0),
        doc="Per-sample expected energy on both sides of the budget: relu(mean) != mean(relu).",
    )


def export_energy_aware_adaptive_trainable_weight():
    return case(
        "energy_aware_adaptive_trainable_weight",
        "energy_aware_adaptive",
        seed=124,
        dim=8,
        heads=2,
        energy_budget_mJ=4.0,
        energy_weight_trainable=True,
        energy_weight=0.5,
        gradient=True,
    )


def _eaa_straight_through(name: str, seed: int, training: bool, doc: str = "", **fields):
    """``energy_aware_adaptive`` with straight-through, a gradient case (``fields``: the
    estimator's form); the eval and training pairs of each form share inputs and weights."""
    return case(
        name,
        "energy_aware_adaptive",
        seed=seed,
        training=training,
        dim=8,
        heads=2,
        straight_through=True,
        gradient=True,
        doc=doc,
        **fields,
    )


def export_energy_aware_adaptive_straight_through():
    return _eaa_straight_through("energy_aware_adaptive_straight_through", 125, True)


def export_energy_aware_adaptive_straight_through_chosen():
    return _eaa_straight_through(
        "energy_aware_adaptive_straight_through_chosen",
        125,
        True,
        "straight_through_routes='chosen': the routed output times "
        "1 + r_k - sg(r_k), the router's gradient from the chosen route alone "
        "(the inputs and weights of energy_aware_adaptive_straight_through).",
        straight_through_routes="chosen",
    )


def export_energy_aware_adaptive_straight_through_chosen_eval():
    return _eaa_straight_through(
        "energy_aware_adaptive_straight_through_chosen_eval",
        134,
        False,
        "Eval (argmax route) with the chosen route's straight-through factor.",
        straight_through_routes="chosen",
    )


def export_energy_aware_adaptive_no_straight_through():
    return case(
        "energy_aware_adaptive_no_straight_through",
        "energy_aware_adaptive",
        seed=126,
        training=True,
        dim=8,
        heads=2,
        straight_through=False,
        gradient=True,
        doc="straight_through=False (the original's behaviour): the router gets gradient "
        "from the energy term only.",
    )


def export_energy_aware_adaptive_categorical_exact_boundary():
    return case(
        "energy_aware_adaptive_categorical_exact_boundary",
        "energy_aware_adaptive",
        seed=126,
        training=True,
        dim=8,
        heads=2,
        edit=route_logits("router", HALF_HALF_ZERO),
        noise={"route": BOUNDARY_NOISE},
        exact_decisions=True,
        doc="r = (1/2, 1/2, 0) exactly; u = 1/2 = cdf_0 takes route 1 (u < cdf_1), not 0.",
    )


#: Output-drop fields with exact binary fractions: p(progress) = min(1/2, 1/8 + progress / 4).
EXACT_DROP = {"output_drop_start": 0.125, "output_drop_ramp": 0.25, "output_drop_max": 0.5}
#: Per-sample flags: samples 0, 2, 3 flagged (a flag < 1/2), samples 1, 4, 5 not.
DROP_FLAGS = np.array(
    [
        [0.25, 0.75],
        [0.625, 0.875],
        [0.75, 0.0625],
        [0.375, 0.125],
        [0.5625, 0.9375],
        [0.8125, 0.6875],
    ]
)
#: Route noise away from every cumulative boundary of these cases.
ROUTE_NOISE = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2])


def _output_drop(
    name, seed, progress, gate, doc, flags=DROP_FLAGS, exact=False, gradient=False, **fields
):
    return case(
        name,
        "energy_aware_adaptive",
        seed=seed,
        training=True,
        dim=8,
        heads=2,
        options={"progress": progress},
        noise={
            "route": ROUTE_NOISE,
            "output_drop_gate": np.array([gate]),
            "output_drop_flags": flags,
        },
        exact_decisions=exact,
        gradient=gradient,
        doc=doc,
        **{**EXACT_DROP, **fields},
    )


def export_energy_aware_adaptive_output_drop_gate_exact_boundary():
    return _output_drop(
        "energy_aware_adaptive_output_drop_gate_exact_boundary",
        128,
        0.5,
        0.25,
        "p(1/2) = 1/8 + 1/8 = 1/4 = gate noise exactly: inactive (active only where u < p).",
        exact=True,
    )


def export_energy_aware_adaptive_output_drop_flag_exact_boundary():
    flags = np.array(
        [[0.5, 0.75], [0.5, 0.25], [0.875, 0.5], [0.5, 0.5], [0.125, 0.5], [0.625, 0.5]]
    )
    return _output_drop(
        "energy_aware_adaptive_output_drop_flag_exact_boundary",
        129,
        0.5,
        0.0625,
        "Active gate; flags = 1/2 = output_drop_flag_p exactly are not set (set only where "
        "u < p): samples 1 and 4 drop, the rest are kept.",
        flags=flags,
        exact=True,
    )


def export_energy_aware_adaptive_output_drop_progress_zero():
    return _output_drop(
        "energy_aware_adaptive_output_drop_progress_zero",
        130,
        0.0,
        0.25,
        "p(0) = start = 1/8 < gate 1/4: inactive; a reversed ramp (start + ramp) would drop.",
    )


def export_energy_aware_adaptive_output_drop_ramp():
    return _output_drop(
        "energy_aware_adaptive_output_drop_ramp",
        131,
        0.75,
        0.25,
        "p(3/4) = 1/8 + 3/16 = 5/16 > gate 1/4: active; reversed, 3/16 would not be.",
        gradient=True,
    )


def export_energy_aware_adaptive_output_drop_cap():
    return _output_drop(
        "energy_aware_adaptive_output_drop_cap",
        132,
        0.75,
        0.375,
        "The cap binds: min(1/4, 1/8 + 1/2 * 3/4) = 1/4 < gate 3/8: inactive; uncapped "
        "(1/2) it would drop.",
        output_drop_ramp=0.5,
        output_drop_max=0.25,
    )


def export_energy_aware_adaptive_argmax_tie():
    return case(
        "energy_aware_adaptive_argmax_tie",
        "energy_aware_adaptive",
        seed=133,
        dim=8,
        heads=2,
        edit=route_logits("router", HALF_HALF_ZERO),
        exact_decisions=True,
        doc="Eval, r = (1/2, 1/2, 0) exactly: argmax ties go to the first index, route 0.",
    )


def export_energy_aware_adaptive_straight_through_eval():
    return _eaa_straight_through(
        "energy_aware_adaptive_straight_through_eval",
        134,
        False,
        "Eval (argmax route) with the straight-through factor.",
    )


def export_energy_aware_adaptive_dim12():
    return case("energy_aware_adaptive_dim12", "energy_aware_adaptive", seed=127, dim=12, heads=3)


# --- missing modalities ----------------------------------------------------------------

#: Every presence pattern in one batch: both, image only, text only, neither, image, text.
PRESENT = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [1, 0], [0, 1]], dtype=bool)

#: Per rule: the fields of its missing-modality cases (small, every path reachable).
_MISSING_FIELDS: dict[str, dict[str, Any]] = {
    "simple": {"dim": 8, "heads": 2, "layers": 1},
    "concat_mlp": {"dim": 8, "hidden_mult": 3},
    "gated": {"dim": 8},
    "film": {"dim": 8},
    "modality_dropout": {"dim": 8, "drop_granularity": "sample"},
    "transformer_concat": {"dim": 8, "heads": 2, "layers": 1},
    "cross_attention": {"dim": 8, "heads": 2},
    "shomr": {"dim": 8, "heads": 2},
    "energy_aware_adaptive": {"dim": 8, "heads": 2},
}


def _missing_name(kind: str, value: str, training: bool) -> str:
    default = spec.RULES[kind].model_fields["missing_modality"].default
    name = f"{kind}_missing" + ("" if value == default else f"_{value}")
    return name + ("_training" if training else "")


def _missing(kind: str, value: str, seed: int, *, training: bool = False) -> Case:
    name = _missing_name(kind, value, training)
    options = {"use_hard_routing": False} if kind == "shomr" else {}
    noise = None
    if training and kind == "modality_dropout":
        # drops on present and on absent samples ('drop': both compose to "dropped";
        # 'zero_fill': the draws alone decide)
        noise = {"drop_image": [0.9, 0.1, 0.8, 0.2, 0.7, 0.6], "drop_text": [0.1, 0.9, 0.8, 0.7, 0.2, 0.6]}
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        present=PRESENT,
        options=options,
        noise=noise,
        gradient=True,
        doc=(
            f"missing_modality={value!r}: every presence pattern in one batch (both, image "
            "only, text only, neither); NaN and 1e30 in the absent rows."
            + (" shomr with use_hard_routing=False: lone modalities are still routed." if options else "")
        ),
        missing_modality=value,
        **_MISSING_FIELDS[kind],
    )


def _missing_exports() -> dict[str, Callable[[], Case]]:
    out = {}
    for i, (kind, cls) in enumerate(spec.RULES.items()):
        for j, value in enumerate(cls.missing_semantics):
            for training in (False, True):
                if training and kind not in ("modality_dropout", "shomr", "energy_aware_adaptive"):
                    continue
                out[_missing_name(kind, value, training)] = (
                    lambda k=kind, v=value, seed=900 + 10 * i + j, tr=training: _missing(
                        k, v, seed, training=tr
                    )
                )
    return out


# --- input normalisation (input_norm="batch") ------------------------------------------

#: Rows with both, image only, text only, both, neither, both: 4 image rows, 4 text rows.
PRESENT_NORM = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 0], [1, 1]], dtype=bool)
#: The image rows' common offset and spread: a ReLU tower's output, far from standardised.
IMAGE_OFFSET, IMAGE_SPREAD = 3.0, 0.5


def _offset_image(v, t):
    v *= np.float32(IMAGE_SPREAD)
    v += np.float32(IMAGE_OFFSET)


def _running_stats(s, params):
    """Running statistics as training leaves them: the image's offset and spread."""
    rng = np.random.default_rng(17)
    d = s.dim
    stats = {
        "image.running_mean": IMAGE_OFFSET + 0.1 * rng.standard_normal(d),
        "image.running_var": IMAGE_SPREAD**2 * rng.uniform(0.5, 1.5, d),
        "text.running_mean": 0.1 * rng.standard_normal(d),
        "text.running_var": rng.uniform(0.5, 1.5, d),
    }
    for name, value in stats.items():
        params[f"input_norm.{name}"] = value.astype(np.float32)


def _input_norm(kind: str, seed: int, *, training: bool, lone: bool = False,
                absent: str | None = None, tokens: bool = False,
                lone_gradient: str | None = None) -> Case:
    """``input_norm="batch"``; with ``absent`` (an ``input_norm_absent`` value) or
    ``tokens`` (padded sequences, an all-padding one absent), a presence mask in eval
    too, so that an absent row's fill is read under the running statistics as well."""
    variant = "_lone_text" if lone else f"_absent_{absent}" if absent else ""
    variant += "_tokens" if tokens else ""
    variant += f"_lone_gradient_{lone_gradient}" if lone_gradient else ""
    name = f"{kind}_input_norm{variant}" + ("_training" if training else "")
    present = PRESENT_NORM
    if lone:  # one text row: too few for batch statistics, the running ones apply
        present = np.array([[1, 1], [1, 0], [0, 0], [1, 0], [0, 0], [1, 0]], dtype=bool)
    masked = training or absent is not None or tokens
    fields = {} if absent is None else {"input_norm_absent": absent}
    if lone_gradient is not None:
        fields["lone_gradient"] = lone_gradient
    fill = {
        None: "",
        "zero": " An absent row is the normalised zero row, -mu / sqrt(var + eps).",
        "mean": " input_norm_absent='mean': an absent row is 0, the present rows' mean.",
    }[absent]
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        present=present if masked else None,
        tokens=(IMAGE_TOKENS, TEXT_TOKENS) if tokens else None,
        edit=_running_stats,
        edit_inputs=_offset_image,
        gradient=True,
        doc=(
            "input_norm='batch' with image inputs of offset 3 and spread 0.5: "
            + (
                "training, the batch statistics over the present rows (gradients through "
                "them), running statistics updated."
                if training
                else "eval, the running statistics"
                + (" and a presence mask." if masked else ".")
            )
            + (" One text row: the running statistics normalise it." if lone else "")
            + fill
            + (" Padded token sequences (an all-padding one is absent): the statistics "
               "over the real tokens." if tokens else "")
            + (f" lone_gradient={lone_gradient!r}: a lone modality's input row gets "
               + ("its gradient, through the rule and the batch statistics." if lone_gradient == "pass"
                  else "exactly zero gradient; the other rows' still flows through the "
                  "batch statistics into the lone rows' outputs.") if lone_gradient else "")
        ),
        input_norm="batch",
        input_norm_momentum=0.25,
        **fields,
        **_MISSING_FIELDS[kind],
    )


def export_shomr_router_init_bias():
    return case(
        "shomr_router_init_bias",
        "shomr",
        seed=1301,
        dim=8,
        heads=2,
        router_init_bias=DEFAULT_ROUTER_BIAS,
        gradient=True,
        doc="The default router_init_bias: route logits start at (0, 0, 2) plus the perturbation.",
    )


def export_energy_aware_adaptive_router_init_bias_training():
    return case(
        "energy_aware_adaptive_router_init_bias_training",
        "energy_aware_adaptive",
        seed=1302,
        dim=8,
        heads=2,
        training=True,
        router_init_bias=DEFAULT_ROUTER_BIAS,
        gradient=True,
        doc="The default router_init_bias in training: 'both' drawn most often.",
    )


def _spec_defaults(kind: str, seed: int, training: bool) -> Case:
    name = f"{kind}_spec_defaults" + ("_training" if training else "")
    fields = spec.RULES[kind].model_fields
    # the two fields ``case`` otherwise sets off their defaults
    defaults = {f: fields[f].default for f in ("input_norm", "router_init_bias") if f in fields}
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        gradient=True,
        doc=(
            "What build(kind, dim=8) computes: every spec default, input_norm='batch' and "
            "a routing rule's router_init_bias included"
            + (" (dropout 0: element-wise dropout has no noise contract)." if training else ".")
        ),
        dim=8,
        **defaults,
    )


def _per_rule_exports(
    variant: str, build: Callable[[str, int, bool], Case], first_seed: int
) -> dict[str, Callable[[], Case]]:
    """``{kind}_{variant}`` and ``{kind}_{variant}_training`` for every rule, built by
    ``build(kind, seed, training)`` with seed ``first_seed + 10 i + training``."""
    out = {}
    for i, kind in enumerate(spec.RULES):
        for training in (False, True):
            name = f"{kind}_{variant}" + ("_training" if training else "")
            out[name] = lambda k=kind, seed=first_seed + 10 * i + training, tr=training: build(
                k, seed, tr
            )
    return out


def _spec_defaults_exports() -> dict[str, Callable[[], Case]]:
    return _per_rule_exports("spec_defaults", _spec_defaults, 2100)


def _input_norm_exports() -> dict[str, Callable[[], Case]]:
    out = _per_rule_exports(
        "input_norm", lambda k, seed, tr: _input_norm(k, seed, training=tr), 1200
    )
    out["gated_input_norm_lone_text_training"] = lambda: _input_norm(
        "gated", 1290, training=True, lone=True
    )
    # film reads the absent rows: their fill too comes from the running statistics
    out["film_input_norm_lone_text_training"] = lambda: _input_norm(
        "film", 1291, training=True, lone=True
    )
    # cross_attention's lone_gradient: the default stops a lone row's gradient (every
    # cross_attention case with a lone sample checks it); the earlier behaviour passes it
    out["cross_attention_input_norm_lone_gradient_pass_training"] = lambda: _input_norm(
        "cross_attention", 1292, training=True, lone_gradient="pass"
    )
    out |= _per_rule_exports(
        "input_norm_absent_mean",
        lambda k, seed, tr: _input_norm(k, seed, training=tr, absent="mean"),
        2300,
    )
    out |= _per_rule_exports(
        "input_norm_absent_zero_tokens",
        lambda k, seed, tr: _input_norm(k, seed, training=tr, absent="zero", tokens=True),
        2400,
    )
    return out


# --- blind spots of the earlier catalogue -------------------------------------------------


def export_shomr_straight_through_temperature_2():
    return case(
        "shomr_straight_through_temperature_2",
        "shomr",
        seed=1501,
        training=True,
        dim=8,
        heads=2,
        routing_temperature=2.0,
        straight_through=True,
        options={"use_hard_routing": True},
        gradient=True,
        doc="Straight-through at T = 2: the factor's r_k is the probability at the "
        "temperature (softmax(z / T)), so its gradient carries 1/T.",
    )


def export_shomr_straight_through_temperature_half():
    return case(
        "shomr_straight_through_temperature_half",
        "shomr",
        seed=1502,
        training=True,
        dim=8,
        heads=2,
        routing_temperature=0.5,
        straight_through=True,
        options={"use_hard_routing": None},
        gradient=True,
        doc="Straight-through at T = 1/2 with automatic routing: hard samples carry the factor, "
        "soft ones none.",
    )


def export_energy_aware_adaptive_eval_progress():
    return case(
        "energy_aware_adaptive_eval_progress",
        "energy_aware_adaptive",
        seed=1503,
        dim=8,
        heads=2,
        options={"progress": 0.75},
        doc="Eval with progress = 3/4 given (p = 1/2 in training): eval drops nothing and "
        "scales nothing; output_kept is 1.",
        **EXACT_DROP,
    )


def _energy_over_budget(training: bool) -> Case:
    name = "energy_aware_adaptive_missing_over_budget" + ("_training" if training else "")
    return case(
        name,
        "energy_aware_adaptive",
        seed=1504 + training,
        training=training,
        present=PRESENT,
        noise={"route": ROUTE_NOISE} if training else None,
        gradient=True,
        aux_gradient=True,
        energy_budget_mJ=0.5,
        energy_weight=0.75,
        doc="Every presence pattern, the mean expected energy above the budget: the loss is "
        "positive and its mean runs over all B rows (a neither row's expected energy is 0).",
        **_MISSING_FIELDS["energy_aware_adaptive"],
    )


def export_energy_aware_adaptive_energy_loss_gradient():
    return case(
        "energy_aware_adaptive_energy_loss_gradient",
        "energy_aware_adaptive",
        seed=1506,
        training=True,
        dim=8,
        heads=2,
        noise={"route": ROUTE_NOISE},
        straight_through=False,
        energy_weight_trainable=True,
        energy_weight=0.5,
        energy_budget_mJ=2.0,
        gradient=True,
        aux_gradient=True,
        doc="The loss holds energy_loss (over budget): without straight-through the router's "
        "only gradient comes through it, and the trainable energy_weight's too.",
    )


def export_energy_aware_adaptive_missing_over_budget():
    return _energy_over_budget(False)


def export_energy_aware_adaptive_missing_over_budget_training():
    return _energy_over_budget(True)


# --- every field at a non-default value, in eval and in training -------------------------


def _other_values(name: str, default: Any, annotation: Any) -> list[Any]:
    """Candidate non-default values of a field, most natural first."""
    import typing

    if annotation is bool:
        return [not default]
    if typing.get_origin(annotation) is typing.Literal:
        return [a for a in typing.get_args(annotation) if a != default]
    if isinstance(default, bool) or default is None:
        return []
    if isinstance(default, int):
        return [default - 1, default + 1, 2 * default]
    if isinstance(default, float):
        return [default * 0.5, default * 2.0, default + 0.1, 0.25]
    if isinstance(default, tuple):
        return [tuple(0.5 * x for x in default), tuple(reversed(default))]
    return []


#: Values tried first: fields that would otherwise take equal values (``p_img`` and
#: ``p_txt``: swapped probabilities would go unseen), or print badly.
NON_DEFAULT_FIRST: dict[str, tuple[Any, ...]] = {
    "p_txt": (0.6,),
    # the default, kept: input_norm_momentum and input_norm_eps act only with it, and
    # every other case runs input_norm="none"
    "input_norm": ("batch",),
    # 1e-3, not 5e-06: the page prints values as code, and a browser breaks "5e-06" at its hyphen
    "input_norm_eps": (1e-3,),
    "image_dim": (IMAGE_DIM,),
    "text_dim": (TEXT_DIM,),
}


def non_default_fields(kind: str, training: bool) -> dict[str, Any]:
    """Every field of ``kind`` that admits another value, moved off its default (the first
    candidate that keeps the spec valid), on top of the missing-modality cases' small sizes.
    ``dropout`` stays 0 in training (element-wise dropout has no noise contract)."""
    cls = spec.RULES[kind]
    fields: dict[str, Any] = dict(_MISSING_FIELDS[kind])
    if "dropout" in cls.model_fields:
        fields["dropout"] = 0.0 if training else 0.25
    if "router_init_bias" in cls.model_fields:
        fields["router_init_bias"] = None
    for name, f in cls.model_fields.items():
        if name in fields or name in ("kind", "dim"):
            continue
        for value in [*NON_DEFAULT_FIRST.get(name, ()), *_other_values(name, f.default, f.annotation)]:
            try:
                make_spec(kind, **{**fields, name: value})
            except spec.SpecError:
                continue
            fields[name] = value
            break
    return fields


def _non_default(kind: str, seed: int, training: bool) -> Case:
    name = f"{kind}_non_default" + ("_training" if training else "")
    fields = non_default_fields(kind, training)
    options, noise = {}, None
    if any(o.name == "progress" for o in spec.RULES[kind].call_options):
        options["progress"] = 0.75
        if training:  # the output drop active; rows 0 and 4 flagged at 1/2, not at 1/4
            flags = DROP_FLAGS.copy()
            flags[0], flags[4] = (0.375, 0.75), (0.4375, 0.9375)
            noise = {"route": ROUTE_NOISE, "output_drop_gate": np.array([0.0625]),
                     "output_drop_flags": flags}
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        present=PRESENT_NORM,
        options=options,
        noise=noise,
        doc="Every field that can move, off its default at once, with missing modalities.",
        **fields,
    )


def _non_default_exports() -> dict[str, Callable[[], Case]]:
    return _per_rule_exports("non_default", _non_default, 1600)


# --- stress inputs: every rule, with and without missing modalities --------------------

#: The stress kinds also run with every presence pattern (``PRESENT``).
STRESS_MISSING = ("offset", "tiny", "huge")
#: Stress kinds whose cases are gradient cases too (the others saturate: zero gradients
#: test nothing, and finite differences of saturated softmaxes lose their digits).
STRESS_GRADIENT = ("tiny", "near_equal")


def _stress(kind: str, data: str, seed: int, *, missing: bool) -> Case:
    name = f"{kind}_{'missing_' if missing else ''}{data}"
    options = {"use_hard_routing": False} if kind == "shomr" and missing else {}
    return case(
        name,
        kind,
        seed=seed,
        data=data,
        present=PRESENT if missing else None,
        options=options,
        gradient=data in STRESS_GRADIENT,
        doc=STRESS[data] + (" Every presence pattern in one batch." if missing else ""),
        **_MISSING_FIELDS[kind],
    )


def _stress_exports() -> dict[str, Callable[[], Case]]:
    out = {}
    for i, kind in enumerate(spec.RULES):
        for j, data in enumerate(STRESS):
            for missing in (False, True):
                if missing and data not in STRESS_MISSING:
                    continue
                name = f"{kind}_{'missing_' if missing else ''}{data}"
                out[name] = lambda k=kind, d=data, seed=1400 + 10 * i + j + 5 * missing, m=missing: (
                    _stress(k, d, seed, missing=m)
                )
    return out


# --- per-modality widths: input projections ---------------------------------------------



def _widths(kind: str, seed: int, *, missing: bool = False, training: bool = False) -> Case:
    name = f"{kind}_widths" + ("_missing" if missing else "") + ("_training" if training else "")
    options = {"use_hard_routing": False} if kind == "shomr" and missing else {}
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        present=PRESENT if missing else None,
        options=options,
        gradient=True,
        doc=f"image_dim={IMAGE_DIM}, text_dim={TEXT_DIM} with dim 8: v and t projected by "
        "input_proj.image and input_proj.text first"
        + (" (an absent row stays 0, not the projection's bias)." if missing else "."),
        image_dim=IMAGE_DIM,
        text_dim=TEXT_DIM,
        **_MISSING_FIELDS[kind],
    )


def _widths_exports() -> dict[str, Callable[[], Case]]:
    out = {}
    for i, kind in enumerate(spec.RULES):
        for missing in (False, True):
            name = f"{kind}_widths" + ("_missing" if missing else "")
            out[name] = lambda k=kind, seed=1700 + 10 * i + missing, m=missing: _widths(
                k, seed, missing=m
            )
    for kind in ("modality_dropout", "shomr", "energy_aware_adaptive"):
        out[f"{kind}_widths_missing_training"] = lambda k=kind: _widths(
            k, 1790 + len(k), missing=True, training=True
        )
    return out


def export_gated_widths_image_only():
    return case(
        "gated_widths_image_only",
        "gated",
        seed=1795,
        dim=8,
        image_dim=IMAGE_DIM,
        gradient=True,
        doc="image_dim=12, text_dim unset: only input_proj.image exists; t is read as it is.",
    )


def export_film_widths_input_norm_training():
    return case(
        "film_widths_input_norm_training",
        "film",
        seed=1796,
        dim=8,
        training=True,
        present=PRESENT_NORM,
        image_dim=IMAGE_DIM,
        text_dim=TEXT_DIM,
        input_norm="batch",
        gradient=True,
        doc="Widths with input_norm='batch': the projection first, then the statistics of "
        "the projected rows.",
    )


# --- token sequences: (B, L, D) with padding masks -----------------------------------

#: Padding masks of the token cases (``BATCH`` rows): all real; trailing padding; one
#: real token; padding in the middle; all padding (an absent modality); leading padding.
IMAGE_TOKENS = np.array(
    [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=bool
)
TEXT_TOKENS = np.array(
    [[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1]], dtype=bool
)


def _tokens(kind: str, seed: int, *, variant: str, training: bool = False) -> Case:
    name = f"{kind}_tokens" + (f"_{variant}" if variant != "padded" else "") + (
        "_training" if training else ""
    )
    options = {"use_hard_routing": False} if kind == "shomr" else {}
    present = PRESENT if variant == "present" else None
    tokens = (3, 2) if variant == "unpadded" else (IMAGE_TOKENS, TEXT_TOKENS)
    noise = None
    if training and kind == "modality_dropout":
        noise = {"drop_image": [0.9, 0.1, 0.8, 0.7, 0.7, 0.6], "drop_text": [0.1, 0.9, 0.8, 0.7, 0.2, 0.6]}
    doc = {
        "padded": "Token sequences (L_v=4, L_t=3) with every padding pattern: all real, "
        "trailing, one real token, padding in the middle, all padding (an absent "
        "modality), leading; NaN and 1e30 in the padding.",
        "unpadded": "Token sequences of different lengths (L_v=3, L_t=2), no padding mask.",
        "present": "Token sequences with padding and a presence mask: the two compose (a "
        "modality is present where present says so and it has a real token).",
    }[variant]
    return case(
        name,
        kind,
        seed=seed,
        training=training,
        present=present,
        options=options,
        noise=noise,
        tokens=tokens,
        gradient=True,
        doc=doc,
        **_MISSING_FIELDS[kind],
    )


def _tokens_exports() -> dict[str, Callable[[], Case]]:
    out = {}
    for i, kind in enumerate(spec.RULES):
        for j, variant in enumerate(("padded", "unpadded", "present")):
            name = f"{kind}_tokens" + (f"_{variant}" if variant != "padded" else "")
            out[name] = lambda k=kind, seed=1900 + 10 * i + j, v=variant: _tokens(k, seed, variant=v)
        if kind in ("modality_dropout", "shomr", "energy_aware_adaptive"):
            out[f"{kind}_tokens_training"] = lambda k=kind, seed=1905 + 10 * i: _tokens(
                k, seed, variant="padded", training=True
            )
    for kind in ("simple", "transformer_concat", "cross_attention"):
        cls = spec.RULES[kind]
        default = cls.model_fields["missing_modality"].default
        value = next(v for v in cls.missing_semantics if v != default)
        out[f"{kind}_tokens_{value}"] = lambda k=kind, v=value: _tokens_variant(k, v)
    return out


def _tokens_variant(kind: str, value: str) -> Case:
    """The attending rule's other ``missing_modality`` on padded tokens with ``present``."""
    return case(
        f"{kind}_tokens_{value}",
        kind,
        seed=1990 + len(kind),
        present=PRESENT,
        tokens=(IMAGE_TOKENS, TEXT_TOKENS),
        gradient=True,
        doc=f"missing_modality={value!r} on padded tokens with a presence mask"
        + (": an absent modality is one zero token." if value == "zero_fill" else "."),
        missing_modality=value,
        **_MISSING_FIELDS[kind],
    )


# --- the catalogue ---------------------------------------------------------------------

EXPORTS: dict[str, Callable[[], Case]] = {
    name[len("export_") :]: fn for name, fn in list(globals().items()) if name.startswith("export_")
} | _missing_exports() | _spec_defaults_exports() | _input_norm_exports() | _stress_exports() | _non_default_exports() | _widths_exports() | _tokens_exports()

_CACHE: dict[str, Case] = {}


def all_cases() -> list[Case]:
    """Every case, in catalogue order (built once per process)."""
    if not _CACHE:
        for name, export in EXPORTS.items():
            c = export()
            if c.name != name:
                raise ValueError(f"export_{name} builds a case named {c.name!r}; expected {name!r}")
            _CACHE[name] = c
    return list(_CACHE.values())


def cases_of(rule: str) -> list[Case]:
    return [c for c in all_cases() if c.rule == rule]
