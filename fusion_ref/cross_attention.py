"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``.

Missing modality: ``key_mask`` queries with the normalised mean of the present
tokens and attends over them only; ``zero_fill`` runs unchanged on the zeroed rows.
"""

import numpy as np

from ._layers import attention, feed_forward, layer_norm, tokens


def cross_attention(s, p, v, t, *, training, noise, present=None):
    eps = s.layer_norm_eps
    x = tokens(v, t)  # (B, 2, D)
    key_mask = None
    if present is not None and s.missing_modality == "key_mask":
        key_mask = present.key_mask()
        both, image = present.both[:, None], present.image[:, None]
        q = np.where(both, 0.5 * (v + t), np.where(image, v, t))  # mean of present tokens
    else:
        q = 0.5 * (v + t)
    q = layer_norm(p, "norm1", q, eps)[:, None]  # (B, 1, D)
    z, weights = attention(p, "attn", q, x, s.heads, key_mask)  # (B, 1, D), (B, h, 1, 2)
    z = z[:, 0]  # (B, D)
    weights = weights[:, :, 0]  # (B, h, 2)
    if key_mask is not None:
        weights = np.where(present.neither[:, None, None], 0.0, weights)
    return z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps)), {
        "attention_weights": weights
    }
