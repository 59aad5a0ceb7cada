"""``gated``: ``g = sigmoid(W_g [v; t] + b_g)``, ``f = g v + (1 - g) t``."""

import keras
from keras import ops

from ._layers import FusionLayer, linear


def gated(s, p, v, t, *, training, noise, drop, present=None):
    r"""$g = \sigma(W_g [v; t] + b_g) \in (0, 1)^{B \times D}$, $f = g \odot v + (1-g) \odot t$.

    Missing modality ``present_alone``: the present modality itself (gate 1 or 0).
    """
    g = ops.sigmoid(linear(p, "gate", ops.concatenate([v, t], axis=-1)))  # (B, D)
    out = g * v + (1.0 - g) * t
    if present is not None and s.missing_modality == "present_alone":
        out = ops.where(present.both[:, None], out, ops.where(present.image[:, None], v, t))
        g = ops.where(
            present.image_only[:, None],
            ops.ones_like(g),
            ops.where(present.text_only[:, None], ops.zeros_like(g), g),
        )
    return out, {"gate": g}


@keras.saving.register_keras_serializable(package="fusion_spec")
class GatedFusion(FusionLayer):
    r"""``gated`` as a Keras layer: $f = g \odot v + (1 - g) \odot t$.

    $g = \sigma(W_g [v; t] + b_g)$.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gate`` ``(B, D)``.
    """

    kind = "gated"
    fuse = staticmethod(gated)
