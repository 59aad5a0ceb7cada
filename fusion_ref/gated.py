"""``gated``: ``g = sigmoid(W_g [v; t] + b_g)``, ``f = g v + (1 - g) t``.

Missing modality: ``present_alone`` outputs the present modality (gate 1 or 0);
``zero_fill`` runs unchanged on the zeroed rows.
"""

import numpy as np

from ._layers import linear, sigmoid


def gated(s, p, v, t, *, training, noise, present=None):
    g = sigmoid(linear(p, "gate", np.concatenate([v, t], axis=-1)))  # (B, D)
    out = g * v + (1.0 - g) * t
    if present is not None and s.missing_modality == "present_alone":
        out = np.where(present.both[:, None], out, np.where(present.image[:, None], v, t))
        g = np.where(present.image_only[:, None], 1.0, np.where(present.text_only[:, None], 0.0, g))
    return out, {"gate": g}
