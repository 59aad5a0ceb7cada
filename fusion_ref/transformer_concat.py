"""``transformer_concat``: ``f = mean_tokens(T([v + e_v, t + e_t]))``, over every token.

Missing modality: as ``simple`` (``zero_fill`` keeps the absent token's embedding).
"""

import numpy as np

from ._layers import encoder_layer, key_mean, token_keys


def transformer_concat(s, p, v, t, *, training, noise, present=None, tokens):
    keys = token_keys(s, tokens, present)  # (B, L_v + L_t)
    if s.modality_embeddings:
        e = p["modality_embedding"]  # (2, D): e_v on every image token, e_t on every text token
        v, t = v + e[0], t + e[1]
    x = np.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, keys)
    return key_mean(x, keys), {}
