"""Cases and comparison helpers of the PyTorch backend tests.

Small sizes with non-square dense weights (``2D -> D``, ``D -> 4D``,
``D -> hidden_mult * D``), so that a forgotten transpose fails on shape, and
parameters perturbed away from their initialisation (unit LayerNorm weights,
zero attention biases), so that a backend ignoring them fails on values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import spec
from spec.tolerance import tolerance

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


def uniform_noise(s, batch: int, seed: int = 0, *, training: bool, **options):
    """The declared noise arrays as float64 NumPy (the reference's precision)."""
    rng = np.random.default_rng(seed + 300)
    return {n.name: rng.uniform(size=n.shape) for n in s.noise(batch, training=training, **options)}


def as_torch(arrays: dict[str, np.ndarray] | None, dtype=torch.float32):
    if not arrays:
        return None
    return {k: torch.as_tensor(a, dtype=dtype) for k, a in arrays.items()}


def to_numpy(x) -> np.ndarray:
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


def unsure_samples(
    s, ref_aux: dict, batch: int, *, training: bool, margin: float, **options
) -> np.ndarray:
    """``(B,)`` True where some decision of the reference lies within ``margin`` of a flip."""
    unsure = np.zeros(batch, dtype=bool)
    for a in s.aux(batch, training=training, **options):
        if a.role == "decision":
            unsure |= np.broadcast_to(ref_aux[a.margin] < margin, (batch,))
    return unsure


def assert_matches_reference(
    s,
    out: torch.Tensor,
    aux: dict[str, Any],
    ref: np.ndarray,
    ref_aux: dict,
    *,
    training: bool,
    dtype: str = "float32",
    **options,
) -> None:
    """Fused output and aux against ``fusion_ref`` within the tolerance of ``dtype``.

    Decisions are compared exactly except on samples whose reference margin is
    below ``MARGIN[dtype]``; those samples' outputs are skipped too (a flipped
    decision changes them). At least half the batch must be compared.
    """
    tol = tolerance(dtype)
    batch = ref.shape[0]
    unsure = unsure_samples(s, ref_aux, batch, training=training, margin=MARGIN[dtype], **options)
    assert unsure.sum() <= batch // 2, f"too many near-tie decisions to compare: {unsure}"
    sure = ~unsure
    assert out.dtype == getattr(torch, dtype) and tuple(out.shape) == ref.shape
    got = to_numpy(out)
    np.testing.assert_allclose(got[sure], ref[sure], **tol, err_msg="fused output")
    declared = [a for a in s.aux(batch, training=training, **options) if a.role != "margin"]
    assert set(aux) == {a.name for a in declared}
    for a in declared:
        value = aux[a.name]
        assert tuple(value.shape) == ref_aux[a.name].shape, a.name
        if a.role == "value":
            assert value.dtype == out.dtype, (a.name, value.dtype)
            np.testing.assert_allclose(to_numpy(value), ref_aux[a.name], **tol, err_msg=a.name)
        elif a.dtype == "int":
            assert value.dtype == torch.int64, (a.name, value.dtype)
            np.testing.assert_array_equal(
                to_numpy(value)[sure], ref_aux[a.name][sure], err_msg=a.name
            )
        else:
            assert value.dtype == out.dtype, (a.name, value.dtype)
            got_decision = to_numpy(value)
            assert set(np.unique(got_decision)) <= {0.0, 1.0}, a.name
            np.testing.assert_array_equal(got_decision[sure], ref_aux[a.name][sure], err_msg=a.name)
