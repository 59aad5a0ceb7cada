"""Comparison helpers of the Keras backend tests; the cases are in ``tests/backend_cases.py``."""

from __future__ import annotations

import keras
import numpy as np

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

TOL = tolerance("float32")
BACKEND = keras.backend.backend()
CAN_TRAIN = BACKEND in ("jax", "torch", "tensorflow")


def uniform_noise(s, batch: int, seed: int = 0, *, training: bool, **options):
    rng = np.random.default_rng(seed + 300)
    return {
        n.name: rng.uniform(size=n.shape).astype(np.float32)
        for n in s.noise(batch, training=training, **options)
    }


def to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def assert_matches_reference(s, out, aux, ref, ref_aux, *, training: bool, **options) -> None:
    """Fused output and aux against ``fusion_ref`` within the float32 tolerance.

    Decisions are compared exactly except on samples whose reference margin is
    below ``MARGIN["float32"]``; those samples' outputs are skipped too (a flipped decision
    changes them). At least half the batch must be compared.
    """
    batch = ref.shape[0]
    unsure = unsure_samples(
        s, ref_aux, batch, training=training, margin=MARGIN["float32"], **options
    )
    assert unsure.sum() <= batch // 2, f"too many near-tie decisions to compare: {unsure}"
    sure = ~unsure
    out = to_numpy(out)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[sure], ref[sure], **TOL, err_msg="fused output")
    expected_names = {
        a.name for a in s.aux(batch, training=training, **options) if a.role != "margin"
    }
    assert set(aux) == expected_names
    for a in s.aux(batch, training=training, **options):
        if a.role == "margin":
            continue
        got = to_numpy(aux[a.name])
        assert got.shape == ref_aux[a.name].shape, a.name
        if a.role == "value":
            np.testing.assert_allclose(got, ref_aux[a.name], **TOL, err_msg=a.name)
        elif a.dtype == "int":
            assert np.issubdtype(got.dtype, np.integer), (a.name, got.dtype)
            np.testing.assert_array_equal(got[sure], ref_aux[a.name][sure], err_msg=a.name)
        else:
            assert got.dtype == np.float32 and set(np.unique(got)) <= {0.0, 1.0}, a.name
            np.testing.assert_array_equal(got[sure], ref_aux[a.name][sure], err_msg=a.name)


# --- checkpoints of the original code, from the key table of ORIGINAL_IMPLEMENTATION.md ---


def legacy_state_dict(kind: str, dim: int, seed: int = 0, **sizes) -> dict[str, np.ndarray]:
    """A state_dict of the original module ``kind`` with random NumPy values.

    Keys and shapes as in the key table (PyTorch ``Linear`` weights ``(out, in)``,
    packed ``in_proj_weight (3D, D)``); every value random, LayerNorm weights near 1.
    """
    rng = np.random.default_rng(seed + 400)
    d, sd = dim, {}

    def lin(prefix, fan_in, fan_out):
        sd[f"{prefix}.weight"] = rng.uniform(-1, 1, (fan_out, fan_in)) / np.sqrt(fan_in)
        sd[f"{prefix}.bias"] = rng.uniform(-0.3, 0.3, (fan_out,))

    def norm(prefix):
        sd[f"{prefix}.weight"] = 1.0 + 0.2 * rng.standard_normal(d)
        sd[f"{prefix}.bias"] = 0.2 * rng.standard_normal(d)

    def mha(prefix):
        sd[f"{prefix}.in_proj_weight"] = rng.uniform(-1, 1, (3 * d, d)) / np.sqrt(d)
        sd[f"{prefix}.in_proj_bias"] = 0.2 * rng.standard_normal(3 * d)
        lin(f"{prefix}.out_proj", d, d)

    def encoder(prefix, layers):
        for i in range(layers):
            mha(f"{prefix}.layers.{i}.self_attn")
            lin(f"{prefix}.layers.{i}.linear1", d, 4 * d)
            lin(f"{prefix}.layers.{i}.linear2", 4 * d, d)
            norm(f"{prefix}.layers.{i}.norm1")
            norm(f"{prefix}.layers.{i}.norm2")

    if kind == "simple":
        encoder("fusion", sizes["layers"])
    elif kind == "transformer_concat":
        encoder("transformer", sizes["layers"])
        sd["modality_token"] = rng.standard_normal((1, 2, d))
    elif kind == "concat_mlp":
        layers, hidden = sizes["layers"], sizes["hidden_mult"] * d
        widths = [2 * d] + [hidden] * (layers - 1) + [d]
        for i in range(layers):
            lin(f"mlp.{3 * i}", widths[i], widths[i + 1])
    elif kind == "gated":
        lin("gate.0", 2 * d, d)
    elif kind == "film":
        lin("mlp_gamma", d, d)
        lin("mlp_beta", d, d)
    elif kind == "modality_dropout":
        lin("gated.0", 2 * d, d)
        lin("gated.2", d, d)
    elif kind == "cross_attention":
        norm("norm1")
        norm("norm2")
        mha("cross_attn")
        lin("ffn.0", d, 4 * d)
        lin("ffn.2", 4 * d, d)
    elif kind == "shomr":
        lin("conf_net.0", 2 * d, d)
        lin("conf_net.3", d, 2)
        lin("router.0", 2 * d, d)
        lin("router.3", d, 3)
        mha("cross_attn")
        lin("gate.0", 2 * d, d)
        norm("norm1")
        norm("norm2")
        lin("ffn.0", d, 4 * d)
        lin("ffn.3", 4 * d, d)
        lin("proj_single.0", d, d)
    elif kind == "energy_aware_adaptive":
        sd["lambda_energy"] = np.array(0.05)
        lin("router.0", 2 * d, d)
        lin("router.2", d, 3)
        lin("gate.0", 2 * d, d)
        mha("cross_attn")
        norm("norm")
        lin("ffn.0", d, 4 * d)
        lin("ffn.2", 4 * d, d)
    else:
        raise AssertionError(kind)
    return {k: np.asarray(value, dtype=np.float32) for k, value in sd.items()}
