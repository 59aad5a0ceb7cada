"""Broken PyTorch backends: the planted bugs that need autodiff or float32.

An unregistered parameter, the tanh GELU judged in float32, and the gradient
bugs: the forward value is right, the gradient is not (a detached gate or
``beta``, a straight-through factor ignored, on soft samples, or on the wrong
route). Each gradient bug is written as the correct module's output plus a
term that is exactly 0 forward (``x - x.detach()``), which is the graph the bug
would build. Kept apart from ``fusion_spec.conformance.broken`` so that the
reference-based broken backends run without PyTorch installed.
"""

from __future__ import annotations

import sys

from .adapters.torch import TorchAdapter


class TorchUnregisteredParam(TorchAdapter):
    """The PyTorch module with its last canonical param turned into a plain tensor attribute.

    The forward still reads it, so outputs are right; but ``named_parameters()``,
    ``state_dict()``, ``.to()`` and every optimiser miss it.
    """

    bug = "unregistered-param"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.name = "broken-torch-unregistered-param"

    def build(self, s, params):
        module = super().build(s, params)
        *path, attr = s.rule_params()[-1].name.split(".")  # a trained param, not a buffer
        owner = module.get_submodule(".".join(path))
        value = getattr(owner, attr).detach().clone()
        del owner._parameters[attr]
        setattr(owner, attr, value)
        return module


def _tanh_gelu(x):
    import torch.nn.functional as F

    return F.gelu(x, approximate="tanh")


class TorchTanhGelu(TorchAdapter):
    """The PyTorch backend computing GELU with the tanh approximation: judged in float32."""

    bug = "tanh-gelu"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.name = "broken-torch-tanh-gelu"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        modules = [
            m for name, m in sys.modules.items() if name.startswith("fusion_spec.backends.torch")
        ]
        saved = [(m, m.gelu) for m in modules if hasattr(m, "gelu")]
        try:
            for m, _ in saved:
                m.gelu = _tanh_gelu
            return super()._call(module, v, t, training, noise, options, present, **masks)
        finally:
            for m, original in saved:
                m.gelu = original


class _TorchBug(TorchAdapter):
    """The PyTorch backend with one planted bug, named ``broken-torch-<bug>``."""

    bug = ""
    #: As ``broken._Broken.equal_widths``: the bug reads the raw ``v``, ``t``.
    equal_widths = False

    @property
    def supports_tokens(self) -> bool:  # type: ignore[override]
        """A bug that reads the raw ``v``, ``t`` reads vectors: token cases are n/a."""
        return not self.equal_widths

    def not_applicable(self, s, *, training):
        if self.equal_widths and s.projected():
            return f"{self.name}: planted for inputs of width dim (no input projections)"
        return super().not_applicable(s, training=training)

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.name = f"broken-torch-{self.bug}"


def _route_factor(out, probs, route):
    """``r_k - stop_gradient(r_k)`` per sample ``(B, 1)``: 0 forward, ``dr_k`` backward."""
    # route -1 (a sample with neither modality, output zero) reads column 0
    r_k = probs.gather(1, route.clamp(min=0)[:, None]).to(out.dtype)
    return r_k - r_k.detach()


class StraightThroughOnSoftSamples(_TorchBug):
    """``shomr``: the straight-through factor applied to soft samples as well as hard ones."""

    bug = "straight-through-on-soft-samples"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        import torch

        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if module.spec.kind == "shomr" and module.spec.straight_through:
            soft = (aux["hard"] == 0)[:, None]
            factor = _route_factor(out, aux["route_probs"], aux["route"])
            out = torch.where(soft, out + out * factor, out)
        return out, aux


class StraightThroughIgnored(_TorchBug):
    bug = "straight-through-ignored"

    def build(self, s, params):
        if getattr(s, "straight_through", False):
            s = s.model_copy(update={"straight_through": False})
        return super().build(s, params)


class StraightThroughChosenRouteOnly(_TorchBug):
    """``shomr``, ``energy_aware_adaptive``: ``straight_through_routes="all"`` read as ``"chosen"``:
    the router's gradient from the routed output alone, never the other routes'."""

    bug = "straight-through-chosen-route-only"

    def build(self, s, params):
        if getattr(s, "straight_through_routes", None) == "all":
            s = s.model_copy(update={"straight_through_routes": "chosen"})
        return super().build(s, params)


class StraightThroughArgmaxRoute(_TorchBug):
    """The straight-through factor built from the argmax route's probability, not the route's."""

    bug = "straight-through-argmax-route"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if getattr(module.spec, "straight_through", False):
            r, route = aux["route_probs"], aux["route"]
            wrong = _route_factor(out, r, r.argmax(dim=-1)) - _route_factor(out, r, route)
            routed = aux["hard"][:, None] if "hard" in aux else 1.0
            out = out + out * wrong * routed
        return out, aux


class GateDetached(_TorchBug):
    """``gated``: ``g`` detached, so ``gate.*`` and the gate's path get no gradient."""

    bug = "gate-detached"
    equal_widths = True

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if module.spec.kind == "gated":
            g = aux["gate"]
            out = out - (g - g.detach()) * (v - t)
        return out, aux


class BetaDetached(_TorchBug):
    """``film``: ``beta`` detached, so ``beta.*`` get no gradient."""

    bug = "beta-detached"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if module.spec.kind == "film":
            out = out - (aux["beta"] - aux["beta"].detach())
        return out, aux


class LoneGradientPassed(_TorchBug):
    """``cross_attention``: ``lone_gradient="stop"`` ignored, so a lone sample's present
    input gets its gradient (the forward pass is the same)."""

    bug = "lone-gradient-passed"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        from fusion_spec.backends.torch import _layers

        stop = _layers._stop_lone
        _layers._stop_lone = lambda s, m, v, t: (v, t)
        try:
            return super()._call(module, v, t, training, noise, options, present, **masks)
        finally:
            _layers._stop_lone = stop


def _patch_layer_norms(module, forward) -> None:
    """Every ``nn.LayerNorm`` of ``module`` computes ``forward(norm, x)`` instead."""
    import types

    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.forward = types.MethodType(forward, m)


def _one_pass_forward(norm, x):
    """LayerNorm with the one-pass variance ``E[x^2] - E[x]^2`` in the input's precision."""
    import torch

    mean = x.mean(-1, keepdim=True)
    var = (x * x).mean(-1, keepdim=True) - mean * mean
    return (x - mean) * torch.rsqrt(var.clamp(min=0) + norm.eps) * norm.weight + norm.bias


def _eps_outside_sqrt_forward(norm, x):
    """LayerNorm dividing by ``sqrt(var) + eps`` instead of ``sqrt(var + eps)``."""
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).square().mean(-1, keepdim=True)
    return (x - mean) / (var.sqrt() + norm.eps) * norm.weight + norm.bias


class LayerNormOnePass(_TorchBug):
    """Every LayerNorm with the one-pass variance in float32: exact for centred inputs,
    a large common offset cancels the spread away."""

    bug = "layer-norm-one-pass"

    def build(self, s, params):
        module = super().build(s, params)
        _patch_layer_norms(module, _one_pass_forward)
        return module


class LayerNormEpsOutsideSqrt(_TorchBug):
    """Every LayerNorm divides by ``sqrt(var) + eps``: within 1e-5 of the spec at unit
    variance, far off when the variance is below epsilon."""

    bug = "layer-norm-eps-outside-sqrt"

    def build(self, s, params):
        module = super().build(s, params)
        _patch_layer_norms(module, _eps_outside_sqrt_forward)
        return module


class StraightThroughTemperatureOne(_TorchBug):
    """``shomr``: the straight-through factor built from the probabilities at temperature 1,
    ``softmax(z)``, not the routed ``softmax(z / T)``: right forward, and right at T = 1."""

    bug = "straight-through-temperature-1"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        import torch

        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        s = module.spec
        if s.kind == "shomr" and s.straight_through:
            r = aux["route_probs"]
            r1 = torch.softmax(s.routing_temperature * torch.log(r.clamp(min=1e-30)), dim=-1)  # softmax(z)
            wrong = _route_factor(out, r1, aux["route"]) - _route_factor(out, r, aux["route"])
            out = out + out * wrong * aux["hard"][:, None]
        return out, aux


def _energy_loss(module, aux, *, detach_router: bool = False, detach_weight: bool = False):
    """``energy_aware_adaptive``'s loss rebuilt from the aux, with a part detached."""
    import torch

    s = module.spec
    e = aux["expected_energy"]
    e = e.detach() if detach_router else e
    weight = module.energy_weight if s.energy_weight_trainable else torch.tensor(s.energy_weight)
    weight = weight.detach() if detach_weight else weight
    mean = e.mean() if e.numel() else e.new_zeros(())
    return weight * torch.relu(mean - s.energy_budget_mJ)


class EnergyLossRouterDetached(_TorchBug):
    """``energy_aware_adaptive``: the energy loss built from detached router probabilities
    (a logging copy): right value, no gradient to the router."""

    bug = "energy-loss-router-detached"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if module.spec.kind == "energy_aware_adaptive":
            aux["energy_loss"] = _energy_loss(module, aux, detach_router=True)
        return out, aux


class EnergyWeightDetached(_TorchBug):
    """``energy_aware_adaptive``: a trainable ``energy_weight`` read detached: right value,
    the weight never learns."""

    bug = "energy-weight-detached"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        if module.spec.kind == "energy_aware_adaptive":
            aux["energy_loss"] = _energy_loss(module, aux, detach_weight=True)
        return out, aux


class LayerNormEps1e6(_TorchBug):
    """Every LayerNorm with epsilon 1e-6 (Flax's ``nn.LayerNorm`` default) instead of the
    spec's 1e-5: 5e-6 relative at unit variance, a factor of 3 below epsilon."""

    bug = "layer-norm-eps-1e-6"

    def build(self, s, params):
        from torch import nn

        module = super().build(s, params)
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-6
        return module


class EnergyLossPerSampleReluGradient(_TorchBug):
    """``energy_aware_adaptive``: the energy loss's value right, its gradient that of
    ``lambda * mean(relu(e_b - budget))``: samples under the budget get none."""

    bug = "energy-loss-per-sample-relu-gradient"

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        import torch

        out, aux = super()._call(module, v, t, training, noise, options, present, **masks)
        s = module.spec
        if s.kind == "energy_aware_adaptive":
            e = aux["expected_energy"]
            weight = module.energy_weight if s.energy_weight_trainable else s.energy_weight
            wrong = weight * torch.relu(e - s.energy_budget_mJ).mean()
            aux["energy_loss"] = aux["energy_loss"] + (wrong - wrong.detach())
        return out, aux
