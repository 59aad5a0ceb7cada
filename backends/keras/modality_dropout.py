"""``modality_dropout``: keep masks, then ``f = W_2 ReLU(W_1 [k_v v; k_t t] + b_1) + b_2``."""

import keras
from keras import ops

from ._layers import FusionLayer, linear


def _keep(u, p, like):
    """1 where ``u >= p`` (drop where ``u < p``); ``u`` ``(1,)`` or ``(B,)``; returns ``(B,)``."""
    return ops.broadcast_to(ops.cast(u >= p, like.dtype), (like.shape[0],))


def modality_dropout(s, p, v, t, *, training, noise, drop, present=None):
    r"""$\tilde v = k_v v$, $\tilde t = k_t t$,
    $f = W_2\,\mathrm{ReLU}(W_1 [\tilde v; \tilde t] + b_1) + b_2$.

    In training $k_v = [u_v \ge p_{img}]$, $k_t = [u_t \ge p_{txt}]$ per batch
    (noise ``(1,)``) or per sample (``(B,)``); in eval both are 1.
    """
    if training:
        keep_v = _keep(noise["drop_image"], s.p_img, v)  # (B,)
        keep_t = _keep(noise["drop_text"], s.p_txt, v)  # (B,)
    else:
        keep_v = keep_t = ops.ones_like(v[:, 0])  # (B,)
    if present is not None:  # 'drop': an absent modality is a dropped one
        if s.missing_modality == "drop":
            here_v, here_t = present.image, present.text
        else:  # 'zero_fill': the absent row's fill goes through; neither: dropped
            here_v = here_t = ops.logical_not(present.neither)
        keep_v = keep_v * ops.cast(here_v, v.dtype)
        keep_t = keep_t * ops.cast(here_t, v.dtype)
    h = ops.concatenate([keep_v[:, None] * v, keep_t[:, None] * t], axis=-1)  # (B, 2D)
    out = linear(p, "mlp.1", ops.relu(linear(p, "mlp.0", h)))
    return out, {"keep_image": keep_v, "keep_text": keep_t}


@keras.saving.register_keras_serializable(package="fusion_spec")
class ModalityDropoutFusion(FusionLayer):
    r"""``modality_dropout`` as a Keras layer.

    $f = W_2\,\mathrm{ReLU}(W_1 [k_v v; k_t t] + b_1) + b_2$.

    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``keep_image``,
    ``keep_text`` ``(B,)`` as float 0/1.
    """

    kind = "modality_dropout"
    fuse = staticmethod(modality_dropout)
