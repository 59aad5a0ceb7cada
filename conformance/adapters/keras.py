"""The Keras backend (``fusion_spec.backends.keras``) as a conformance adapter, on the process's Keras backend.

Keras reads ``KERAS_BACKEND`` once per process, so this adapter judges
exactly one of jax, torch or numpy; its ``name`` says which. Gradients use
that backend's autodiff (``jax.grad`` over ``stateless_call``, or
``torch.autograd``); Keras's NumPy backend has none.
"""

from __future__ import annotations

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import fusion_spec.backends.keras as keras_backend  # noqa: E402

from ..adapter import Adapter, NotSupported  # noqa: E402


class KerasAdapter(Adapter):
    dtype = "float32"
    supports_present = True

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.backend = keras.backend.backend()
        self.name = f"keras-{self.backend}"

    def describe(self) -> str:
        return f"keras {keras.__version__} on {self.backend} (CPU, float32)"

    def build(self, s, params):
        return keras_backend.build(s, params, seed=self.seed)

    @staticmethod
    def _noise(noise):
        return None if noise is None else {k: np.asarray(u, np.float32) for k, u in noise.items()}

    def forward(self, model, v, t, *, training, noise, options, present=None):
        out, aux = model(
            v, t, present, training=training, noise=self._noise(noise), return_aux=True, **options
        )
        return ops.convert_to_numpy(out), {k: ops.convert_to_numpy(a) for k, a in aux.items()}

    def canonical_params(self, model):
        return model.canonical_params()

    def _variables(self, model) -> dict[str, object]:
        """Canonical name -> trainable Keras variable (dense kernels held ``(in, out)``)."""
        by_id = {id(var): var for var in model.trainable_variables}
        return {name: var for name, var in model.canonical_variables.items() if id(var) in by_id}

    def gradients(self, model, v, t, cotangent, *, training, noise, options, present=None):
        noise = self._noise(noise)
        options = {**options, "present": present}
        variables = self._variables(model)
        if self.backend == "jax":
            grads = self._jax_gradients(model, variables, v, t, cotangent, training, noise, options)
        elif self.backend == "torch":
            grads = self._torch_gradients(
                model, variables, v, t, cotangent, training, noise, options
            )
        elif self.backend == "tensorflow":
            grads = self._tensorflow_gradients(
                model, variables, v, t, cotangent, training, noise, options
            )
        else:
            raise NotSupported(f"Keras's {self.backend} backend has no autodiff")
        for name in model.transposed:
            if name in grads:
                grads[name] = grads[name].T
        return grads

    def _jax_gradients(self, model, variables, v, t, cotangent, training, noise, options):
        import jax

        names = list(variables)
        trainable = model.trainable_variables
        index = {id(var): i for i, var in enumerate(trainable)}
        non_trainable = [var.value for var in model.non_trainable_variables]

        def loss(values, v, t):
            out, _ = model.stateless_call(
                values, non_trainable, v, t, training=training, noise=noise, **options
            )
            return (out * cotangent).sum()

        values = [var.value for var in trainable]
        g_params, g_v, g_t = jax.grad(loss, argnums=(0, 1, 2))(values, v, t)
        grads = {"v": np.asarray(g_v), "t": np.asarray(g_t)}
        for name in names:
            grads[name] = np.asarray(g_params[index[id(variables[name])]])
        return grads

    def _tensorflow_gradients(self, model, variables, v, t, cotangent, training, noise, options):
        import tensorflow as tf

        tv, tt = tf.constant(v), tf.constant(t)
        names = list(variables)
        with tf.GradientTape() as tape:
            tape.watch([tv, tt])
            out, _ = model(tv, tt, training=training, noise=noise, return_aux=True, **options)
            loss = tf.reduce_sum(out * tf.constant(cotangent))
        g = tape.gradient(loss, [tv, tt] + [variables[n].value for n in names])
        grads = {"v": g[0].numpy(), "t": g[1].numpy()}
        for name, value in zip(names, g[2:], strict=True):
            if value is not None:
                grads[name] = tf.convert_to_tensor(value).numpy()
        return grads

    def _torch_gradients(self, model, variables, v, t, cotangent, training, noise, options):
        import torch

        for var in variables.values():
            var.value.grad = None
        tv = torch.from_numpy(v).requires_grad_(True)
        tt = torch.from_numpy(t).requires_grad_(True)
        out, _ = model(tv, tt, training=training, noise=noise, return_aux=True, **options)
        (out * torch.from_numpy(cotangent)).sum().backward()
        grads = {"v": tv.grad.numpy(), "t": tt.grad.numpy()}
        for name, var in variables.items():
            if var.value.grad is not None:
                grads[name] = var.value.grad.detach().cpu().numpy()
        return grads
