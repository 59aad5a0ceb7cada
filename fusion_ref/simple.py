"""``simple``: ``f = mean_tokens(T([v, t]))``."""

from ._layers import encoder_layer, tokens


def simple(s, p, v, t, *, training, noise):
    x = tokens(v, t)  # (B, 2, D)
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps)
    return x.mean(axis=1), {}
