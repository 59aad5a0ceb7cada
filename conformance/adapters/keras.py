"""The Keras backend (``fusion_spec.backends.keras``) as a conformance adapter, on the process's Keras backend.

Keras reads ``KERAS_BACKEND`` once per process, so this adapter judges
exactly one of jax, torch, tensorflow or numpy; its ``name`` says which. Gradients use
that backend's autodiff (``jax.grad`` over ``stateless_call``, ``torch.autograd``
or ``tf.GradientTape``); Keras's NumPy backend has none.

``device``: where the framework was told to compute before it was imported
(``adapters.device_env``: the CLI and the pytest plugin set it); the adapter
checks that the framework really is there and refuses otherwise. ``precision``:
``"float32"`` (every product in float32: the layers pin JAX's precision, and
the process's TF32 switches of torch and TensorFlow are turned off) or
``"tensorfloat32"`` (the TF32 opt-in: the layers' ``matmul_precision`` on JAX,
the process-wide switches elsewhere), which selects its own tolerance policy.
"""

from __future__ import annotations

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import fusion_spec.backends.keras as keras_backend  # noqa: E402

from ..adapter import Adapter, NotSupported  # noqa: E402
from . import check_settings, policy_dtype  # noqa: E402

#: Keras dtype policy of each adapter precision.
POLICIES = {"bfloat16": "bfloat16", "bfloat16-autocast": "mixed_bfloat16"}


def _numpy(x) -> np.ndarray:
    x = ops.convert_to_numpy(x)
    return x.astype(np.float32) if x.dtype.name == "bfloat16" else x


def _framework_device(backend: str) -> tuple[str, str]:
    """``("cpu" | "cuda", description)`` of where this process's Keras backend computes."""
    if backend == "jax":
        import jax

        dev = jax.devices()[0]
        where = "cpu" if dev.platform == "cpu" else "cuda"
        return where, f"jax {jax.__version__}, {dev.device_kind}"
    if backend == "torch":
        import torch

        dev = ops.convert_to_tensor(np.zeros(1, np.float32)).device
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        return dev.type, f"torch {torch.__version__}, {name}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        where = "cuda" if gpus else "cpu"
        return where, f"tensorflow {tf.__version__}, {gpus[0].name if gpus else 'CPU'}"
    return "cpu", f"numpy {np.__version__}, CPU"


class KerasAdapter(Adapter):
    dtype = "float32"
    supports_present = True
    supports_aux_gradients = True
    supports_tokens = True

    def __init__(self, seed: int = 0, device: str = "cpu", precision: str = "float32"):
        check_settings(device, precision)
        self.seed = seed
        self.backend = keras.backend.backend()
        self.name = f"keras-{self.backend}"
        self.precision = precision
        self.dtype = policy_dtype(precision)
        actual, self.where = _framework_device(self.backend)
        if actual != device:
            raise RuntimeError(
                f"{self.name} adapter: argument 'device' expected the framework on {device!r}; "
                f"received it on {actual!r} ({self.where}). Set the environment of "
                "fusion_spec.conformance.adapters.device_env before Keras is imported "
                "(the CLI's and the pytest plugin's --device do)."
            )
        tf32 = precision == "tensorfloat32"
        self.matmul_precision = "float32"
        if self.backend == "jax" and precision in ("float32", "tensorfloat32"):
            self.matmul_precision = precision
        elif self.backend == "torch":
            import torch

            torch.set_float32_matmul_precision("high" if tf32 else "highest")
        elif self.backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(tf32)

    def describe(self) -> str:
        return (
            f"keras {keras.__version__} on {self.where} ({self.backend}, "
            f"{POLICIES.get(self.precision, 'float32')}, matmul precision {self.matmul_precision})"
        )

    def build(self, s, params):
        if self.precision not in POLICIES:
            return keras_backend.build(
                s, params, seed=self.seed, matmul_precision=self.matmul_precision
            )
        layer = keras_backend.LAYERS[s.kind](s, seed=self.seed, dtype=POLICIES[self.precision])
        layer.build()
        layer.load_canonical(params)
        return layer

    @staticmethod
    def _noise(noise):
        return None if noise is None else {k: np.asarray(u, np.float32) for k, u in noise.items()}

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        masks = {k: m for k, m in masks.items() if m is not None}
        out, aux = model(
            v, t, present, training=training, noise=self._noise(noise), return_aux=True,
            **masks, **options,
        )
        return _numpy(out), {k: _numpy(a) for k, a in aux.items()}

    def canonical_params(self, model):
        return model.canonical_params()

    def _variables(self, model) -> dict[str, object]:
        """Canonical name -> trainable Keras variable (dense kernels held ``(in, out)``)."""
        by_id = {id(var): var for var in model.trainable_variables}
        return {name: var for name, var in model.canonical_variables.items() if id(var) in by_id}

    def gradients(
        self, model, v, t, cotangent, *, training, noise, options, present=None, aux_cotangents=None,
        **masks,
    ):
        noise = self._noise(noise)
        masks = {k: m for k, m in masks.items() if m is not None}
        options = {**options, "present": present, **masks}
        variables = self._variables(model)
        # the loss: sum(out * cotangent) plus each aux loss term times its cotangent
        cotangents = (cotangent, dict(aux_cotangents or {}))
        if self.backend == "jax":
            grads = self._jax_gradients(
                model, variables, v, t, cotangents, training, noise, options
            )
        elif self.backend == "torch":
            grads = self._torch_gradients(
                model, variables, v, t, cotangents, training, noise, options
            )
        elif self.backend == "tensorflow":
            grads = self._tensorflow_gradients(
                model, variables, v, t, cotangents, training, noise, options
            )
        else:
            raise NotSupported(f"Keras's {self.backend} backend has no autodiff")
        for name in model.transposed:
            if name in grads:
                grads[name] = grads[name].T
        return grads

    def _jax_gradients(self, model, variables, v, t, cotangents, training, noise, options):
        import jax

        names = list(variables)
        trainable = model.trainable_variables
        index = {id(var): i for i, var in enumerate(trainable)}
        non_trainable = [var.value for var in model.non_trainable_variables]

        cotangent, aux_cotangents = cotangents

        def loss(values, v, t):
            (out, aux), _ = model.stateless_call(
                values, non_trainable, v, t, training=training, noise=noise, return_aux=True,
                **options,
            )
            total = (out * cotangent).sum()
            for name, r in aux_cotangents.items():
                total = total + (aux[name] * r).sum()
            return total

        values = [var.value for var in trainable]
        g_params, g_v, g_t = jax.grad(loss, argnums=(0, 1, 2))(values, v, t)
        grads = {"v": np.asarray(g_v), "t": np.asarray(g_t)}
        for name in names:
            grads[name] = np.asarray(g_params[index[id(variables[name])]])
        return grads

    def _tensorflow_gradients(self, model, variables, v, t, cotangents, training, noise, options):
        import tensorflow as tf

        tv, tt = tf.constant(v), tf.constant(t)
        names = list(variables)
        with tf.GradientTape() as tape:
            tape.watch([tv, tt])
            out, aux = model(tv, tt, training=training, noise=noise, return_aux=True, **options)
            loss = tf.reduce_sum(out * tf.constant(cotangents[0]))
            for name, r in cotangents[1].items():
                loss = loss + tf.reduce_sum(aux[name] * tf.constant(r))
        g = tape.gradient(loss, [tv, tt] + [variables[n].value for n in names])
        grads = {"v": g[0].numpy(), "t": g[1].numpy()}
        for name, value in zip(names, g[2:], strict=True):
            if value is not None:
                grads[name] = tf.convert_to_tensor(value).numpy()
        return grads

    def _torch_gradients(self, model, variables, v, t, cotangents, training, noise, options):

        for var in variables.values():
            var.value.grad = None
        # on Keras's device (CUDA when there is one), not torch.from_numpy's CPU
        tv = ops.convert_to_tensor(v).detach().requires_grad_(True)
        tt = ops.convert_to_tensor(t).detach().requires_grad_(True)
        out, aux = model(tv, tt, training=training, noise=noise, return_aux=True, **options)
        loss = (out * ops.convert_to_tensor(cotangents[0])).sum()
        for name, r in cotangents[1].items():
            loss = loss + (aux[name] * ops.convert_to_tensor(r)).sum()
        loss.backward()
        grads = {"v": tv.grad.detach().cpu().numpy(), "t": tt.grad.detach().cpu().numpy()}
        for name, var in variables.items():
            if var.value.grad is not None:
                grads[name] = var.value.grad.detach().cpu().numpy()
        return grads
