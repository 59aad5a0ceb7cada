"""``modality_dropout``: keep masks from noise, then ``W_2 ReLU(W_1 [k_v v; k_t t] + b_1) + b_2``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import ModalityDropoutSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import ModalityDropoutFields

from ._layers import FusionModule, as_dtype, batch_values, host_readable


class ModalityDropoutFusion(FusionModule):
    r"""$\tilde v = k_v v$, $\tilde t = k_t t$, $f = W_2\,\mathrm{ReLU}(W_1 [\tilde v; \tilde t] + b_1) + b_2$.

    In training $k_v = [u_v \ge p_{img}]$, $k_t = [u_t \ge p_{txt}]$ from the noise
    ``drop_image``, ``drop_text``: shape ``(1,)`` (one draw for the batch, the
    original's ``torch.rand(1)``) or ``(B,)`` with ``drop_granularity="sample"``;
    $k_v = k_t = 1$ in eval. ``mlp.0``: $2D \to D$, ``mlp.1``: $D \to D$.
    A batch's one draw is read on the host in eager CPU calls (no round trip there)
    and only a dropped half is multiplied; elsewhere both halves are multiplied by
    the keep mask (no host synchronisation).
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``keep_image``,
    ``keep_text`` ``(B,)`` 0/1.
    """

    kind = "modality_dropout"
    spec: ModalityDropoutSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[ModalityDropoutFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        d = self.spec.dim
        self.mlp = nn.ModuleList([nn.Linear(2 * d, d), nn.Linear(d, d)])
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        s = self.spec
        batch, d = v.shape
        keep = None  # (1, 2) or (B, 2) bool: keep (image, text)
        kept_on_host = None  # (image, text) kept: one draw for the batch, read on the host
        if self.training:
            u_v, u_t = noise["drop_image"], noise["drop_text"]
            if present is None and u_v.shape[0] == 1 and host_readable(u_v):
                # on the CPU and eager: read the draw (no device round trip) and compare
                # it as torch would, with p in the noise's dtype, as the original's
                # ``if torch.rand(1) < p``; no tensor op unless a half is dropped
                values = batch_values(u_v, u_t)
                kept_on_host = [
                    x >= as_dtype(p, u_v.dtype)
                    for x, p in zip(values, (s.p_img, s.p_txt), strict=True)
                ]
            else:
                keep = torch.stack([u_v >= s.p_img, u_t >= s.p_txt], -1)
        if present is not None:  # 'drop': an absent modality is a dropped one
            if s.missing_modality == "drop":
                mask = torch.stack([present.image, present.text], dim=-1)  # (B, 2)
            else:  # 'zero_fill': the absent row's fill goes through; neither: dropped
                mask = (~present.neither)[:, None].expand(batch, 2)  # (B, 2)
            keep = mask if keep is None else keep & mask
        if kept_on_host is not None:
            image_kept, text_kept = kept_on_host
            h = torch.cat([v if image_kept else v * 0.0, t if text_kept else t * 0.0], dim=-1)
        else:
            h = torch.cat([v, t], dim=-1)  # (B, 2D)
            if keep is not None:  # one multiplication of both halves (nothing to do in eval)
                h = (h.view(batch, 2, d) * keep[:, :, None].to(h.dtype)).view(batch, 2 * d)
        out = self.mlp[1](torch.relu(self.mlp[0](h)))
        if not want_aux:
            return out, {}
        if kept_on_host is not None:
            keep = torch.tensor([kept_on_host], device=v.device)  # (1, 2)
        if keep is None:
            keep_v = keep_t = v.new_ones(batch)
        else:
            kept = keep.to(v.dtype).expand(batch, 2).contiguous()  # (B, 2), own storage
            keep_v, keep_t = kept[:, 0], kept[:, 1]
        return out, {"keep_image": keep_v, "keep_text": keep_t}
