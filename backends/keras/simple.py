"""``simple``: a post-norm Transformer encoder over ``[v, t]``, then the mean of the two tokens."""

import keras

from ._layers import FusionLayer, encoder_layer, present_mean, tokens


def simple(s, p, v, t, *, training, noise, drop, present=None):
    r"""$f(v, t) = \tfrac12 (X_{0,:} + X_{1,:})^\top$,
    $X = \mathcal{T}([v, t]) \in \mathbb{R}^{B \times 2 \times D}$.
    """
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
    ``(B, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "simple"
    chunked_eval = True
    fuse = staticmethod(simple)
