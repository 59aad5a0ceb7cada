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

    def _call(self, module, v, t, training, noise, options, present=None):
        modules = [
            m for name, m in sys.modules.items() if name.startswith("fusion_spec.backends.torch")
        ]
        saved = [(m, m.gelu) for m in modules if hasattr(m, "gelu")]
        try:
            for m, _ in saved:
                m.gelu = _tanh_gelu
            return super()._call(module, v, t, training, noise, options, present)
        finally:
            for m, original in saved:
                m.gelu = original


class _TorchBug(TorchAdapter):
    """The PyTorch backend with one planted bug, named ``broken-torch-<bug>``."""

    bug = ""

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

    def _call(self, module, v, t, training, noise, options, present=None):
        import torch

        out, aux = super()._call(module, v, t, training, noise, options, present)
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


class StraightThroughArgmaxRoute(_TorchBug):
    """The straight-through factor built from the argmax route's probability, not the route's."""

    bug = "straight-through-argmax-route"

    def _call(self, module, v, t, training, noise, options, present=None):
        out, aux = super()._call(module, v, t, training, noise, options, present)
        if getattr(module.spec, "straight_through", False):
            r, route = aux["route_probs"], aux["route"]
            wrong = _route_factor(out, r, r.argmax(dim=-1)) - _route_factor(out, r, route)
            routed = aux["hard"][:, None] if "hard" in aux else 1.0
            out = out + out * wrong * routed
        return out, aux


class GateDetached(_TorchBug):
    """``gated``: ``g`` detached, so ``gate.*`` and the gate's path get no gradient."""

    bug = "gate-detached"

    def _call(self, module, v, t, training, noise, options, present=None):
        out, aux = super()._call(module, v, t, training, noise, options, present)
        if module.spec.kind == "gated":
            g = aux["gate"]
            out = out - (g - g.detach()) * (v - t)
        return out, aux


class BetaDetached(_TorchBug):
    """``film``: ``beta`` detached, so ``beta.*`` get no gradient."""

    bug = "beta-detached"

    def _call(self, module, v, t, training, noise, options, present=None):
        out, aux = super()._call(module, v, t, training, noise, options, present)
        if module.spec.kind == "film":
            out = out - (aux["beta"] - aux["beta"].detach())
        return out, aux
