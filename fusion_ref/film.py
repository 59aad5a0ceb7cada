"""``film``: ``f = gamma(t) v + beta(t)``.

Missing modality: ``identity`` leaves the image unmodulated without text
(``gamma = 1``, ``beta = 0``) and outputs ``beta(t)`` without the image;
``zero_fill`` runs unchanged on the zeroed rows.
"""

import numpy as np

from ._layers import linear


def film(s, p, v, t, *, training, noise, present=None):
    gamma = linear(p, "gamma", t)  # (B, D)
    beta = linear(p, "beta", t)  # (B, D)
    out = gamma * v + beta
    if present is not None and s.missing_modality == "identity":
        image, text = present.image[:, None], present.text[:, None]
        out = np.where(image & text, out, np.where(image, v, beta))
        gamma = np.where(text, gamma, 1.0)
        beta = np.where(text, beta, 0.0)
    return out, {"gamma": gamma, "beta": beta}
