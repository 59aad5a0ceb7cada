"""``transformer_concat``: the encoder of ``simple`` over ``[v + e_v, t + e_t]``.

With token sequences ``e_v`` is added to every image token, ``e_t`` to every text token.
"""

import keras
from keras import ops

from ._layers import FusionLayer, encoder_layer, key_mean, present_mean, token_keys, tokens


def transformer_concat(s, p, v, t, *, training, noise, drop, present=None, token_weights=None):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v + e_v, t + e_t])$,
    $e \in \mathbb{R}^{2 \times D}$.

    Token sequences (``v`` ``(B, L_v, D)``, ``t`` ``(B, L_t, D)``): as ``simple``'s, with
    $e_v$ on every image token and $e_t$ on every text token.
    """
    if len(v.shape) == 3:
        keys = token_keys(s, token_weights, present)  # (B, L_v + L_t) or None: all
        if s.modality_embeddings:
            e = p["modality_embedding"]  # (2, D)
            v, t = v + e[0], t + e[1]
        x = ops.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
        for i in range(s.layers):
            x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, drop, keys)
        return key_mean(x, keys), {}
    if s.missing_modality != "key_mask":
        present = None  # zero_fill: the rule runs unchanged on the zeroed rows
    key_mask = None if present is None else present.key_mask()
    x = tokens(v, t)  # (B, 2, D)
    if s.modality_embeddings:
        x = x + p["modality_embedding"]  # (2, D) broadcast over B
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, drop, key_mask)
    return present_mean(x, present), {}


@keras.saving.register_keras_serializable(package="fusion_spec")
class TransformerConcatFusion(FusionLayer):
    r"""``transformer_concat`` as a Keras layer: $\tfrac12 (X_{0,:} + X_{1,:})^\top$.

    $X = \mathcal{T}([v + e_v, t + e_t])$.

    With ``modality_embeddings=False`` the embeddings are absent and the rule
    equals ``simple``. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``; token sequences
    ``(B, L_v, D)``, ``(B, L_t, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "transformer_concat"
    chunked_eval = True
    fuse = staticmethod(transformer_concat)
    reads_tokens = True
