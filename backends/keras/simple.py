"""``simple``: a post-norm Transformer encoder over ``[v, t]``, then the mean of the tokens.

With token sequences the encoder runs over every token of both modalities and the
mean is over the real ones (``token_keys``, as ``fusion_ref/simple.py``).
"""

import keras
from keras import ops

from ._layers import FusionLayer, encoder_layer, key_mean, present_mean, token_keys, tokens


def simple(s, p, v, t, *, training, noise, drop, present=None, token_weights=None):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$,
    $X = \mathcal{T}([v, t]) \in \mathbb{R}^{B \times 2 \times D}$.

    Token sequences ``v`` ``(B, L_v, D)``, ``t`` ``(B, L_t, D)`` (``token_weights``: their token
    weights, ``None`` when all are real): $X = \mathcal{T}([v; t]) \in
    \mathbb{R}^{B \times (L_v + L_t) \times D}$ with the padding (and absent) tokens
    masked as keys, and $f$ the mean of $X$ over the keys.
    """
    if len(v.shape) == 3:
        keys = token_keys(s, token_weights, present)  # (B, L_v + L_t) or None: all
        x = ops.concatenate([v, t], axis=1)  # (B, L_v + L_t, D)
        for i in range(s.layers):
            x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, drop, keys)
        return key_mean(x, keys), {}
    if s.missing_modality != "key_mask":
        present = None  # zero_fill: the rule runs unchanged on the zeroed rows
    key_mask = None if present is None else present.key_mask()
    x = tokens(v, t)  # (B, 2, D)
    for i in range(s.layers):
        x = encoder_layer(p, f"encoder.{i}", x, s.heads, s.layer_norm_eps, drop, key_mask)
    return present_mean(x, present), {}


@keras.saving.register_keras_serializable(package="fusion_spec")
class SimpleFusion(FusionLayer):
    r"""``simple`` as a Keras layer: $f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$, $X = \mathcal{T}([v, t])$.

    $\mathcal{T}$ is ``layers`` post-norm encoder layers (``heads`` heads, FFN
    width ``4 D``, exact GELU, LayerNorm eps from the spec). Shape: ``v``, ``t``
    ``(B, D)`` -> ``(B, D)``; token sequences ``(B, L_v, D)``, ``(B, L_t, D)`` -> ``(B, D)``
    (the mean over every real token). No aux outputs.
    """

    kind = "simple"
    chunked_eval = True
    fuse = staticmethod(simple)
    reads_tokens = True
