"""``film``: ``f = gamma(t) v + beta(t)``."""

import keras
from keras import ops

from ._layers import FusionLayer, linear


def film(s, p, v, t, *, training, noise, drop, present=None):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$ (both $B \times D$),
    $f = \gamma \odot v + \beta$.

    Missing modality ``identity``: no text leaves the image unmodulated, no image
    outputs $\beta(t)$.
    """
    gamma = linear(p, "gamma", t)  # (B, D)
    beta = linear(p, "beta", t)  # (B, D)
    out = gamma * v + beta
    if present is not None and s.missing_modality == "identity":
        image, text = present.image[:, None], present.text[:, None]
        out = ops.where(ops.logical_and(image, text), out, ops.where(image, v, beta))
        gamma = ops.where(text, gamma, ops.ones_like(gamma))
        beta = ops.where(text, beta, ops.zeros_like(beta))
    return out, {"gamma": gamma, "beta": beta}


@keras.saving.register_keras_serializable(package="fusion_spec")
class FilmFusion(FusionLayer):
    r"""``film`` as a Keras layer: $f = \gamma(t) \odot v + \beta(t)$ (text conditions vision).

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gamma``, ``beta`` ``(B, D)``.
    """

    kind = "film"
    fuse = staticmethod(film)
