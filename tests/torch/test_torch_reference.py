"""The PyTorch modules compute the reference function: float32, float64, bfloat16, autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_cases import (
    BATCH,
    CALL_IDS,
    CALLS,
    as_torch,
    assert_matches_reference,
    inputs,
    make_spec,
    perturbed_params,
    to_numpy,
    uniform_noise,
)

from fusion_spec import fusion_ref
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run(s, params, *, training, dtype, seed=0, **options):
    """(module output, aux) and (reference output, aux) for one call."""
    v, t = inputs(s, seed=seed)
    noise = uniform_noise(s, BATCH, seed=seed, training=training, **options)
    module = bt.build(s, params).to(DTYPES[dtype]).train(training)
    out, aux = module(
        torch.from_numpy(v).to(DTYPES[dtype]),
        torch.from_numpy(t).to(DTYPES[dtype]),
        noise=as_torch(noise, DTYPES[dtype]),
        return_aux=True,
        **options,
    )
    ref = fusion_ref.forward(
        s, params, v, t, training=training, noise=noise or None, return_aux=True, **options
    )
    return (out, aux), ref


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_matches_reference(case, options, training, dtype):
    """Eval, and training with injected noise (dropout 0), float32 and float64."""
    s = make_spec(case)
    params = perturbed_params(s, seed=int(training))
    (out, aux), (ref, ref_aux) = run(s, params, training=training, dtype=dtype, seed=2, **options)
    assert_matches_reference(s, out, aux, ref, ref_aux, training=training, dtype=dtype, **options)


@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_bfloat16_module_matches_reference(case, options):
    """A module converted with ``.to(torch.bfloat16)`` on bfloat16 inputs."""
    s = make_spec(case)
    params = perturbed_params(s, seed=3)
    v, t = inputs(s, seed=3)
    noise = uniform_noise(s, BATCH, seed=3, training=False, **options)
    module = bt.build(s, params).to(torch.bfloat16).eval()
    out, aux = module(
        torch.from_numpy(v).bfloat16(),
        torch.from_numpy(t).bfloat16(),
        noise=as_torch(noise),
        return_aux=True,
        **options,
    )
    # the reference sees what the module sees: bfloat16-rounded params and inputs
    rounded = {k: to_numpy(torch.as_tensor(a).bfloat16()) for k, a in params.items()}
    v16, t16 = (to_numpy(torch.from_numpy(x).bfloat16()) for x in (v, t))
    ref, ref_aux = fusion_ref.forward(
        s, rounded, v16, t16, noise=noise or None, return_aux=True, **options
    )
    assert_matches_reference(s, out, aux, ref, ref_aux, training=False, dtype="bfloat16", **options)


@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_autocast_bfloat16_within_bfloat16_tolerance(case, options):
    """A float32 module under ``torch.autocast("cpu", dtype=torch.bfloat16)``."""
    s = make_spec(case)
    params = perturbed_params(s, seed=4)
    v, t = inputs(s, seed=4)
    noise = uniform_noise(s, BATCH, seed=4, training=False, **options)
    module = bt.build(s, params).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, aux = module(
            torch.from_numpy(v),
            torch.from_numpy(t),
            noise=as_torch(noise),
            return_aux=True,
            **options,
        )
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, noise=noise or None, return_aux=True, **options
    )
    assert out.dtype in (torch.float32, torch.bfloat16)
    # compare where every decision is clear of bfloat16 rounding
    sure = np.ones(BATCH, dtype=bool)
    for a in s.aux(BATCH, training=False, **options):
        if a.role == "decision":
            sure &= np.broadcast_to(ref_aux[a.margin] >= 3e-2, (BATCH,))
    assert sure.sum() >= BATCH // 2
    np.testing.assert_allclose(to_numpy(out)[sure], ref[sure], **tolerance("bfloat16"))
    if "route" in aux:
        np.testing.assert_array_equal(to_numpy(aux["route"])[sure], ref_aux["route"][sure])


def test_inputs_follow_the_parameters_dtype():
    """float64 and bfloat16 inputs to a float32 module compute in float32."""
    s = make_spec("gated")
    params = perturbed_params(s)
    v, t = inputs(s)
    module = bt.build(s, params).eval()
    ref = fusion_ref.forward(s, params, v, t)
    out = module(torch.from_numpy(v).double(), torch.from_numpy(t).double())
    assert out.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(out), ref, **tolerance("float32"))
    out16 = module(torch.from_numpy(v).bfloat16(), torch.from_numpy(t).bfloat16())
    assert out16.dtype == torch.float32
    np.testing.assert_allclose(to_numpy(out16), ref, **tolerance("bfloat16"))
