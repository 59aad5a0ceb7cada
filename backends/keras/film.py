"""``film``: ``f = gamma(t) v + beta(t)``."""

import keras

from ._layers import FusionLayer, linear


def film(s, p, v, t, *, training, noise, drop):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$ (both $B \times D$),
    $f = \gamma \odot v + \beta$.
    """
    gamma = linear(p, "gamma", t)  # (B, D)
    beta = linear(p, "beta", t)  # (B, D)
    return gamma * v + beta, {"gamma": gamma, "beta": beta}


@keras.saving.register_keras_serializable(package="fusion_spec")
class FilmFusion(FusionLayer):
    r"""``film`` as a Keras layer: $f = \gamma(t) \odot v + \beta(t)$ (text conditions vision).

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``gamma``, ``beta`` ``(B, D)``.
    """

    kind = "film"
    fuse = staticmethod(film)
