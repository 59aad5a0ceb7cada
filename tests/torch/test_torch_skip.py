"""The routing rules' sparse dispatch computes the same function as the dense one."""

from __future__ import annotations

import pytest
import torch
from torch_cases import BATCH, inputs, make_spec, perturbed_params

from fusion_spec import spec
from fusion_spec.backends import torch as bt

ROUTED = ["shomr", "shomr_variant", "energy_aware_adaptive", "energy_aware_adaptive_variant"]
OPTIONS = {
    "shomr": [{}, {"use_hard_routing": True}, {"use_hard_routing": False}],
    "energy_aware_adaptive": [{}, {"progress": 0.5}],
}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", ROUTED)
def test_sparse_matches_dense(case, training):
    s = make_spec(case)
    params = perturbed_params(s)
    dense = bt.build(s, params, dispatch="dense").train(training)
    skipping = bt.build(s, params, dispatch="sparse").train(training)
    gen = torch.Generator().manual_seed(0)
    v, t = (torch.from_numpy(x).double() for x in inputs(s))
    dense.double()
    skipping.double()
    for options in OPTIONS[s.kind]:
        noise = {
            n.name: torch.rand(n.shape, generator=gen, dtype=torch.float64)
            for n in s.noise(BATCH, training=training, **options)
        }
        vd, td = v.clone().requires_grad_(), t.clone().requires_grad_()
        vs, ts = v.clone().requires_grad_(), t.clone().requires_grad_()
        expected, expected_aux = dense(vd, td, noise=noise or None, return_aux=True, **options)
        actual, aux = skipping(vs, ts, noise=noise or None, return_aux=True, **options)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
        for name, value in expected_aux.items():
            torch.testing.assert_close(aux[name], value, rtol=1e-12, atol=1e-12)
        weights = torch.linspace(-1, 1, s.dim, dtype=torch.float64)
        (expected * weights).sum().backward()
        (actual * weights).sum().backward()
        torch.testing.assert_close(vs.grad, vd.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ts.grad, td.grad, rtol=1e-12, atol=1e-12)
    for (name, a), (_, b) in zip(
        dense.named_parameters(), skipping.named_parameters(), strict=True
    ):
        if a.grad is None:
            assert b.grad is None or not torch.any(b.grad != 0), name
        else:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("use_hard_routing", [False, True])
def test_sparse_with_no_sample_on_a_path(use_hard_routing):
    """Empty buckets: every sample soft (no hard path runs), or every sample hard."""
    s = make_spec("shomr")
    module = bt.build(s, perturbed_params(s), skip_unrouted=True).eval()  # the older spelling
    assert module.dispatch == "sparse"
    dense = bt.build(s, perturbed_params(s), dispatch="dense").eval()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    torch.testing.assert_close(
        module(v, t, use_hard_routing=use_hard_routing),
        dense(v, t, use_hard_routing=use_hard_routing),
    )


@pytest.mark.parametrize("route", [0, 2])
def test_energy_sparse_with_every_sample_on_one_route(route):
    s = make_spec("energy_aware_adaptive")
    params = perturbed_params(s)
    sparse = bt.build(s, params, dispatch="sparse").train()
    dense = bt.build(s, params, dispatch="dense").train()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    u = torch.full((BATCH,), 0.0 if route == 0 else 0.999999)  # first or last route
    for module in (sparse, dense):
        module.ffn.output_dropout = 0.0
        module.attn.dropout = 0.0
    expected, aux = dense(v, t, noise={"route": u}, return_aux=True)
    assert set(aux["route"].tolist()) == {route}
    torch.testing.assert_close(sparse(v, t, noise={"route": u}), expected)


def test_dispatch_is_validated():
    with pytest.raises(spec.InputError, match=r"^shomr: argument 'dispatch' expected one of \['auto', 'dense', 'sparse'\]; received str 'fast'$"):
        bt.build(make_spec("shomr"), dispatch="fast")
    with pytest.raises(spec.InputError, match=r"gated: argument 'dispatch' expected None"):
        bt.build(make_spec("gated"), dispatch="dense")


def test_dispatch_is_validated_whenever_it_is_set():
    """`module.dispatch = "bogus"` after build ran as dense; now every assignment is
    checked and a refused one leaves the module as it was."""
    module = bt.build(make_spec("energy_aware_adaptive"), dispatch="sparse")
    for bad, shown in (("bogus", "str 'bogus'"), (None, "None"), (["dense"], "list of length 1")):
        with pytest.raises(spec.InputError) as info:
            module.dispatch = bad
        assert str(info.value) == (
            "energy_aware_adaptive: argument 'dispatch' expected one of ['auto', 'dense', "
            f"'sparse']; received {shown}"
        )
    assert module.dispatch == "sparse"
    module.dispatch = "dense"
    assert module.dispatch == "dense" and "dispatch='dense'" in repr(module)
    gated = bt.build(make_spec("gated"))
    with pytest.raises(spec.InputError, match=r"^gated: attribute 'dispatch' expected no assignment: the rule does not route samples; received str 'dense'$"):
        gated.dispatch = "dense"
    assert not hasattr(gated, "dispatch")


def test_skip_unrouted_only_for_routing_rules():
    with pytest.raises(ValueError, match="gated: argument 'skip_unrouted' expected False"):
        bt.build(make_spec("gated"), skip_unrouted=True)
