"""The PyTorch backend (``fusion_spec.backends.torch``) as a conformance adapter, float32.

``device="cuda"`` runs the modules and every tensor on the current CUDA device;
``precision`` sets ``torch.set_float32_matmul_precision`` for this process
(``"float32"`` is ``"highest"``, PyTorch's default; ``"tensorfloat32"`` is
``"high"``, TF32 products on GPUs that have them) and selects the tolerance policy.
"""

from __future__ import annotations

import numpy as np
import torch

import fusion_spec.backends.torch as torch_backend

from ..adapter import Adapter
from . import check_settings, policy_dtype


def _numpy(x) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


class TorchAdapter(Adapter):
    name = "torch"
    supports_present = True
    supports_aux_gradients = True
    supports_tokens = True

    def __init__(self, seed: int = 0, device: str = "cpu", precision: str = "float32"):
        check_settings(device, precision)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                "torch adapter: argument 'device' expected a usable device; received 'cuda', "
                "but torch.cuda.is_available() is False"
            )
        torch.set_float32_matmul_precision("high" if precision == "tensorfloat32" else "highest")
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = policy_dtype(precision)
        self.generator = torch.Generator().manual_seed(seed)
        # stochastic decisions without injected noise draw on the inputs' device
        self.device_generator = (
            self.generator
            if device == "cpu"
            else torch.Generator(device=self.device).manual_seed(seed)
        )

    def describe(self) -> str:
        where = (
            f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(self.device)}"
            if self.device.type == "cuda"
            else "CPU"
        )
        what = {
            "bfloat16": "bfloat16 params",
            "bfloat16-autocast": "float32 params, bfloat16 autocast",
        }.get(self.precision, "float32")
        return (
            f"torch {torch.__version__} ({where}, {what}, "
            f"matmul precision {torch.get_float32_matmul_precision()})"
        )

    def build(self, s, params):
        module = torch_backend.build(s, params, generator=self.generator).to(self.device)
        if self.precision == "bfloat16":
            module = module.to(torch.bfloat16)
        module.generator = self.device_generator
        return module

    def _tensor(self, x) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x)).to(self.device)

    def _call(self, module, v, t, training, noise, options, present=None, **masks):
        module.train(training)
        present = None if present is None else self._tensor(present)
        masks = {k: self._tensor(m) for k, m in masks.items() if m is not None}
        noise = None if noise is None else {k: self._tensor(u) for k, u in noise.items()}
        autocast = self.precision == "bfloat16-autocast"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            return module(v, t, present, noise=noise, return_aux=True, **masks, **options)

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        with torch.no_grad():
            out, aux = self._call(
                model, self._tensor(v), self._tensor(t), training, noise, options, present,
                **masks,
            )
        return _numpy(out), {k: _numpy(a) for k, a in aux.items()}

    def canonical_params(self, model):
        """Read from torch's registries (``named_parameters()``, ``named_buffers()`` for the
        running statistics), so an unregistered param is missing."""
        tensors = [*model.named_parameters(), *model.named_buffers()]
        return {n: _numpy(p).copy() for n, p in tensors}

    def gradients(
        self, model, v, t, cotangent, *, training, noise, options, present=None, aux_cotangents=None,
        **masks,
    ):
        model.zero_grad(set_to_none=True)
        tv = self._tensor(v).requires_grad_(True)
        tt = self._tensor(t).requires_grad_(True)
        out, aux = self._call(model, tv, tt, training, noise, options, present, **masks)
        loss = (out.float() * self._tensor(cotangent)).sum()
        for name, r in (aux_cotangents or {}).items():
            loss = loss + (aux[name].float() * self._tensor(r)).sum()
        loss.backward()
        grads = {"v": _numpy(tv.grad), "t": _numpy(tt.grad)}
        for name, p in model.named_parameters():
            if p.grad is not None:
                grads[name] = _numpy(p.grad)
        return grads
