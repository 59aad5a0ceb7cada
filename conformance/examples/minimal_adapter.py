"""A complete minimal backend and its adapter: ``gated`` and ``film`` in float32 NumPy.

The backend is deliberately tiny (two rules, hand-written gradients) so the
adapter's five methods stand out. Judge it with either runner::

    python -m fusion_spec.conformance --backend fusion_spec.conformance.examples.minimal_adapter:MinimalAdapter
    pytest -p fusion_spec.conformance.pytest_plugin \
        --fusion-adapter=fusion_spec.conformance.examples.minimal_adapter:MinimalAdapter
"""

from __future__ import annotations

import numpy as np

from fusion_spec.conformance.adapter import Adapter


class TinyFusion:
    """The "framework": a float32 model of ``gated`` or ``film`` holding its own weights."""

    def __init__(self, s, params):
        self.spec = s
        self.weights = {name: np.array(value, dtype=np.float32) for name, value in params.items()}

    def __call__(self, v, t):
        """Returns the fused ``(B, D)`` output and the spec's aux outputs."""
        w = self.weights
        if self.spec.kind == "gated":
            z = np.concatenate([v, t], axis=1) @ w["gate.weight"].T + w["gate.bias"]  # (B, D)
            g = 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow
            return g * v + (1.0 - g) * t, {"gate": g}
        gamma = t @ w["gamma.weight"].T + w["gamma.bias"]  # (B, D)
        beta = t @ w["beta.weight"].T + w["beta.bias"]  # (B, D)
        return gamma * v + beta, {"gamma": gamma, "beta": beta}

    def backward(self, v, t, R):
        """Gradients of ``sum(output * R)`` for ``v``, ``t`` and every weight, by hand."""
        w, D = self.weights, self.spec.dim
        _, aux = self(v, t)
        if self.spec.kind == "gated":
            g = aux["gate"]
            dz = R * (v - t) * g * (1.0 - g)  # (B, D)
            dx = dz @ w["gate.weight"]  # (B, 2D)
            return {
                "v": R * g + dx[:, :D],
                "t": R * (1.0 - g) + dx[:, D:],
                "gate.weight": dz.T @ np.concatenate([v, t], axis=1),
                "gate.bias": dz.sum(axis=0),
            }
        dgamma = R * v  # (B, D)
        return {
            "v": R * aux["gamma"],
            "t": dgamma @ w["gamma.weight"] + R @ w["beta.weight"],
            "gamma.weight": dgamma.T @ t,
            "gamma.bias": dgamma.sum(axis=0),
            "beta.weight": R.T @ t,
            "beta.bias": R.sum(axis=0),
        }


class MinimalAdapter(Adapter):
    """The adapter: translates the suite's calls into ``TinyFusion`` calls."""

    name = "tiny-numpy"
    dtype = "float32"  # selects the float32 tolerance policy

    def not_applicable(self, s, *, training):
        if s.kind not in ("gated", "film"):
            return "tiny-numpy implements only gated and film"
        if s.input_norm != "none":  # a field it does not implement: say so, never ignore it
            return "tiny-numpy does not implement input_norm='batch'"
        if s.projected():  # likewise: widths other than dim need input_proj
            return "tiny-numpy does not implement image_dim / text_dim other than dim"
        return None

    def build(self, s, params):
        return TinyFusion(s, params)

    def forward(self, model, v, t, *, training, noise, options):
        # gated and film are deterministic: training mode, noise and options change nothing.
        return model(v.astype(np.float32), t.astype(np.float32))

    def canonical_params(self, model):
        return {name: value.copy() for name, value in model.weights.items()}

    def gradients(self, model, v, t, cotangent, *, training, noise, options):
        return model.backward(v, t, cotangent)
