"""The benchmarks' faithful baseline of the original computes our function on our weights.

``benchmarks/original.py`` rebuilds the original modules' structure (boolean-mask
routing with per-route gathers, ``nn.TransformerEncoder``'s fast path) and loads
our canonical params through ``spec.to_legacy``. A speed comparison against it
means something only if both compute the same function: checked here, rule by
rule, in eval (fast paths taken) and, for the routing rules, in training with
the routes our module drew, outputs and input gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.original import original
from fusion_spec import spec
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance
from tests.conftest import make_spec, perturbed_params

TOL = tolerance("float32")
B = 96


def _inputs(s, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, s.dim, generator=gen), torch.randn(B, s.dim, generator=gen)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    # float32 policy: the two compute the same float64 function in different orders
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item()
    assert err <= TOL["atol"] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_same_function_in_eval(kind):
    # routing rules: the router bias drawn as the original's (uniform), whose decisions
    # spread over the routes; the default (0, 0, 2) sends these inputs to "both" alone
    routed = kind in ("shomr", "energy_aware_adaptive")
    s = make_spec(kind, **({"router_init_bias": None} if routed else {}))
    params = perturbed_params(s)
    ours = bt.build(s, params).eval()
    kwargs = {"eval_routing": "argmax"} if kind == "energy_aware_adaptive" else {}
    base = original(s, params, **kwargs).eval()
    v, t = _inputs(s)
    with torch.inference_mode():  # the encoder's fused fast path
        out, aux = ours(v, t, return_aux=True)
        assert_close(base(v, t), out, kind)
    if kind in ("shomr", "energy_aware_adaptive"):
        hard = aux["hard"].bool() if kind == "shomr" else torch.ones(B, dtype=torch.bool)
        taken = set(aux["route"][hard].tolist()) | ({"soft"} if (~hard).any() else set())
        assert len(taken) >= 2, f"{kind}: the inputs exercise only {taken}"


@pytest.mark.parametrize("use_hard_routing", [True, False])
def test_shomr_forced_routing(use_hard_routing):
    s = make_spec("shomr")
    params = perturbed_params(s, seed=3)
    ours, base = bt.build(s, params).eval(), original(s, params).eval()
    v, t = _inputs(s, seed=3)
    with torch.no_grad():
        expected = ours(v, t, use_hard_routing=use_hard_routing)
        assert_close(base(v, t, use_hard_routing=use_hard_routing), expected, "shomr")


@pytest.mark.parametrize("kind", ["shomr", "energy_aware_adaptive"])
def test_same_function_and_gradients_in_training_on_the_same_routes(kind):
    # dropout 0: the two draw dropout masks differently; no straight-through (our default,
    # which the original lacks): its factor changes the input gradients, not the output
    s = make_spec(kind, straight_through=False)
    params = perturbed_params(s, seed=1)
    ours, base = bt.build(s, params).train(), original(s, params).train()
    v, t = _inputs(s, seed=1)
    noise = {n.name: torch.rand(n.shape) for n in s.noise(B, training=True)}
    grads = []
    outs = []
    for module, route_arg in ((ours, None), (base, "route")):
        tv, tt = v.clone().requires_grad_(True), t.clone().requires_grad_(True)
        if route_arg is None:
            out, aux = module(tv, tt, noise=noise, return_aux=True)
            route = aux["route"]
        else:
            out = module(tv, tt, route=route)
        (out * torch.linspace(-1.0, 1.0, s.dim)).sum().backward()
        outs.append(out.detach())
        grads.append((tv.grad, tt.grad))
    assert len(set(route.tolist())) == 3, "every route taken"
    assert_close(outs[1], outs[0], f"{kind} output")
    for name, a, e in zip("vt", grads[1], grads[0], strict=True):
        assert_close(a, e, f"{kind} grad {name}")


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_to_legacy_inverts_from_legacy(kind):
    s = make_spec(kind)
    params = perturbed_params(s)
    fields = {k: v for k, v in s.model_dump().items() if k != "kind"}
    s2, back = spec.from_legacy(kind, spec.to_legacy(s, params), **fields)
    assert s2 == s
    assert sorted(back) == sorted(params)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value, name)
