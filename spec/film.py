"""``film``: text produces an affine modulation of the image embedding."""

from __future__ import annotations

from typing import Literal

from ._base import AuxSpec, FusionSpecBase, linear, linear_macs, missing_field


class FilmSpec(FusionSpecBase):
    r"""$\gamma = W_\gamma t + b_\gamma$, $\beta = W_\beta t + b_\beta$, $f = \gamma \odot v + \beta$."""

    summary = "FiLM: gamma(t) * v + beta(t); asymmetric (text conditions vision)."

    kind: Literal["film"] = "film"
    missing_modality: Literal["zero_fill", "identity"] = missing_field(
        "zero_fill",
        "'zero_fill': the absent embedding is zeros and the rule runs unchanged (without "
        "text, under input_norm='none', the image is modulated by the biases; under "
        "input_norm='batch', by gamma and beta of the text's fill, input_norm_absent); "
        "'identity': without text the image is "
        "left unmodulated (gamma = 1, beta = 0), without the image the output is the "
        "shift beta(t) alone. Trained with a share of the samples missing one modality and "
        "the mask, 'identity' cost accuracy on complete samples (its text-less outputs "
        "v sit beside complete samples' gamma(t) v + beta(t)); 'zero_fill' with the default "
        "input_norm_absent did not (docs/training.md).",
    )

    missing_semantics = {
        "zero_fill": (
            r"The absent embedding is zeros (under `input_norm='batch'`, then its fill, "
            r"`input_norm_absent`): $f = \gamma(\hat t) \odot \hat v + \beta(\hat t)$; "
            r"without text and without the input norm the image is modulated by the biases, "
            r"$f = b_\gamma \odot v + b_\beta$."
        ),
        "identity": (
            r"Text only modulates: without text the affine map is the identity, "
            r"$\tilde\gamma = \mathbf{1}$, $\tilde\beta = \mathbf{0}$, so $f = v$; "
            r"without the image $f = \beta(t) = W_\beta t + b_\beta$ (the shift alone). "
            r"In general $f = \tilde\gamma \odot \hat v + \tilde\beta$ with "
            r"$\tilde\gamma = \gamma(t)$, $\tilde\beta = \beta(t)$ where the text is "
            r"present; the aux outputs report $\tilde\gamma$, $\tilde\beta$."
        ),
    }

    def rule_params(self):
        return linear("gamma", self.dim, self.dim) + linear("beta", self.dim, self.dim)

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec(
                "gamma",
                (batch, self.dim),
                "value",
                "Multiplicative modulation. Without text (neither modality included): 1 "
                "under missing_modality='identity', gamma.bias under 'zero_fill'.",
            ),
            AuxSpec(
                "beta",
                (batch, self.dim),
                "value",
                "Additive modulation. Without text (neither modality included): 0 under "
                "missing_modality='identity', beta.bias under 'zero_fill'.",
            ),
        ]

    def rule_macs(self):
        return {"all": 2 * linear_macs(self.dim, self.dim)}
