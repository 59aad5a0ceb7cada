"""Cases shared by the PyTorch and Keras backend tests (framework-neutral).

Small sizes with non-square dense weights (``2D -> D``, ``D -> 4D``,
``D -> hidden_mult * D``), so that a forgotten transpose fails on shape, and
parameters perturbed away from their initialisation (unit LayerNorm weights,
zero attention biases), so that a backend ignoring them fails on values.
"""

from __future__ import annotations

import numpy as np

from fusion_spec import spec

BATCH = 8
#: Decisions whose reference margin is below this may flip under float32 rounding.
MARGIN = {"float32": 1e-4, "float64": 1e-9, "bfloat16": 3e-2}

CASES: dict[str, dict] = {
    "simple": dict(kind="simple", dim=12, heads=3, layers=2, dropout=0.0),
    "concat_mlp": dict(kind="concat_mlp", dim=12, hidden_mult=3, layers=3, dropout=0.0),
    "gated": dict(kind="gated", dim=12),
    "film": dict(kind="film", dim=12),
    "modality_dropout": dict(kind="modality_dropout", dim=12, p_img=0.4, p_txt=0.6),
    "modality_dropout_sample": dict(
        kind="modality_dropout", dim=12, p_img=0.5, p_txt=0.5, drop_granularity="sample"
    ),
    "transformer_concat": dict(kind="transformer_concat", dim=12, heads=2, layers=2, dropout=0.0),
    "cross_attention": dict(kind="cross_attention", dim=16, heads=4, dropout=0.0),
    "shomr": dict(kind="shomr", dim=16, heads=4, dropout=0.0, confidence_threshold=0.6),
    "shomr_variant": dict(
        kind="shomr",
        dim=16,
        heads=2,
        dropout=0.0,
        confidence_threshold=0.7,
        routing_temperature=0.7,
        fallback_threshold=0.6,
        straight_through=True,
    ),
    "energy_aware_adaptive": dict(
        kind="energy_aware_adaptive", dim=16, heads=4, dropout=0.0, energy_budget_mJ=5.0
    ),
    "energy_aware_adaptive_variant": dict(
        kind="energy_aware_adaptive",
        dim=16,
        heads=2,
        dropout=0.0,
        energy_budget_mJ=4.0,
        eval_routing="sample",
        energy_weight_trainable=True,
        straight_through=True,
    ),
}

#: One case per rule, for the slow checks (compile, export).
KIND_CASES = [name for name, fields in CASES.items() if name == fields["kind"]]

#: Call options exercised per rule (the first is the default call).
OPTIONS: dict[str, list[dict]] = {
    "shomr": [{}, {"use_hard_routing": True}, {"use_hard_routing": False}],
    "energy_aware_adaptive": [{}, {"progress": 0.5}],
}

#: (case id, call options) for every case and each of its rule's options.
CALLS = [
    (case, options)
    for case, fields in CASES.items()
    for options in OPTIONS.get(fields["kind"], [{}])
]
CALL_IDS = [
    f"{case}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for case, o in CALLS
]


def make_spec(case: str):
    return spec.parse(CASES[case])


def perturbed_params(s, seed: int = 0, scale: float = 0.2) -> dict[str, np.ndarray]:
    """``init_params`` plus noise: LayerNorm and attention biases away from 1 and 0."""
    rng = np.random.default_rng(seed + 100)
    return {
        name: (value + scale * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in spec.init_params(s, seed=seed).items()
    }


def inputs(s, seed: int = 0, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 200)
    v = rng.standard_normal((batch, s.dim)).astype(np.float32)
    t = rng.standard_normal((batch, s.dim)).astype(np.float32)
    return v, t


def unsure_samples(
    s, ref_aux: dict, batch: int, *, training: bool, margin: float, **options
) -> np.ndarray:
    """``(B,)`` True where some decision of the reference lies within ``margin`` of a flip."""
    unsure = np.zeros(batch, dtype=bool)
    for a in s.aux(batch, training=training, **options):
        if a.role == "decision":
            unsure |= np.broadcast_to(ref_aux[a.margin] < margin, (batch,))
    return unsure


#: Constructor arguments of the original modules for the legacy-checkpoint tests:
#: non-square sizes, dim not a power of two.
LEGACY = {
    "simple": dict(dim=12, heads=3, layers=2),
    "concat_mlp": dict(dim=12, layers=3, hidden_mult=3),
    "gated": dict(dim=12),
    "film": dict(dim=12),
    "modality_dropout": dict(dim=12),
    "transformer_concat": dict(dim=12, heads=2, layers=3),
    "cross_attention": dict(dim=16, heads=4),
    "shomr": dict(dim=16, heads=4),
    "energy_aware_adaptive": dict(dim=16, heads=4),
}


#: Every presence pattern in one batch of ``BATCH``: both, image only, text only, neither.
PRESENT = np.array(
    [[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [0, 1], [1, 0], [1, 1]], dtype=bool
)

#: The non-default ``missing_modality`` of each rule that has one (case id -> fields).
MISSING_VARIANTS: dict[str, dict] = {
    f"{case}-{value}": {**fields, "missing_modality": value}
    for case, fields in CASES.items()
    if case == fields["kind"]
    for value in spec.RULES[fields["kind"]].missing_semantics
    if value != spec.RULES[fields["kind"]].model_fields["missing_modality"].default
}


def garbage_in_absent_rows(v, t, present, fill=np.nan):
    """Copies of ``v``, ``t`` with ``fill`` in every absent row (the values must not matter)."""
    v, t = v.copy(), t.copy()
    v[~present[:, 0]] = fill
    t[~present[:, 1]] = fill
    return v, t


#: Token sequences: ``L_V`` image and ``L_T`` text tokens per sample.
L_V, L_T = 4, 3
#: Padding masks (True: a real token) with every pattern the token tests need, row by
#: row: all real; trailing padding; one real token; padding in the middle; the image
#: all padding (an absent image); the text all padding; both all padding; leading padding.
IMAGE_MASK = np.array(
    [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0],
     [0, 0, 0, 0], [0, 0, 1, 1]],
    dtype=bool,
)
TEXT_MASK = np.array(
    [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 1, 1]],
    dtype=bool,
)


def token_inputs(s, seed: int = 0, batch: int = BATCH, lengths=(L_V, L_T)):
    """float32 ``v`` ``(batch, L_v, D_v)`` and ``t`` ``(batch, L_t, D_t)``."""
    rng = np.random.default_rng(seed + 300)
    v = rng.standard_normal((batch, lengths[0], s.width("image"))).astype(np.float32)
    t = rng.standard_normal((batch, lengths[1], s.width("text"))).astype(np.float32)
    return v, t


def garbage_in_padding(v, t, image_mask, text_mask, fill=np.nan):
    """Copies of token sequences with ``fill`` in every padding token."""
    v, t = v.copy(), t.copy()
    v[~image_mask] = fill
    t[~text_mask] = fill
    return v, t
