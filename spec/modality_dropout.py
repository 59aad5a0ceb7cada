"""``modality_dropout``: drop whole modalities in training, then an MLP on ``[v; t]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import (
    AuxSpec,
    Comparison,
    FusionSpecBase,
    NoiseSpec,
    linear,
    linear_macs,
    missing_field,
)


class ModalityDropoutSpec(FusionSpecBase):
    r"""$\tilde v = k_v v$, $\tilde t = k_t t$, $f = W_2\,\mathrm{ReLU}(W_1 [\tilde v; \tilde t] + b_1) + b_2$."""

    summary = "Training drops v (prob p_img) and/or t (prob p_txt), then Linear-ReLU-Linear."

    comparisons = (
        Comparison("drop_image", "keep_image", "noise drop_image", "<", "p_img"),
        Comparison("drop_text", "keep_text", "noise drop_text", "<", "p_txt"),
    )

    kind: Literal["modality_dropout"] = "modality_dropout"
    p_img: float = Field(default=0.3, ge=0.0, le=1.0, description="Probability of dropping v.")
    p_txt: float = Field(default=0.3, ge=0.0, le=1.0, description="Probability of dropping t.")
    drop_granularity: Literal["batch", "sample"] = Field(
        default="batch",
        description=(
            "'batch': one draw per modality for the whole batch (the original's "
            "torch.rand(1)); 'sample': one draw per sample and modality."
        ),
    )

    missing_modality: Literal["zero_fill", "drop"] = missing_field(
        "zero_fill",
        "'zero_fill': the absent embedding is zeros (under input_norm='batch', then its "
        "fill, input_norm_absent) and goes through the rule as a present one, only the "
        "training draws drop; 'drop': an absent modality is a dropped one (zeros after "
        "the norm). The two differ only where the fill is not 0 (input_norm='batch' with "
        "input_norm_absent='zero'). Trained with a share of the samples missing one "
        "modality and the mask, 'drop' cost accuracy on complete samples; 'zero_fill' "
        "did not (docs/training.md).",
    )

    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is zeros (under `input_norm='batch'`, then its fill, "
            r"`input_norm_absent`) and goes through the rule as a present one: "
            r"$f = W_2\,\mathrm{ReLU}(W_1 [k_v \hat v; k_t \hat t] + b_1) + b_2$ with the "
            r"training draws $k_v$, $k_t$ alone (1 in eval), which the aux `keep_image`, "
            r"`keep_text` report (a sample with neither: 0, margin $\infty$). Where the "
            r"fill is 0 (no input norm, or `input_norm_absent='mean'`) this is `'drop'`'s "
            r"output."
        ),
        "drop": (
            r"An absent modality is a dropped one: $k_v \leftarrow k_v \pi_v$, "
            r"$k_t \leftarrow k_t \pi_t$, in eval and composed with the training draws, "
            r"so $f = W_2\,\mathrm{ReLU}(W_1 [k_v \hat v; k_t \hat t] + b_1) + b_2$ and "
            r"the aux `keep_image`, `keep_text` report the effective keeps (0 where "
            r"absent, margin $\infty$)."
        ),
    }

    def _noise_shape(self, batch: int) -> tuple[int, ...]:
        return (1,) if self.drop_granularity == "batch" else (batch,)

    def rule_params(self):
        return linear("mlp.0", 2 * self.dim, self.dim) + linear("mlp.1", self.dim, self.dim)

    def noise(self, batch, *, training, **options):
        if not training:
            return []
        shape = self._noise_shape(batch)
        return [
            NoiseSpec("drop_image", shape, "v is dropped where drop_image < p_img."),
            NoiseSpec("drop_text", shape, "t is dropped where drop_text < p_txt."),
        ]

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec(
                "keep_image",
                (batch,),
                "decision",
                "1 where v is kept, 0 where dropped (absent too under 'drop'; neither: 0).",
                margin="keep_image_margin",
            ),
            AuxSpec(
                "keep_text",
                (batch,),
                "decision",
                "1 where t is kept, 0 where dropped (absent too under 'drop'; neither: 0).",
                margin="keep_text_margin",
            ),
            AuxSpec("keep_image_margin", (batch,), "margin", "|drop_image - p_img| (inf in eval)."),
            AuxSpec("keep_text_margin", (batch,), "margin", "|drop_text - p_txt| (inf in eval)."),
        ]

    def rule_macs(self):
        return {"all": linear_macs(2 * self.dim, self.dim) + linear_macs(self.dim, self.dim)}
