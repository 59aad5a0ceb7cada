"""Broken PyTorch backends: an unregistered parameter, and the tanh GELU judged in float32.

Kept apart from ``fusion_spec.conformance.broken`` so that the reference-based broken
backends run without PyTorch installed.
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
        *path, attr = s.params()[-1].name.split(".")
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
        modules = [m for name, m in sys.modules.items() if name.startswith("fusion_spec.backends.torch")]
        saved = [(m, m.gelu) for m in modules if hasattr(m, "gelu")]
        try:
            for m, _ in saved:
                m.gelu = _tanh_gelu
            return super()._call(module, v, t, training, noise, options, present)
        finally:
            for m, original in saved:
                m.gelu = original
