"""Deliberately broken backends: the suite's own regression tests.

Each adapter plants one known bug into the reference and the suite must fail
it with a message that points at the bug. These are the cross-rule mutations;
the public catalogue of every planted bug, one module per rule, with the checks
answerable for each, is ``fusion_spec.conformance.planted`` (its kill matrix:
``docs/kill-matrix.md``). The mutations here are also the hypotheses
``conformance.diagnose`` tries on a failing output, so a backend author is told,
for instance, that the output matches the reference with ``v`` and ``t`` swapped.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator

import numpy as np

from fusion_spec import fusion_ref
from fusion_spec.fusion_ref import _layers

from .adapters.reference import ReferenceAdapter

_FUSION_REF_MODULES = [_layers] + [
    importlib.import_module(f"fusion_spec.fusion_ref.{kind}") for kind in fusion_ref.RULES
]


@contextlib.contextmanager
def patched(name: str, replacement) -> Iterator[None]:
    """Replace ``name`` in every ``fusion_ref`` module that has it, for the duration."""
    saved = [(m, getattr(m, name)) for m in _FUSION_REF_MODULES if hasattr(m, name)]
    try:
        for m, _ in saved:
            setattr(m, name, replacement)
        yield
    finally:
        for m, original in saved:
            setattr(m, name, original)


# --- the mutations ----------------------------------------------------------------------


def tanh_gelu(x: np.ndarray) -> np.ndarray:
    """The tanh approximation ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_layer_norm = _layers.layer_norm


def layer_norm_eps_1e3(p, name, x, eps):
    """LayerNorm with Keras's default eps 1e-3 instead of the spec's (a spec cannot say 1e-3:
    ``layer_norm_eps`` admits only 1e-5, so the bug is planted in the function)."""
    return _layer_norm(p, name, x, 1e-3)


def attention_scale_one_over_dim(p, name, query, keys, heads, key_mask=None):
    """Multi-head attention with scores scaled by ``1/D`` instead of ``1/sqrt(D/h)``."""
    B, Tq, D = query.shape
    Tk = keys.shape[1]
    dh = D // heads
    q = _layers.linear(p, f"{name}.query", query).reshape(B, Tq, heads, dh).transpose(0, 2, 1, 3)
    k = _layers.linear(p, f"{name}.key", keys).reshape(B, Tk, heads, dh).transpose(0, 2, 1, 3)
    v = _layers.linear(p, f"{name}.value", keys).reshape(B, Tk, heads, dh).transpose(0, 2, 1, 3)
    scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / D)
    if key_mask is not None:
        scores = np.where(key_mask[:, None, None, :], scores, -np.inf)
    weights = _layers.softmax(scores, axis=-1)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(B, Tq, D)
    return _layers.linear(p, f"{name}.output", mixed), weights


def categorical_less_equal(probs: np.ndarray, u: np.ndarray):
    """The categorical draw with ``u <= cdf`` instead of ``u < cdf``."""
    cdf = np.cumsum(probs, axis=-1)
    below = u[:, None] <= cdf
    route = np.where(below.any(axis=-1), np.argmax(below, axis=-1), probs.shape[1] - 1)
    return route.astype(np.int64), np.full(probs.shape[0], np.inf)


def categorical_reversed_cdf(probs: np.ndarray, u: np.ndarray):
    """The categorical draw walking the CDF from the last class to the first."""
    K = probs.shape[1]
    cdf = np.cumsum(probs[:, ::-1], axis=-1)
    below = u[:, None] < cdf
    first = np.where(below.any(axis=-1), np.argmax(below, axis=-1), K - 1)
    return (K - 1 - first).astype(np.int64), np.full(probs.shape[0], np.inf)


def square_weight(s) -> str:
    """The first square dense weight of ``s`` (``D x D``), or the first dense weight."""
    dense = [p for p in s.params() if p.name.endswith(".weight") and len(p.shape) == 2]
    square = [p for p in dense if p.shape[0] == p.shape[1]]
    return (square or dense)[0].name


# --- the broken adapters -----------------------------------------------------------------


class _Broken(ReferenceAdapter):
    """The reference with one planted bug; ``bug`` names it in reports."""

    bug = ""
    #: The bug recomputes from the raw ``v``, ``t`` as if they were the rule's inputs:
    #: specs with input widths other than dim are not applicable (the rule reads projections).
    equal_widths = False

    @property
    def supports_tokens(self) -> bool:  # type: ignore[override]
        """A bug that recomputes from the raw ``v``, ``t`` reads vectors: token cases are n/a."""
        return not self.equal_widths

    def not_applicable(self, s, *, training):
        if self.equal_widths and s.projected():
            return f"{self.name}: planted for inputs of width dim (no input projections)"
        return super().not_applicable(s, training=training)

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.name = f"broken-{self.bug}"


class TanhGelu(_Broken):
    bug = "tanh-gelu"

    def forward(self, model, v, t, **kw):
        with patched("gelu", tanh_gelu):
            return super().forward(model, v, t, **kw)


class LayerNormEps1e3(_Broken):
    bug = "layer-norm-eps-1e-3"

    def forward(self, model, v, t, **kw):
        with patched("layer_norm", layer_norm_eps_1e3):
            return super().forward(model, v, t, **kw)


class TransposedSquareWeight(_Broken):
    """Holds one ``D x D`` weight transposed, as a loader that forgot ``W.T`` would."""

    bug = "transposed-square-weight"

    def build(self, s, params):
        params = dict(params)
        name = square_weight(s)
        if params[name].shape[0] == params[name].shape[1]:
            params[name] = np.ascontiguousarray(params[name].T)
        return super().build(s, params)


class SwappedInputs(_Broken):
    bug = "swapped-v-t"
    equal_widths = True

    def forward(self, model, v, t, **kw):
        return super().forward(model, t, v, **kw)


class AttentionScaleOneOverDim(_Broken):
    bug = "attention-scale-1-over-dim"

    def forward(self, model, v, t, **kw):
        with patched("attention", attention_scale_one_over_dim):
            return super().forward(model, v, t, **kw)


class CategoricalLessEqual(_Broken):
    bug = "categorical-less-equal"

    def forward(self, model, v, t, **kw):
        with patched("categorical", categorical_less_equal):
            return super().forward(model, v, t, **kw)


class CategoricalReversedCdf(_Broken):
    bug = "categorical-reversed-cdf"

    def forward(self, model, v, t, **kw):
        with patched("categorical", categorical_reversed_cdf):
            return super().forward(model, v, t, **kw)


class SamplingInEval(_Broken):
    """Draws the route from the router probabilities in eval instead of taking the argmax."""

    bug = "sampling-in-eval"

    def forward(self, model, v, t, **kw):
        def sample(probs):
            return _layers.categorical(probs, model.rng.random(probs.shape[0]))

        with patched("argmax", sample):
            return super().forward(model, v, t, **kw)


class TemperatureIgnored(_Broken):
    bug = "temperature-ignored"

    def build(self, s, params):
        if hasattr(s, "routing_temperature"):
            s = s.model_copy(update={"routing_temperature": 1.0})
        return super().build(s, params)


class EnergyLossAveragedWrongly(_Broken):
    """``lambda * mean_b(relu(e_b - budget))`` instead of ``lambda * relu(mean_b(e_b) - budget)``."""

    bug = "energy-loss-averaged-wrongly"

    def forward(self, model, v, t, **kw):
        out, aux = super().forward(model, v, t, **kw)
        s = model.spec
        if s.kind == "energy_aware_adaptive":
            weight = model.params["energy_weight"] if s.energy_weight_trainable else s.energy_weight
            excess = np.maximum(aux["expected_energy"] - s.energy_budget_mJ, 0.0)
            aux["energy_loss"] = np.asarray(float(weight) * excess.mean())
        return out, aux


class ModalityDropPerSample(_Broken):
    """With its own RNG, drops each sample's modality separately although the spec says per batch."""

    bug = "modality-drop-per-sample"

    def forward(self, model, v, t, *, training, noise, options, present=None, **masks):
        s = model.spec
        if s.kind == "modality_dropout" and training and noise is None:
            per_sample = s.model_copy(update={"drop_granularity": "sample"})
            noise = {
                n.name: model.rng.random(n.shape)
                for n in per_sample.noise(v.shape[0], training=True)
            }
            return fusion_ref.forward(
                per_sample, model.params, v, t, present, training=True, noise=noise, return_aux=True
            )
        return super().forward(
            model, v, t, training=training, noise=noise, options=options, present=present, **masks
        )


class UnregisteredParam(_Broken):
    """Computes with every param but never registers the last one with its 'framework'."""

    bug = "unregistered-param"

    def canonical_params(self, model):
        held = super().canonical_params(model)
        held.pop(model.spec.params()[-1].name)
        return held


REFERENCE_BUGS: tuple[type[_Broken], ...] = (
    TanhGelu,
    LayerNormEps1e3,
    TransposedSquareWeight,
    SwappedInputs,
    AttentionScaleOneOverDim,
    CategoricalLessEqual,
    CategoricalReversedCdf,
    SamplingInEval,
    TemperatureIgnored,
    EnergyLossAveragedWrongly,
    ModalityDropPerSample,
    UnregisteredParam,
)
