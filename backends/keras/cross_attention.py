"""``cross_attention``: ``q = LN1((v+t)/2)``, ``z = MHA(q, [v, t])``, ``f = z + FFN(LN2(z))``.

With token sequences ``v`` and ``t`` in the query are each modality's mean token and
the keys are every token of both (as ``fusion_ref/cross_attention.py``).
"""

import keras
from keras import ops

from ._layers import FusionLayer, attention, feed_forward, layer_norm, pool, token_keys, tokens


def cross_attention(s, p, v, t, *, training, noise, drop, present=None, token_weights=None):
    r"""$q = \mathrm{LN}_1(\tfrac12(v+t)) \in \mathbb{R}^{B \times 1 \times D}$,
    $z = \mathrm{MHA}(q, X, X)$,
    $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$ with $X = [v, t] \in \mathbb{R}^{B \times 2 \times D}$.

    Missing modality ``key_mask``: the query is the present token, the absent one
    gets attention weight 0.

    Token sequences ``v`` ``(B, L_v, D)``, ``t`` ``(B, L_t, D)`` (``token_weights``: their
    real tokens, ``None`` when all are): $v$, $t$ in $q$ are the masked means and
    $X = [v; t] \in \mathbb{R}^{B \times (L_v + L_t) \times D}$, padding masked as keys.
    """
    eps = s.layer_norm_eps
    if len(v.shape) == 3:
        return _cross_attention_tokens(s, p, v, t, drop, present, token_weights)
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


def _cross_attention_tokens(s, p, v, t, drop, present, w):
    eps = s.layer_norm_eps
    keys = token_keys(s, w, present)  # (B, L_v + L_t) or None: all
    x = ops.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
    v, t = pool(v, None if w is None else w[0]), pool(t, None if w is None else w[1])  # (B, D)
    key_mask = present is not None and s.missing_modality == "key_mask"
    q = 0.5 * (v + t)
    if key_mask:
        single = ops.where(present.image[:, None], v, t)
        q = ops.where(present.both[:, None], q, single)  # mean of the present modalities
    q = layer_norm(p, "norm1", q, eps)[:, None]  # (B, 1, D)
    z, weights = attention(
        p, "attn", q, x, s.heads, drop=drop, key_mask=keys
    )  # (B, 1, D), (B, h, 1, L_v + L_t)
    z = z[:, 0]  # (B, D)
    weights = weights[:, :, 0]  # (B, h, L_v + L_t)
    if key_mask:
        weights = ops.where(present.neither[:, None, None], ops.zeros_like(weights), weights)
    out = z + feed_forward(p, "ffn", layer_norm(p, "norm2", z, eps), drop_out=drop)
    return out, {"attention_weights": weights}


@keras.saving.register_keras_serializable(package="fusion_spec")
class CrossAttentionFusion(FusionLayer):
    r"""``cross_attention`` as a Keras layer: $f = z + \mathrm{FFN}(\mathrm{LN}_2(z))$,
    $z = \mathrm{MHA}(\mathrm{LN}_1(\tfrac12(v+t)), [v, t])$.

    Dropout in training on the attention weights and the FFN output.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``; token sequences ``(B, L_v, D)``,
    ``(B, L_t, D)`` -> ``(B, D)``. Aux: ``attention_weights`` ``(B, heads, 2)`` (weight of
    ``v``, of ``t``); with token sequences ``(B, heads, L_v + L_t)`` (each image token,
    then each text token; 0 on padding).
    """

    kind = "cross_attention"
    chunked_eval = True
    fuse = staticmethod(cross_attention)
    reads_tokens = True
