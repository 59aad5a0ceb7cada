"""``concat_mlp``: ``f = W_L GELU(... GELU(W_1 [v; t] + b_1) ...) + b_L``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fusion_spec.spec import ConcatMlpSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import ConcatMlpFields

from ._layers import FusionModule, dropout, gelu


class ConcatMlpFusion(FusionModule):
    r"""$h_0 = [v; t]$, $h_i = \mathrm{drop}(\mathrm{GELU}(W_i h_{i-1} + b_i))$, $f = W_L h_{L-1} + b_L$.

    ``mlp.{i}`` are ``layers`` linears: $2D \to HD$, $HD \to HD$, ..., $\to D$ with
    $H$ = ``hidden_mult`` (``layers=1``: one $2D \to D$). Dropout after each hidden
    GELU, as the original. Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. No aux outputs.
    """

    kind = "concat_mlp"
    spec: ConcatMlpSpec

    def __init__(
        self,
        spec: Any = None,
        *,
        generator: torch.Generator | None = None,
        **fields: Unpack[ConcatMlpFields],
    ):
        super().__init__(spec, generator=generator, **fields)
        s = self.spec
        widths = [2 * s.dim] + [s.hidden_mult * s.dim] * (s.layers - 1) + [s.dim]
        self.mlp = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(s.layers))
        self.reset_parameters()

    def fuse(self, v: Tensor, t: Tensor, *, noise, present=None, want_aux=True):
        # missing modality: zero-fill, the forward already zeroed the absent rows
        h = torch.cat([v, t], dim=-1)  # (B, 2D)
        last = len(self.mlp) - 1  # (slicing a ModuleList builds a new module per call)
        for i, layer in enumerate(self.mlp):
            h = layer(h) if i == last else dropout(gelu(layer(h)), self.dropout_rate, self.training)
        return h, {}
