"""``simple``: ``f = mean_tokens(T([v, t]))``, over every token of both modalities.

Missing modality: ``zero_fill`` runs unchanged with the absent modality as one zero
token; ``key_mask`` masks the absent modality's tokens as keys and averages the present
ones. Padding tokens are never keys and never averaged.
"""

import numpy as np

from ._layers import encoder_layer, key_mean, token_keys


def simple(s, p, v, t, *, training, noise, present=None, tokens):
    keys = token_keys(s, tokens, present)  # (B, L_v + L_t)
    x = np.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, keys)
    return key_mean(x, keys), {}
