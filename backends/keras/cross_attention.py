"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``."""

import keras
from keras import ops

from ._layers import FusionLayer, attention, feed_forward, layer_norm, tokens


def cross_attention(s, p, v, t, *, training, noise, drop, present=None):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t)) \in \mathbb{R}^{B \times 1 \times D}$,
    $z = \mathrm{MHA}(q, X, X)$,
    $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$ with $X = [v, t] \in \mathbb{R}^{B \times 2 \times D}$.

    Missing modality ``key_mask``: the query is the present token, the absent one
    gets attention weight 0.
    """
    eps = s.layer_norm_eps
    if s.missing_modality != "key_mask":
        present = None  # zero_fill: the rule runs unchanged on the zeroed rows
    q = 0.5 * (v + t)
    key_mask = None
    if present is not None:
        key_mask = present.key_mask()
        single = ops.where(present.image[:, None], v, t)
        q = ops.where(present.both[:, None], q, single)  # mean of the present tokens
    q = layer_norm(p, "norm1", q, eps)[:, None]  # (B, 1, D)
    z, weights = attention(
        p, "attn", q, tokens(v, t), s.heads, drop=drop, key_mask=key_mask
    )  # (B, 1, D), (B, h, 1, 2)
    z = z[:, 0]  # (B, D)
    weights = weights[:, :, 0]  # (B, h, 2)
    if present is not None:
        weights = ops.where(present.neither[:, None, None], ops.zeros_like(weights), weights)
    out = z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps), drop_out=drop)
    return out, {"attention_weights": weights}


@keras.saving.register_keras_serializable(package="fusion_spec")
class CrossAttentionFusion(FusionLayer):
    r"""``cross_attention`` as a Keras layer: $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$,
    $z = \mathrm{MHA}(\mathrm{LN}_1(\tfrac12(v+t)), [v, t])$.

    Dropout in training on the attention weights and the FFN output.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``attention_weights``
    ``(B, heads, 2)`` (weight of ``v``, of ``t``).
    """

    kind = "cross_attention"
    chunked_eval = True
    fuse = staticmethod(cross_attention)
