"""``modality_dropout``: keep masks from noise, then ``W_2 ReLU(W_1 [k_v v; k_t t] + b_1) + b_2``.

Missing modality: ``"zero_fill"`` (default) passes the absent row's fill through the
draws like a present row; ``"drop"``: an absent modality is a dropped one (``k *= present``).
"""

import numpy as np

from ._layers import linear, relu


def _keep(u, p, batch):
    """Keep where ``u >= p`` (drop where ``u < p``); ``u`` is ``(1,)`` or ``(B,)``."""
    keep = np.broadcast_to((u >= p).astype(np.float64), (batch,))
    margin = np.broadcast_to(np.abs(u - p), (batch,))
    return keep, margin


def modality_dropout(s, p, v, t, *, training, noise, present=None):
    B = v.shape[0]
    if training:
        keep_v, margin_v = _keep(noise["drop_image"], s.p_img, B)
        keep_t, margin_t = _keep(noise["drop_text"], s.p_txt, B)
    else:
        keep_v = keep_t = np.ones(B)
        margin_v = margin_t = np.full(B, np.inf)
    if present is not None:  # 'drop': an absent modality is a dropped one
        if s.missing_modality == "drop":
            here = (present.image, present.text)
        else:  # 'zero_fill': the absent row's fill goes through; neither: dropped
            here = (~present.neither, ~present.neither)
        keep_v = keep_v * here[0]
        keep_t = keep_t * here[1]
        margin_v = np.where(here[0], margin_v, np.inf)
        margin_t = np.where(here[1], margin_t, np.inf)
    h = np.concatenate([keep_v[:, None] * v, keep_t[:, None] * t], axis=-1)  # (B, 2D)
    out = linear(p, "mlp.1", relu(linear(p, "mlp.0", h)))
    aux = {
        "keep_image": keep_v.copy(),
        "keep_text": keep_t.copy(),
        "keep_image_margin": margin_v.copy(),
        "keep_text_margin": margin_t.copy(),
    }
    return out, aux
