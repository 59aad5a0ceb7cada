"""``transformer_concat``: the encoder of ``simple`` over ``[v + e_v, t + e_t]``."""

import keras

from ._layers import FusionLayer, encoder_layer, present_mean, tokens


def transformer_concat(s, p, v, t, *, training, noise, drop, present=None):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$ with $X = \mathcal{T}([v + e_v, t + e_t])$,
    $e \in \mathbb{R}^{2 \times D}$.
    """
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
    equals ``simple``. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "transformer_concat"
    chunked_eval = True
    fuse = staticmethod(transformer_concat)
