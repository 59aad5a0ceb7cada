"""``straight_through_routes="all"`` in Keras: the forward value is the routed output, a
non-finite route never reaches it, and (JAX) the router's gradient is the mixture's.

The layer-level gradients of both estimators are judged by the conformance suite on
every Keras backend; these tests pin the helper's two edge properties.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from keras_cases import BACKEND, to_numpy

from fusion_spec.backends.keras._layers import straight_through_routes


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((5, 3))
    outputs = [rng.standard_normal((5, 4)) for _ in range(3)]
    return logits, outputs


def test_a_non_finite_route_never_reaches_the_forward_value():
    logits, (y0, y1, y2) = _case()
    y2[1, 0], y2[3, 2] = np.inf, np.nan
    r = ops.softmax(ops.convert_to_tensor(logits, "float32"), axis=-1)
    held = [ops.convert_to_tensor(y, "float32") for y in (y0, y1, y2)]
    out = to_numpy(straight_through_routes(held[0], r, held))
    np.testing.assert_array_equal(out, y0.astype(np.float32))


@pytest.mark.skipif(BACKEND != "jax", reason="jax.grad: one backend is enough for the helper")
def test_router_gradient_is_the_mixture_gradient():
    """float64 (x64 is off by default: float32, the sums' orders differ by a few ulps)."""
    import jax
    import jax.numpy as jnp

    logits, outputs = _case(1)
    R = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    ys = [jnp.asarray(y, jnp.float32) for y in outputs]
    route = np.array([0, 1, 2, 2, 1])

    def st(z):
        r = jax.nn.softmax(z, axis=-1)
        routed = jnp.stack(ys, 1)[np.arange(5), route]
        return jnp.sum(R * straight_through_routes(routed, r, ys))

    def mixture(z):
        r = jax.nn.softmax(z, axis=-1)
        return jnp.sum(R * jnp.sum(r[:, :, None] * jnp.stack(ys, 1), axis=1))

    z = jnp.asarray(logits, jnp.float32)
    # float32: each gradient entry is a sum of a dozen terms of size ~1
    np.testing.assert_allclose(jax.grad(st)(z), jax.grad(mixture)(z), rtol=1e-5, atol=1e-6)
