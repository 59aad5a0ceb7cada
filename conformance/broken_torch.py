"""A broken PyTorch backend: a parameter that is never registered with ``torch.nn``.

Kept apart from ``conformance.broken`` so that the reference-based broken
backends run without PyTorch installed.
"""

from __future__ import annotations

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
