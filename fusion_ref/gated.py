"""``gated``: ``g = sigmoid(W_g [v; t] + b_g)``, ``f = g v + (1 - g) t``."""

import numpy as np

from ._layers import linear, sigmoid


def gated(s, p, v, t, *, training, noise):
    g = sigmoid(linear(p, "gate", np.concatenate([v, t], axis=-1)))  # (B, D)
    return g * v + (1.0 - g) * t, {"gate": g}
