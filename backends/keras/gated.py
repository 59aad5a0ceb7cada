"""``gated``: ``g = sigmoid(W_g [v; t] + b_g)``, ``f = g v + (1 - g) t``."""

import keras
from keras import ops

from ._layers import FusionLayer, linear


def gated(s, p, v, t, *, training, noise, drop):
    r"""$g = \sigma(W_g [v; t] + b_g) \in (0, 1)^{B \times D}$, $f = g \odot v + (1-g) \odot t$."""
    g = ops.sigmoid(linear(p, "gate", ops.concatenate([v, t], axis=-1)))  # (B, D)
    return g * v + (1.0 - g) * t, {"gate": g}


@keras.saving.register_keras_serializable(package="fusion_spec")
class GatedFusion(FusionLayer):
    r"""``gated`` as a Keras layer: $f = g \odot v + (1 - g) \odot t$.

    $g = \sigma(W_g [v; t] + b_g)$.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gate`` ``(B, D)``.
    """

    kind = "gated"
    fuse = staticmethod(gated)
