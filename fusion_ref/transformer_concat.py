"""``transformer_concat``: ``f = mean_tokens(T([v + e_v, t + e_t]))``.

Missing modality: as ``simple`` (``zero_fill`` keeps the absent token's embedding).
"""

from ._layers import encoder_layer, present_mean, tokens


def transformer_concat(s, p, v, t, *, training, noise, present=None):
    key_mask = present.key_mask() if present and s.missing_modality == "key_mask" else None
    x = tokens(v, t)  # (B, 2, D)
    if s.modality_embeddings:
        x = x + p["modality_embedding"]  # (2, D) broadcast over B
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, key_mask)
    return present_mean(x, present if key_mask is not None else None), {}
