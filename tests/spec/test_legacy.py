"""``from_legacy`` + ``fusion_ref.forward`` reproduce the original modules.

The originals are the PyTorch transcriptions in ``tests/legacy_original.py``,
perturbed (so zero biases and identity LayerNorms cannot hide a wrong mapping)
and run in float64 from float32-representable weights, so agreement is checked
to 1e-10.
"""

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec

try:
    import torch

    from tests.legacy_original import build_original, perturb_
except ImportError:  # the tests that need no original module still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="the original modules are PyTorch code")

D, HEADS, B = 12, 3, 7
CTOR = {
    "simple": {"dim": D, "heads": HEADS, "layers": 2},
    "concat_mlp": {"dim": D, "hidden_mult": 3, "layers": 3},
    "gated": {"dim": D},
    "film": {"dim": D},
    "modality_dropout": {"dim": D, "p_img": 0.3, "p_txt": 0.6},
    "transformer_concat": {"dim": D, "heads": HEADS, "layers": 2},
    "cross_attention": {"dim": D, "heads": HEADS},
    "shomr": {"dim": D, "heads": HEADS, "confidence_threshold": 0.55, "routing_temperature": 0.8},
    "energy_aware_adaptive": {"dim": D, "heads": HEADS, "energy_budget_mJ": 5.0},
}


def original(kind, seed=0, **extra):
    torch.manual_seed(seed)
    module = build_original(kind, **{**CTOR[kind], **extra})
    return perturb_(module, seed=seed, scale=0.3).double()


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    v, t = rng.standard_normal((B, D)), rng.standard_normal((B, D))
    return v, t, torch.from_numpy(v), torch.from_numpy(t)


def convert(kind, module, **kw):
    init = {k: val for k, val in CTOR[kind].items() if k not in ("dim", "layers", "hidden_mult")}
    return spec.from_legacy(kind, module.state_dict(), **init, **kw)


def fixed_multinomial(u):
    """torch.multinomial(r, 1) replaced by the spec's draw: first k with u < cumsum(r)_k."""

    def multinomial(r, n):
        cdf = torch.cumsum(r, dim=-1)
        below = torch.from_numpy(u)[:, None] < cdf
        k = torch.where(below.any(-1), below.int().argmax(-1), r.shape[-1] - 1)
        return k[:, None]

    return multinomial


@needs_torch
@pytest.mark.parametrize(
    "kind", ["simple", "concat_mlp", "gated", "film", "modality_dropout", "cross_attention"]
)
def test_deterministic_rules_reproduce_the_original_in_eval(kind):
    module = original(kind).eval()
    s, params = convert(
        kind, module, **({"dropout": 0.1} if "dropout" in spec.RULES[kind].model_fields else {})
    )
    v, t, tv, tt = inputs()
    with torch.no_grad():
        expected = module(tv, tt).numpy()
    np.testing.assert_allclose(
        fusion_ref.forward(s, params, v, t), expected, rtol=1e-10, atol=1e-10
    )


@needs_torch
def test_shomr_reproduces_the_original_in_eval_for_every_routing_mode():
    module = original("shomr").eval()
    s, params = convert("shomr", module)
    v, t, tv, tt = inputs(1)
    for mode in (None, True, False):
        with torch.no_grad():
            expected = module(tv, tt, use_hard_routing=mode).numpy()
        got, aux = fusion_ref.forward(s, params, v, t, use_hard_routing=mode, return_aux=True)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert 0 < aux["hard"].sum() or mode is False


@needs_torch
def test_shomr_reproduces_the_original_in_training_with_the_same_draws(monkeypatch):
    module = original("shomr", dropout=0.0).train()
    s, params = convert("shomr", module, dropout=0.0)
    v, t, tv, tt = inputs(2)
    u = np.linspace(0.03, 0.97, B)
    monkeypatch.setattr(torch, "multinomial", fixed_multinomial(u))
    with torch.no_grad():
        expected = module(tv, tt, use_hard_routing=True).numpy()
    got = fusion_ref.forward(
        s, params, v, t, training=True, noise={"route": u}, use_hard_routing=True
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@needs_torch
def test_energy_aware_adaptive_reproduces_the_original(monkeypatch):
    module = original("energy_aware_adaptive", dropout=0.0)
    with torch.no_grad():
        module.lambda_energy.fill_(0.375)  # a trained value, float32-exact
    s, params = convert("energy_aware_adaptive", module, dropout=0.0, eval_routing="sample")
    assert s.energy_weight == 0.375 and "energy_weight" not in params
    v, t, tv, tt = inputs(3)
    u = np.linspace(0.01, 0.99, B)
    monkeypatch.setattr(torch, "multinomial", fixed_multinomial(u))
    with torch.no_grad():
        expected = module.eval()(tv, tt).numpy()  # the original samples in eval
    got = fusion_ref.forward(s, params, v, t, noise={"route": u})
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)

    # training with current_epoch 5 of 20: p = 0.1 + 0.3 * 0.25 = 0.175 > 0.15, so the
    # batch draw fires; then Bernoulli(0.5) flag pairs zero samples with a flag < 0.5
    flags = np.array(
        [[0.1, 0.9], [0.9, 0.6], [0.7, 0.2], [0.6, 0.6], [0.3, 0.4], [0.8, 0.99], [0.5, 0.5]]
    )
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.15]))
    monkeypatch.setattr(
        torch, "bernoulli", lambda p: torch.from_numpy((flags < 0.5).astype(np.float64))
    )
    module.train()
    with torch.no_grad():
        expected = module(tv, tt, current_epoch=5, total_epochs=20).numpy()
    noise = {"route": u, "output_drop_gate": np.array([0.15]), "output_drop_flags": flags}
    got, aux = fusion_ref.forward(
        s, params, v, t, training=True, noise=noise, progress=5 / 20, return_aux=True
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert aux["output_kept"].tolist() == [0, 1, 0, 1, 0, 1, 1]
    np.testing.assert_allclose(aux["energy_loss"], module.energy_loss.item(), rtol=1e-12)


@needs_torch
def test_energy_weight_can_stay_a_parameter():
    module = original("energy_aware_adaptive")
    s, params = convert("energy_aware_adaptive", module, energy_weight_trainable=True)
    assert params["energy_weight"].shape == () and params["energy_weight"] == np.float32(
        module.lambda_energy.item()
    )


@needs_torch
def test_modality_dropout_reproduces_the_original_in_training():
    module = original("modality_dropout").train()
    s, params = convert("modality_dropout", module)
    v, t, tv, tt = inputs(4)
    for seed in range(6):
        torch.manual_seed(seed)
        drops = [torch.rand(1).double().numpy(), torch.rand(1).double().numpy()]
        torch.manual_seed(seed)
        with torch.no_grad():
            expected = module(tv, tt).numpy()
        noise = {"drop_image": drops[0], "drop_text": drops[1]}
        np.testing.assert_allclose(
            fusion_ref.forward(s, params, v, t, training=True, noise=noise),
            expected,
            rtol=1e-10,
            atol=1e-10,
        )


@needs_torch
def test_transformer_concat_original_crashes_and_its_checkpoint_still_imports():
    module = original("transformer_concat").eval()
    v, t, tv, tt = inputs(5)
    with pytest.raises(RuntimeError):
        module(tv, tt)  # the original's defect: in-place write into the expanded token
    token = module.modality_token.detach()[0]  # (2, D)
    s, params = convert("transformer_concat", module)
    np.testing.assert_array_equal(params["modality_embedding"], token.float().numpy())
    with torch.no_grad():
        intent = module.transformer(torch.stack([tv, tt], 1) + token).mean(1).numpy()
        seed_reading = module.transformer(torch.stack([tv, tt], 1)).mean(1).numpy()
    np.testing.assert_allclose(fusion_ref.forward(s, params, v, t), intent, rtol=1e-10, atol=1e-10)
    s0, p0 = convert("transformer_concat", module, modality_embeddings=False)
    assert "modality_embedding" not in p0
    np.testing.assert_allclose(
        fusion_ref.forward(s0, p0, v, t), seed_reading, rtol=1e-10, atol=1e-10
    )


@needs_torch
def test_attention_split_order_is_query_key_value():
    module = original("cross_attention")
    _, params = convert("cross_attention", module)
    packed = module.cross_attn.in_proj_weight.detach().float().numpy()
    np.testing.assert_array_equal(params["attn.query.weight"], packed[:D])
    np.testing.assert_array_equal(params["attn.key.weight"], packed[D : 2 * D])
    np.testing.assert_array_equal(params["attn.value.weight"], packed[2 * D :])


@needs_torch
def test_sizes_are_inferred_from_the_checkpoint():
    s, _ = spec.from_legacy("concat_mlp", original("concat_mlp").state_dict())
    assert (s.dim, s.layers, s.hidden_mult) == (D, 3, 3)
    s, _ = spec.from_legacy("simple", original("simple").state_dict(), heads=HEADS)
    assert (s.dim, s.layers, s.heads) == (D, 2, HEADS)


@needs_torch
def test_legacy_errors_name_the_keys():
    sd = dict(original("gated").state_dict())
    sd.pop("gate.0.bias")
    sd["gate.1.weight"] = torch.zeros(3)
    with pytest.raises(spec.WeightsError) as info:
        spec.from_legacy("gated", sd)
    text = str(info.value)
    assert (
        "missing legacy keys ['gate.0.bias']" in text
        and "unexpected legacy keys ['gate.1.weight']" in text
    )
    bad = dict(original("film").state_dict())
    bad["mlp_beta.weight"] = torch.zeros(D, D + 1)
    with pytest.raises(
        spec.WeightsError,
        match=r"'mlp_beta.weight': expected shape \(12, 12\), received \(12, 13\)",
    ):
        spec.from_legacy("film", bad)
    with pytest.raises(spec.InputError, match=r"argument 'kind' expected one of .*received 'fancy'"):
        spec.from_legacy("fancy", {})
    with pytest.raises(Exception, match="heads"):
        spec.from_legacy("simple", original("simple").state_dict(), heads=5)


@pytest.mark.parametrize(
    "kind, state, kwargs, match",
    [
        ("film", None, {}, r"film: from_legacy argument 'state_dict' expected a mapping of key -> tensor; received None"),
        ("film", [1, 2], {}, r"expected a mapping of key -> tensor; received list of length 2"),
        ("gated", {"gate.0.weight": "w", "gate.0.bias": None}, {}, r"'gate.0.weight': expected an array, received str 'w'; 'gate.0.bias': expected an array, received None"),
        ("gated", {"gate.0.weight": np.float32(1.0), "gate.0.bias": np.zeros(0, np.float32)}, {}, r"gated: cannot infer dim from the legacy state_dict"),
        ("gated", {"gate.0.weight": np.float32(1.0), "gate.0.bias": np.zeros(0, np.float32)}, {"dim": 4}, r"'gate.0.weight': expected shape \(4, 8\), received \(\); 'gate.0.bias': expected shape \(4,\), received \(0,\)"),
        ("concat_mlp", {"mlp.0.weight": np.zeros((3, 8), np.float32), "mlp.0.bias": np.zeros(3), "mlp.3.weight": np.zeros((4, 3)), "mlp.3.bias": np.zeros(4)}, {}, r"'mlp.0.weight': expected shape \(8, 8\), received \(3, 8\)"),
    ],
)
def test_malformed_legacy_state_dicts_are_weights_errors(kind, state, kwargs, match):
    with pytest.raises(spec.WeightsError, match=match):
        spec.from_legacy(kind, state, **kwargs)


@pytest.mark.parametrize(
    "kind, state, received",
    [
        ("gated", {"gate.0.weight": np.float32(1.0), "gate.0.bias": np.zeros(0, np.float32)},
         "'gate.0.bias' of shape (0,), 'gate.0.weight' of shape (), without that axis or with it empty"),
        ("gated", {"gate.1.weight": np.zeros((3, 6))}, "none of them (keys: 'gate.1.weight')"),
        ("gated", {}, "no keys"),
        ("gated", {f"k{i}": np.zeros(2) for i in range(8)},
         "none of them (keys: 'k0', 'k1', 'k2', 'k3', 'k4', 'k5', ... 2 more)"),
    ],
)
def test_an_uninferable_dim_names_the_expected_keys_and_what_was_received(kind, state, received):
    """Each key is listed once: as expected, or as received with its shape when present."""
    with pytest.raises(spec.WeightsError) as info:
        spec.from_legacy(kind, state)
    assert str(info.value) == (
        "gated: cannot infer dim from the legacy state_dict: expected one of 'gate.0.bias' "
        f"(axis 0), 'gate.0.weight' (axis 0); received {received}; pass dim=..."
    )
    with pytest.raises(spec.WeightsError, match=(
        r"^concat_mlp: cannot infer dim from the legacy state_dict: expected a key "
        r"'mlp.<3i>.weight' \(axis 0 gives dim\); received 'mlp.0.weight' of shape \(0, 8\), "
    )):
        spec.from_legacy("concat_mlp", {"mlp.0.weight": np.zeros((0, 8))})


@needs_torch
def test_legacy_errors_say_which_values_were_inferred():
    sd = {k: v.float().numpy() for k, v in original("energy_aware_adaptive").state_dict().items()}
    sd["lambda_energy"] = np.array([np.inf], np.float32)
    with pytest.raises(
        spec.WeightsError,
        match=r"field 'energy_weight': input should be a finite number; received energy_weight=inf "
        r"\(inferred from the checkpoint's shapes: dim=12, energy_weight=inf",
    ):
        spec.from_legacy("energy_aware_adaptive", sd, heads=HEADS)
    sd["lambda_energy"] = np.zeros(0, np.float32)
    with pytest.raises(spec.WeightsError, match=r"legacy key 'lambda_energy' expected one value; received shape \(0,\)"):
        spec.from_legacy("energy_aware_adaptive", sd, heads=HEADS)
    sd["lambda_energy"] = np.array([0.5], np.float32)
    with pytest.raises(spec.SpecError, match=r"field 'heads': input should be greater than 0; received heads=0"):
        spec.from_legacy("energy_aware_adaptive", sd, heads=0)  # the caller's own field: SpecError


@needs_torch
@pytest.mark.parametrize("kind", ["transformer_concat", "shomr", "energy_aware_adaptive"])
def test_from_legacy_sets_the_original_options(kind):
    """A converted checkpoint keeps the original's behaviour (no straight-through router
    gradient, torch.randn modality embeddings); a given field wins over it."""
    module = original(kind)
    s, _ = convert(kind, module)
    fidelity = spec._legacy.FIDELITY[kind]
    assert fidelity and {f: getattr(s, f) for f in fidelity} == fidelity
    for field, value in fidelity.items():
        assert type(s).model_fields[field].default != value, "the default serves training"
        given, _ = convert(kind, module, **{field: type(s).model_fields[field].default})
        assert getattr(given, field) == type(s).model_fields[field].default
    if kind != "transformer_concat":
        assert any(n.startswith("router.") for n in s.no_output_gradient())
