"""The NumPy reference as a backend: the suite's self-check and the model for other adapters.

Without injected noise the adapter draws the spec's uniforms from its own
``numpy.random.Generator`` (the "backend RNG" the distribution checks judge).
It has no autodiff: gradient checks are n/a, since the reference *is* the
oracle the finite differences are taken of.
"""

from __future__ import annotations

import numpy as np

from fusion_spec import fusion_ref

from ..adapter import Adapter, NotSupported


class ReferenceModel:
    """A spec with its canonical params, and the RNG for undeclared noise."""

    def __init__(self, s, params, seed: int):
        self.spec = s
        self.params = {k: np.array(v, dtype=np.float32) for k, v in params.items()}
        self.rng = np.random.default_rng(seed)


class ReferenceAdapter(Adapter):
    name = "reference"
    dtype = "float64"
    supports_present = True
    supports_tokens = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def describe(self) -> str:
        return f"fusion_ref, NumPy {np.__version__} (float64, the oracle judged by itself)"

    def build(self, s, params):
        return ReferenceModel(s, params, self.seed)

    def draw_noise(self, model, batch: int, training: bool, options) -> dict[str, np.ndarray]:
        declared = model.spec.noise(batch, training=training, **options)
        return {n.name: model.rng.random(n.shape) for n in declared}

    def forward(
        self, model, v, t, *, training, noise, options, present=None, image_mask=None,
        text_mask=None,
    ):
        if noise is None:
            noise = self.draw_noise(model, v.shape[0], training, options)
        masks = {"image_mask": image_mask, "text_mask": text_mask}
        if training:  # input_norm="batch": the state a training call leaves (float64)
            state = fusion_ref.running_stats(model.spec, model.params, v, t, present, **masks)
        result = fusion_ref.forward(
            model.spec,
            model.params,
            v,
            t,
            present,
            **masks,
            training=training,
            noise=noise or None,
            return_aux=True,
            **options,
        )
        if training:
            model.params.update(state)
        return result

    def canonical_params(self, model):
        return {k: v.copy() for k, v in model.params.items()}

    def gradients(self, model, v, t, cotangent, *, training, noise, options, **masks):
        raise NotSupported("the reference is the oracle the finite differences are taken of")
