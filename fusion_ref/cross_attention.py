"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``.

With token sequences ``v`` and ``t`` in the query are each modality's mean token and
the keys are every token of both.

Missing modality: ``key_mask`` queries with the normalised mean of the present
modalities and attends over their tokens only; ``zero_fill`` runs unchanged with the
absent modality as one zero token.
"""

import numpy as np

from ._layers import attention, feed_forward, layer_norm, pool, token_keys


def cross_attention(s, p, v, t, *, training, noise, present=None, tokens):
    eps = s.layer_norm_eps
    keys = token_keys(s, tokens, present)  # (B, L_v + L_t)
    x = np.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
    v, t = pool(v, tokens[0]), pool(t, tokens[1])  # (B, D) each; one token exactly
    if present is not None and s.missing_modality == "key_mask":
        both, image = present.both[:, None], present.image[:, None]
        q = np.where(both, 0.5 * (v + t), np.where(image, v, t))  # mean of present modalities
    else:
        q = 0.5 * (v + t)
    q = layer_norm(p, "norm1", q, eps)[:, None]  # (B, 1, D)
    z, weights = attention(p, "attn", q, x, s.heads, keys)  # (B, 1, D), (B, h, 1, L)
    z = z[:, 0]  # (B, D)
    weights = weights[:, :, 0]  # (B, h, L)
    if present is not None and s.missing_modality == "key_mask":
        weights = np.where(present.neither[:, None, None], 0.0, weights)
    return z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps)), {
        "attention_weights": weights
    }
