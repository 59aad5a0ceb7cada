"""``concat_mlp``: ``f = W_L GELU(... GELU(W_1 [v; t] + b_1) ...) + b_L``.

Missing modality: zero-fill (the forward already zeroed the absent rows).
"""

import numpy as np

from ._layers import gelu, linear


def concat_mlp(s, p, v, t, *, training, noise, present=None):
    h = np.concatenate([v, t], axis=-1)  # (B, 2D)
    for i in range(s.layers - 1):
        h = gelu(linear(p, f"mlp.{i}", h))  # (B, hidden_mult * D)
    return linear(p, f"mlp.{s.layers - 1}", h), {}
