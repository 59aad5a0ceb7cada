"""``simple``: ``f = mean_tokens(T([v, t]))``.

Missing modality: ``zero_fill`` runs unchanged on the zeroed rows; ``key_mask``
masks the absent token as a key and reads the present token's row.
"""

from ._layers import encoder_layer, present_mean, tokens


def simple(s, p, v, t, *, training, noise, present=None):
    key_mask = present.key_mask() if present and s.missing_modality == "key_mask" else None
    x = tokens(v, t)  # (B, 2, D)
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, key_mask)
    return present_mean(x, present if key_mask is not None else None), {}
