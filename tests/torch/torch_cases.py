"""Comparison helpers of the PyTorch backend tests; the cases are in ``tests/backend_cases.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fusion_spec.spec.tolerance import tolerance
from tests.backend_cases import (  # noqa: F401  (re-exported to the test modules)
    BATCH,
    CALL_IDS,
    CALLS,
    CASES,
    KIND_CASES,
    MARGIN,
    OPTIONS,
    inputs,
    make_spec,
    perturbed_params,
    unsure_samples,
)


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
            assert value.dtype == torch.int32, (a.name, value.dtype)
            np.testing.assert_array_equal(
                to_numpy(value)[sure], ref_aux[a.name][sure], err_msg=a.name
            )
        else:
            assert value.dtype == out.dtype, (a.name, value.dtype)
            got_decision = to_numpy(value)
            assert set(np.unique(got_decision)) <= {0.0, 1.0}, a.name
            np.testing.assert_array_equal(got_decision[sure], ref_aux[a.name][sure], err_msg=a.name)
