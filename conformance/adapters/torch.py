"""The PyTorch backend (``fusion_spec.backends.torch``) as a conformance adapter, float32 on the CPU."""

from __future__ import annotations

import numpy as np
import torch

import fusion_spec.backends.torch as torch_backend

from ..adapter import Adapter


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class TorchAdapter(Adapter):
    name = "torch"
    dtype = "float32"
    supports_present = True

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def describe(self) -> str:
        return f"torch {torch.__version__} (CPU, float32)"

    def build(self, s, params):
        return torch_backend.build(s, params, generator=self.generator)

    def _call(self, module, v, t, training, noise, options, present=None):
        module.train(training)
        present = None if present is None else torch.from_numpy(np.asarray(present))
        noise = (
            None
            if noise is None
            else {k: torch.from_numpy(np.asarray(u)) for k, u in noise.items()}
        )
        return module(v, t, present, noise=noise, return_aux=True, **options)

    def forward(self, model, v, t, *, training, noise, options, present=None):
        with torch.no_grad():
            out, aux = self._call(
                model, torch.from_numpy(v), torch.from_numpy(t), training, noise, options, present
            )
        return _numpy(out), {k: _numpy(a) for k, a in aux.items()}

    def canonical_params(self, model):
        """Read from ``named_parameters()``, torch's registry, so an unregistered param is missing."""
        return {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}

    def gradients(self, model, v, t, cotangent, *, training, noise, options, present=None):
        model.zero_grad(set_to_none=True)
        tv = torch.from_numpy(v).requires_grad_(True)
        tt = torch.from_numpy(t).requires_grad_(True)
        out, _ = self._call(model, tv, tt, training, noise, options, present)
        (out * torch.from_numpy(cotangent).to(out.dtype)).sum().backward()
        grads = {"v": _numpy(tv.grad), "t": _numpy(tt.grad)}
        for name, p in model.named_parameters():
            if p.grad is not None:
                grads[name] = _numpy(p.grad)
        return grads
