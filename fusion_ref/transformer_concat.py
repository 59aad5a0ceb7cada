"""``transformer_concat``: ``f = mean_tokens(T([v + e_v, t + e_t]))``."""

from ._layers import encoder_layer, tokens


def transformer_concat(s, p, v, t, *, training, noise):
    x = tokens(v, t)  # (B, 2, D)
    if s.modality_embeddings:
        x = x + p["modality_embedding"]  # (2, D) broadcast over B
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps)
    return x.mean(axis=1), {}
