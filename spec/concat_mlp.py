"""``concat_mlp``: an MLP on the concatenation ``[v; t]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import (
    MAX_HIDDEN_MULT,
    MAX_LAYERS,
    Count,
    FusionSpecBase,
    dropout_field,
    gelu_field,
    linear,
    linear_macs,
    missing_field,
)


class ConcatMlpSpec(FusionSpecBase):
    r"""$h_0 = [v; t]$, $h_i = \mathrm{GELU}(W_i h_{i-1} + b_i)$, $f = W_L h_{L-1} + b_L$."""

    summary = "MLP on [v; t]: layers-1 GELU blocks of width hidden_mult * dim, then a linear."
    dropout_sites = (
        'after the GELU of each of the layers - 1 hidden blocks (none after the final linear)',
    )

    kind: Literal["concat_mlp"] = "concat_mlp"
    hidden_mult: Count = Field(
        default=2, gt=0, le=MAX_HIDDEN_MULT, description="Hidden width is hidden_mult * dim."
    )
    layers: Count = Field(
        default=2,
        gt=0,
        le=MAX_LAYERS,
        description="Number of linear layers (1 = a single linear).",
    )
    dropout: float = dropout_field()
    gelu: Literal["erf"] = gelu_field()
    missing_modality: Literal["zero_fill"] = missing_field(
        "zero_fill", "the absent half of [v; t] is zeros and the MLP runs unchanged."
    )

    missing_semantics = {
        "zero_fill": (
            r"The absent half of the concatenation is zeros: $h_0 = [\hat v; \hat t]$ and "
            r"the MLP runs unchanged. It sees zeros in training only where a modality is "
            r"missing, so train with missing samples (or use `modality_dropout`) for it to "
            r"learn what zeros mean."
        ),
    }

    def _widths(self) -> list[int]:
        hidden = self.hidden_mult * self.dim
        return [2 * self.dim] + [hidden] * (self.layers - 1) + [self.dim]

    def rule_params(self):
        w = self._widths()
        specs = []
        for i in range(self.layers):
            specs += linear(f"mlp.{i}", w[i], w[i + 1])
        return specs

    def rule_macs(self):
        w = self._widths()
        return {"all": sum(linear_macs(w[i], w[i + 1]) for i in range(self.layers))}

    def has_elementwise_dropout(self) -> bool:
        return self.layers > 1 and self.dropout > 0.0
