"""``concat_mlp``: ``f = W_L GELU(... GELU(W_1 [v; t] + b_1) ...) + b_L``."""

import keras
from keras import ops

from ._layers import FusionLayer, gelu, linear


def concat_mlp(s, p, v, t, *, training, noise, drop, present=None):
    r"""$h_0 = [v; t] \in \mathbb{R}^{B \times 2D}$,
    $h_i = \mathrm{drop}(\mathrm{GELU}(W_i h_{i-1} + b_i))$, $f = W_L h_{L-1} + b_L$.

    Missing modality: zero-fill (the layer already zeroed the absent rows).
    """
    h = ops.concatenate([v, t], axis=-1)  # (B, 2D)
    for i in range(s.layers - 1):
        h = drop(gelu(linear(p, f"mlp.{i}", h)))  # (B, hidden_mult * D)
    return linear(p, f"mlp.{s.layers - 1}", h), {}


@keras.saving.register_keras_serializable(package="fusion_spec")
class ConcatMlpFusion(FusionLayer):
    r"""``concat_mlp`` as a Keras layer: an MLP on $[v; t]$ with ``layers`` linears.

    Hidden width ``hidden_mult * D``, exact GELU, dropout after each hidden
    block in training. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "concat_mlp"
    fuse = staticmethod(concat_mlp)
