"""Matrix-product precision of the Keras layers: float32 means float32, TF32 only by opt-in.

XLA runs float32 products in TF32 on GPUs unless told otherwise, so the layers
pin the precision of every product they trace. On the CPU the effect is
invisible in the numbers, so these tests read the traced program instead: every
``dot_general`` of a JAX trace carries the precision the layer asked for.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fusion_spec import spec
from fusion_spec.backends.keras import build

BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="the precision scope acts on JAX only")


def _dot_precisions(jaxpr) -> list[str]:
    """The ``precision`` of every ``dot_general`` in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(str(eqn.params["precision"]))
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):  # a sub-jaxpr (pjit, custom_jvp, ...)
                found += _dot_precisions(inner)
    return found


def _traced_precisions(kind: str, precision: str, training: bool) -> list[str]:
    import jax

    s = spec.parse({"kind": kind, "dim": 8, **({"heads": 2} if kind != "gated" else {})})
    layer = build(s, seed=0, matmul_precision=precision)
    trainable = [var.value for var in layer.trainable_variables]
    non_trainable = [var.value for var in layer.non_trainable_variables]
    x = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(3, 8)
    noise = {n.name: np.full(n.shape, 0.5, np.float32) for n in s.noise(3, training=training)}

    def loss(values, v, t):
        out, _ = layer.stateless_call(values, non_trainable, v, t, training=training, noise=noise)
        return out.sum()

    fn = jax.grad(loss) if training else loss
    return _dot_precisions(jax.make_jaxpr(fn)(trainable, x, x[::-1]).jaxpr)


@jax_only
@pytest.mark.parametrize("kind", ["gated", "cross_attention", "shomr"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "grad"])
def test_every_product_is_float32_by_default(kind, training):
    found = _traced_precisions(kind, "float32", training)
    assert found, "no matrix product traced"
    assert set(found) == {"(Precision.HIGHEST, Precision.HIGHEST)"}


@jax_only
def test_tensorfloat32_is_an_explicit_opt_in():
    found = _traced_precisions("cross_attention", "tensorfloat32", training=False)
    assert found and set(found) == {"(Precision.HIGH, Precision.HIGH)"}


def test_matmul_precision_is_validated_and_serialised():
    s = spec.parse({"kind": "gated", "dim": 4})
    with pytest.raises(spec.InputError, match=r"gated: argument 'matmul_precision' expected one of"):
        build(s, matmul_precision="bfloat16")
    assert build(s).get_config()["matmul_precision"] == "float32"
    if BACKEND == "jax":
        layer = build(s, matmul_precision="tensorfloat32")
        clone = type(layer).from_config(layer.get_config())
        assert clone.matmul_precision == "tensorfloat32"
    else:
        with pytest.raises(spec.InputError, match="process-wide switch"):
            build(s, matmul_precision="tensorfloat32")
