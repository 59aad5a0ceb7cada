"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``."""

from ._layers import attention, feed_forward, layer_norm, tokens


def cross_attention(s, p, v, t, *, training, noise):
    eps = s.layer_norm_eps
    q = layer_norm(p, "norm1", 0.5 * (v + t), eps)[:, None]  # (B, 1, D)
    z, weights = attention(p, "attn", q, tokens(v, t), s.heads)  # (B, 1, D), (B, h, 1, 2)
    z = z[:, 0]  # (B, D)
    return z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps)), {
        "attention_weights": weights[:, :, 0]  # (B, h, 2)
    }
