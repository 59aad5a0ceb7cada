"""Cases and comparison helpers of the Keras backend tests.

Small sizes with non-square dense weights (``2D -> D``, ``D -> 4D``,
``D -> hidden_mult * D``), so that a forgotten transpose fails on shape, and
parameters perturbed away from their initialisation (unit LayerNorm weights,
zero attention biases), so that a backend ignoring them fails on values.
"""

from __future__ import annotations

import keras
import numpy as np

import spec
from spec.tolerance import tolerance

BATCH = 8
TOL = tolerance("float32")
#: Decisions whose reference margin is below this may flip under float32 rounding.
MARGIN = 1e-4
BACKEND = keras.backend.backend()
CAN_TRAIN = BACKEND in ("jax", "torch")

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
        heads=4,
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
        heads=4,
        dropout=0.0,
        energy_budget_mJ=4.0,
        eval_routing="sample",
        energy_weight_trainable=True,
        straight_through=True,
    ),
}

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


def inputs(s, seed: int = 0, batch: int = BATCH):
    rng = np.random.default_rng(seed + 200)
    v = rng.standard_normal((batch, s.dim)).astype(np.float32)
    t = rng.standard_normal((batch, s.dim)).astype(np.float32)
    return v, t


def uniform_noise(s, batch: int, seed: int = 0, *, training: bool, **options):
    rng = np.random.default_rng(seed + 300)
    return {
        n.name: rng.uniform(size=n.shape).astype(np.float32)
        for n in s.noise(batch, training=training, **options)
    }


def to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def unsure_samples(s, ref_aux: dict, batch: int, *, training: bool, **options) -> np.ndarray:
    """``(B,)`` True where some decision of the reference lies within ``MARGIN`` of a flip."""
    unsure = np.zeros(batch, dtype=bool)
    for a in s.aux(batch, training=training, **options):
        if a.role == "decision":
            unsure |= np.broadcast_to(ref_aux[a.margin] < MARGIN, (batch,))
    return unsure


def assert_matches_reference(s, out, aux, ref, ref_aux, *, training: bool, **options) -> None:
    """Fused output and aux against ``fusion_ref`` within the float32 tolerance.

    Decisions are compared exactly except on samples whose reference margin is
    below ``MARGIN``; those samples' outputs are skipped too (a flipped decision
    changes them). At least half the batch must be compared.
    """
    batch = ref.shape[0]
    unsure = unsure_samples(s, ref_aux, batch, training=training, **options)
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
