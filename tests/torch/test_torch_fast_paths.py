"""The per-call shortcuts of the PyTorch backend compute what the full path computes.

A call without ``return_aux`` skips what only aux outputs need (energy terms,
attention weights, keep masks in eval); without a gradient to carry, the
straight-through factor is skipped; two-token pooled attention averages the
weights before mixing. None of this may change the output.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch_cases import BATCH, CALL_IDS, CALLS, inputs, make_spec, perturbed_params

from fusion_spec.backends import torch as bt
from fusion_spec.backends.torch import _layers


def _noise(s, training: bool, options: dict, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    noise = {
        n.name: torch.rand(n.shape, generator=gen, dtype=torch.float64)
        for n in s.noise(BATCH, training=training, **options)
    }
    return noise or None


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("case", "options"), CALLS, ids=CALL_IDS)
def test_output_without_aux_is_the_output_with_aux(case, options, training):
    """Bit-identical: both calls run the same kernels on the same inputs and noise (the
    shortcut only drops aux work), so any difference is a changed computation."""
    s = make_spec(case)
    module = bt.build(s, perturbed_params(s)).train(training)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    noise = _noise(s, training, options)
    with torch.no_grad():
        plain = module(v, t, noise=noise, **options)
        with_aux, _ = module(v, t, noise=noise, return_aux=True, **options)
    if training and getattr(s, "dropout", 0.0) > 0.0:
        pytest.skip("element-wise dropout draws from the global generator per call")
    torch.testing.assert_close(plain, with_aux, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("case", ["shomr", "energy_aware_adaptive"])
def test_straight_through_skip_keeps_the_forward_value(case):
    """With and without autograd: ``out + out (r - sg(r))`` (and ``energy_aware_adaptive``'s
    ``out + sum_j (r_j - sg(r_j)) sg(y_j)``) is ``out`` exactly (finite out). Dense dispatch:
    a call that trains the router over every route takes it anyway, and the sparse path
    runs the "both" rows in other matrix shapes (other roundings)."""
    s = make_spec(case)
    assert s.straight_through
    module = bt.build(s, perturbed_params(s), dispatch="dense").train(True)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    noise = _noise(s, True, {})
    with torch.no_grad():
        skipped = module(v, t, noise=noise)
    graded = module(v.requires_grad_(), t, noise=noise)
    assert graded.requires_grad
    torch.testing.assert_close(skipped, graded.detach(), rtol=0.0, atol=0.0)


@pytest.mark.parametrize("heads", [1, 4])
def test_pooled_two_token_attention_is_the_token_mean(heads):
    """The fast pooled path against ``output(mean_q(mix(x, x)))``, in float64 (only the
    order of the additions differs: a few ulp of the values, far below 1e-12)."""
    torch.manual_seed(0)
    attn = _layers.Attention(16, heads).double().eval()
    x = torch.randn(5, 2, 16, dtype=torch.float64)
    general = attn.output(attn.mix(x, x, need_weights=False)[0].mean(dim=1))
    torch.testing.assert_close(attn.pooled(x), general, rtol=1e-12, atol=1e-12)


def test_blend_under_autocast_keeps_the_parameters_dtype():
    s = make_spec("gated")
    module = bt.build(s, perturbed_params(s)).eval()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, aux = module(v, t, return_aux=True)
    assert out.dtype == torch.float32 and aux["gate"].dtype == torch.float32


@pytest.mark.parametrize("case", ["shomr", "energy_aware_adaptive"])
def test_straight_through_gradient_under_torch_func(case):
    """The skip reads ``requires_grad``; under ``torch.func.grad`` (no ``.grad`` fields,
    wrapped tensors) the router still gets its straight-through gradient, equal to
    autograd's (float64: only the order of the additions may differ)."""
    from torch.func import functional_call, grad

    s = make_spec(case)
    assert s.straight_through
    module = bt.build(s.replace(dropout=0.0), perturbed_params(s)).double().train(True)
    v, t = (torch.from_numpy(x).double() for x in inputs(s))
    noise = _noise(s, True, {})
    params = {k: p.detach() for k, p in module.named_parameters()}

    def loss(p):
        return functional_call(module, p, (v, t), {"noise": noise}).sum()

    by_func = grad(loss)(params)
    module(v, t, noise=noise).sum().backward()
    router = "router.out.weight"
    assert by_func[router].abs().sum() > 0
    torch.testing.assert_close(
        by_func[router], module.get_parameter(router).grad, rtol=1e-12, atol=1e-12
    )


def test_a_checked_call_signature_still_fails_after_the_module_moves():
    """The remembered signatures are dropped with the parameters' metadata: a CPU input to
    a module moved to ``meta`` is refused even though the same call passed before."""
    module = bt.build("gated", dim=4)
    v, t = torch.randn(3, 4), torch.randn(3, 4)
    module(v, t)
    module(v, t)  # answered from the remembered signature
    module.to("meta")
    with pytest.raises(bt.InputError, match=r"gated: argument 'v' expected a tensor on meta"):
        module(v, t)


def test_a_checked_call_signature_does_not_cover_other_calls():
    """Only the exact signature is remembered: another shape, dtype or flag is checked."""
    module = bt.build("gated", dim=4)
    v, t = torch.randn(3, 4), torch.randn(3, 4)
    module(v, t, return_aux=True)
    with pytest.raises(
        bt.InputError, match=r"'t' expected shape \(B, 4\) or \(B, L_t, 4\); received shape \(3, 5\)"
    ):
        module(v, torch.randn(3, 5))
    with pytest.raises(bt.InputError, match="return_aux"):
        module(v, t, return_aux=1)  # equal to True as a dict key, still refused
    with pytest.raises(bt.InputError, match="'v' expected a floating dtype; received int64"):
        module(v.to(torch.int64), t)


def test_checked_call_signatures_are_bounded():
    module = bt.build("gated", dim=4)
    for batch in range(1, 2 * _layers._CHECKED_MAX + 2):
        module(torch.randn(batch, 4), torch.randn(batch, 4))
    assert 0 < len(module.__dict__["_checked"]) <= _layers._CHECKED_MAX


@pytest.mark.parametrize(
    "draw",
    [(0.99, 0.99), (0.0, 0.99), (0.99, 0.0), (0.0, 0.0), "boundary"],
    ids=["keep-both", "drop-image", "drop-text", "drop-both", "boundary"],
)
def test_modality_dropout_host_read_is_the_mask_multiply(draw, monkeypatch):
    """Eager CPU calls read the batch's draw and multiply only a dropped half; the traced
    path multiplies both halves by the mask. Bit-identical outputs, aux and input
    gradients (``x * 1`` is exact), a NaN in a dropped half included (``NaN * 0`` is NaN
    both ways). "boundary": the draw is exactly float32(p) with float32(0.7) < 0.7, which
    torch keeps (it compares with p rounded to float32) and a float64 comparison drops."""
    s = make_spec("modality_dropout")
    if draw == "boundary":
        s = s.replace(p_img=0.7, p_txt=0.7)
        draw = (float(np.float32(0.7)), 0.0)
    module = bt.build(s, perturbed_params(s)).train(True)
    noise = {
        "drop_image": torch.tensor([draw[0]], dtype=torch.float32),
        "drop_text": torch.tensor([draw[1]], dtype=torch.float32),
    }
    v0, t0 = (torch.from_numpy(x) for x in inputs(s))
    v0[0, 0] = float("nan")

    def run():
        v, t = v0.clone().requires_grad_(), t0.clone().requires_grad_()
        out, aux = module(v, t, noise=noise, return_aux=True)
        torch.nan_to_num(out, nan=0.0).sum().backward()
        return out, aux, v.grad, t.grad

    rule = sys.modules[type(module).__module__]
    reads = []
    monkeypatch.setattr(
        rule, "batch_values", lambda *x: reads.append(x) or _layers.batch_values(*x)
    )
    read = run()
    assert len(reads) == 1  # eager, CPU: the draw was read
    monkeypatch.setattr(_layers, "static_shapes_required", lambda: True)
    masked = run()
    assert len(reads) == 1  # "compiling": the mask multiply, no read
    for a, b in zip(read, masked, strict=True):
        torch.testing.assert_close(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    # keep where u >= p compared in float32, as torch compares (the boundary draw is kept)
    kept = [
        float(np.float32(u) >= np.float32(p)) for u, p in zip(draw, (s.p_img, s.p_txt), strict=True)
    ]
    assert read[1]["keep_image"].tolist() == [kept[0]] * v0.shape[0]
    assert read[1]["keep_text"].tolist() == [kept[1]] * v0.shape[0]


@pytest.mark.parametrize("case", ["modality_dropout", "shomr", "energy_aware_adaptive"])
def test_per_sample_calls_under_vmap(case):
    """``torch.func.vmap`` (per-sample gradients, ...): the rules that read CPU tensors in
    eager calls take their host-free path there, and each sample's output is what a
    batch of one computes with the same noise. Float64 (the vmapped products sum in
    another order: 1e-12 is about 1e4 float64 epsilons, far below any real change)."""
    s = make_spec(case)
    if getattr(s, "dropout", 0.0) > 0.0:  # element-wise dropout draws per call
        s = s.replace(dropout=0.0)
    module = bt.build(s, perturbed_params(s)).double().train(True)
    v, t = (torch.from_numpy(x).double() for x in inputs(s))
    noise = {
        k: u.expand(v.shape[0], *u.shape[1:]) if u.shape[0] == 1 else u
        for k, u in _noise(s, True, {}, seed=3).items()
    }  # one row of noise per sample (a batch of one draws one)

    def one(a, b, u):
        return module(a[None], b[None], noise={k: x[None] for k, x in u.items()})[0]

    mapped = torch.func.vmap(one)(v, t, noise)
    looped = torch.stack(
        [one(v[i], t[i], {k: x[i] for k, x in noise.items()}) for i in range(len(v))]
    )
    torch.testing.assert_close(mapped, looped, rtol=1e-12, atol=1e-12)
