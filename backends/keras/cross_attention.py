"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``."""

import keras

from ._layers import FusionLayer, attention, feed_forward, layer_norm, tokens


def cross_attention(s, p, v, t, *, training, noise, drop):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t)) \in \mathbb{R}^{B \times 1 \times D}$,
    $z = \mathrm{MHA}(q, X, X)$,
    $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$ with $X = [v, t] \in \mathbb{R}^{B \times 2 \times D}$.
    """
    eps = s.layer_norm_eps
    q = layer_norm(p, "norm1", 0.5 * (v + t), eps)[:, None]  # (B, 1, D)
    z, weights = attention(
        p, "attn", q, tokens(v, t), s.heads, drop=drop
    )  # (B, 1, D), (B, h, 1, 2)
    z = z[:, 0]  # (B, D)
    out = z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps), drop_out=drop)
    return out, {"attention_weights": weights[:, :, 0]}  # (B, h, 2)


@keras.saving.register_keras_serializable(package="fusion_spec")
class CrossAttentionFusion(FusionLayer):
    r"""``cross_attention`` as a Keras layer: $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$,
    $z = \mathrm{MHA}(\mathrm{LN}_1(\tfrac12(v+t)), [v, t])$.

    Dropout in training on the attention weights and the FFN output.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``attention_weights``
    ``(B, heads, 2)`` (weight of ``v``, of ``t``).
    """

    kind = "cross_attention"
    fuse = staticmethod(cross_attention)
