"""``energy_aware_adaptive`` with ``straight_through_routes="all"``: the router's gradient
is that of the mixture of every route's output, the forward value is the routed output.
"""

from __future__ import annotations

import pytest
import torch
from torch_cases import inputs, make_spec, perturbed_params

from fusion_spec import spec
from fusion_spec.backends import torch as bt
from fusion_spec.backends.torch._layers import straight_through_routes


def _probs_and_outputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    outputs = tuple(torch.randn(5, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    return logits, outputs


def test_router_gradient_is_the_mixture_gradient():
    """d/dlogits of <R, out> equals that of <R, sum_j r_j y_j> with the outputs held
    (float64; the two sums differ only in the order of the additions)."""
    logits, outputs = _probs_and_outputs()
    route = torch.tensor([0, 1, 2, 2, 1])
    R = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = torch.softmax(logits, dim=-1)
    routed = torch.stack(outputs, 1)[torch.arange(5), route]
    (got,) = torch.autograd.grad((R * straight_through_routes(routed, r, outputs)).sum(), logits)
    r = torch.softmax(logits, dim=-1)  # a fresh graph for the second gradient
    mixture = (r[:, :, None] * torch.stack(outputs, 1)).sum(1)
    (want,) = torch.autograd.grad((R * mixture).sum(), logits)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_non_finite_route_reaches_neither_the_output_nor_the_gradient():
    """A route whose output is inf or NaN on some rows: the routed output comes back
    bit for bit, and the router's gradient is finite (that route counts as 0)."""
    logits, (y0, y1, y2) = _probs_and_outputs()
    y2 = y2.clone()
    y2[1, 0], y2[3, 2] = float("inf"), float("nan")
    r = torch.softmax(logits, dim=-1)
    routed = y0  # every row routed to the image path
    out = straight_through_routes(routed, r, (y0, y1, y2))
    torch.testing.assert_close(out, routed, rtol=0.0, atol=0.0)
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


#: per kind, the call options that route every sample (shomr: every sample hard)
ROUTED = {"energy_aware_adaptive": {}, "shomr": {"use_hard_routing": True}}


@pytest.mark.parametrize("kind", list(ROUTED))
def test_training_with_sparse_dispatch_computes_both_for_every_row(kind):
    """The router's gradient reads every route's output on every routed sample: a sparse
    module (which would compute each path on its own rows only) trains exactly as a
    dense one."""
    s = make_spec(kind).replace(dropout=0.0)
    assert s.straight_through and s.straight_through_routes == "all"
    params = perturbed_params(s)
    v, t = (torch.from_numpy(x).double() for x in inputs(s))
    noise = {"route": torch.rand(v.shape[0], generator=torch.Generator().manual_seed(2),
                                 dtype=torch.float64)}
    grads = []
    for dispatch in ("dense", "sparse"):
        module = bt.build(s, params, dispatch=dispatch).double().train(True)
        out, aux = module(v, t, noise=noise, return_aux=True, **ROUTED[kind])
        assert 0 < int((aux["route"] == 2).sum()) < v.shape[0]  # some rows elsewhere
        out.square().sum().backward()
        grads.append(module.get_parameter("router.out.weight").grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0.0, atol=0.0)


@pytest.mark.parametrize("kind", list(ROUTED))
def test_chosen_and_all_differ_only_in_the_router_gradient(kind):
    """Same forward value; the experts' gradients equal; the router's differ."""
    s = make_spec(kind).replace(dropout=0.0)
    params = perturbed_params(s)
    v, t = (torch.from_numpy(x).double() for x in inputs(s))
    noise = {"route": torch.rand(v.shape[0], generator=torch.Generator().manual_seed(3),
                                 dtype=torch.float64)}
    outs, grads = [], []
    for routes in ("all", "chosen"):
        module = bt.build(s.replace(straight_through_routes=routes), params, dispatch="dense")
        module = module.double().train(True)
        out = module(v, t, noise=noise, **ROUTED[kind])
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append({k: p.grad for k, p in module.named_parameters()})
    torch.testing.assert_close(outs[0], outs[1], rtol=0.0, atol=0.0)
    torch.testing.assert_close(grads[0]["ffn.up.weight"], grads[1]["ffn.up.weight"],
                               rtol=1e-12, atol=1e-12)
    diff = (grads[0]["router.out.weight"] - grads[1]["router.out.weight"]).abs().max()
    assert diff > 1e-3 * grads[1]["router.out.weight"].abs().max()


@pytest.mark.parametrize("kind", ["energy_aware_adaptive", "shomr"])
def test_a_file_written_before_the_field_trains_as_it_did(kind):
    """A stored spec without ``straight_through_routes`` (written before it) loads as
    ``"chosen"``; other kinds take nothing from it."""
    stored = spec.parse(kind, dim=8).model_dump()
    assert stored["straight_through_routes"] == "all"  # today's default
    del stored["straight_through_routes"]
    assert spec.parse_stored(stored).straight_through_routes == "chosen"
    assert spec.parse_stored({**stored, "straight_through_routes": "all"}).straight_through_routes == "all"
    gated = spec.parse("gated", dim=8).model_dump()
    assert spec.parse_stored(gated) == spec.parse("gated", dim=8)
