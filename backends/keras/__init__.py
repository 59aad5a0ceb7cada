"""The Keras 3 backend: the nine fusion rules as Keras layers, written once with ``keras.ops``.

Runs on every Keras backend chosen by ``KERAS_BACKEND`` before Keras is imported
(``jax``, ``torch``, ``numpy``; the NumPy backend cannot train). Each layer
computes its spec's function; canonical params load with ``load_canonical``
and export with ``canonical_params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spec import parse

from ._layers import FusionLayer
from .concat_mlp import ConcatMlpFusion
from .cross_attention import CrossAttentionFusion
from .energy_aware_adaptive import EnergyAwareAdaptiveFusion
from .film import FilmFusion
from .gated import GatedFusion
from .modality_dropout import ModalityDropoutFusion
from .shomr import ShomrFusion
from .simple import SimpleFusion
from .transformer_concat import TransformerConcatFusion

#: kind -> Keras layer class.
LAYERS: dict[str, type[FusionLayer]] = {
    cls.kind: cls
    for cls in (
        SimpleFusion,
        ConcatMlpFusion,
        GatedFusion,
        FilmFusion,
        ModalityDropoutFusion,
        TransformerConcatFusion,
        CrossAttentionFusion,
        ShomrFusion,
        EnergyAwareAdaptiveFusion,
    )
}


def build(
    s: Any, params: Mapping[str, Any] | None = None, *, seed: int | None = None
) -> FusionLayer:
    """A built Keras layer for rule ``s`` (a spec or anything ``spec.parse`` accepts).

    With ``params`` (canonical names and shapes) the weights are loaded from
    them; otherwise they are drawn from the spec's initial distributions.
    ``seed`` seeds the initializers and the layer's ``SeedGenerator``.
    """
    s = parse(s)
    layer = LAYERS[s.kind](s, seed=seed)
    layer.build()
    if params is not None:
        layer.load_canonical(params)
    return layer


__all__ = [
    "LAYERS",
    "ConcatMlpFusion",
    "CrossAttentionFusion",
    "EnergyAwareAdaptiveFusion",
    "FilmFusion",
    "FusionLayer",
    "GatedFusion",
    "ModalityDropoutFusion",
    "ShomrFusion",
    "SimpleFusion",
    "TransformerConcatFusion",
    "build",
]
