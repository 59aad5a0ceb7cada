"""The Keras 3 backend: the nine fusion rules as Keras layers, written once with ``keras.ops``.

Runs on every Keras backend chosen by ``KERAS_BACKEND`` before Keras is imported
(``jax``, ``torch``, ``tensorflow``, ``numpy``; the NumPy backend cannot train).
Without ``KERAS_BACKEND``, Keras's own default applies (``tensorflow``, or the
``backend`` of ``~/.keras/keras.json``); a backend that is not installed raises an
``ImportError`` that names it and how to install or choose one. Each layer
computes its spec's function; canonical params load with ``load_canonical``
and export with ``canonical_params``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fusion_spec.spec import parse
from fusion_spec.spec._errors import did_you_mean

#: Keras backend -> what to install for it.
INSTALL = {
    "jax": "pip install 'fusion-spec[keras-jax]'",
    "tensorflow": "pip install 'fusion-spec[keras-tensorflow]'",
    "torch": "pip install 'fusion-spec[keras,torch]'",
    "numpy": "pip install 'fusion-spec[keras-jax]' (Keras's numpy backend imports jax and scipy)",
}


def _import_keras() -> None:
    """Import Keras, turning a missing Keras backend into an error that says what to do."""
    try:
        import keras  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name == "keras":
            raise ImportError(
                "fusion_spec.backends.keras needs Keras 3; received no 'keras' module: "
                "pip install 'fusion-spec[keras-jax]' (or [keras-tensorflow], [keras,torch])"
            ) from err
        chosen = os.environ.get("KERAS_BACKEND")
        origin = (
            f"KERAS_BACKEND={chosen!r}"
            if chosen
            else "KERAS_BACKEND is not set, so Keras chose its default (tensorflow, or the "
            "'backend' of ~/.keras/keras.json)"
        )
        backend = chosen or "tensorflow"
        raise ImportError(
            f"fusion_spec.backends.keras: {origin}, but that Keras backend cannot be imported "
            f"(missing module {err.name!r}). Install it ({INSTALL.get(backend, 'see keras.io')}) "
            "or choose an installed backend with KERAS_BACKEND=jax|torch|tensorflow|numpy "
            "before Keras is first imported."
        ) from err


_import_keras()

from ._layers import LAYER_ARGUMENTS, FusionLayer, MonitorCallback  # noqa: E402
from .concat_mlp import ConcatMlpFusion  # noqa: E402
from .cross_attention import CrossAttentionFusion  # noqa: E402
from .energy_aware_adaptive import EnergyAwareAdaptiveFusion, ProgressCallback  # noqa: E402
from .film import FilmFusion  # noqa: E402
from .gated import GatedFusion  # noqa: E402
from .modality_dropout import ModalityDropoutFusion  # noqa: E402
from .shomr import ShomrFusion  # noqa: E402
from .simple import SimpleFusion  # noqa: E402
from .transformer_concat import TransformerConcatFusion  # noqa: E402

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
    s: Any,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    matmul_precision: str = "float32",
    **fields: Any,
) -> FusionLayer:
    """A built Keras layer for rule ``s`` (a spec or anything ``spec.parse`` accepts).

    ``build("gated", dim=64)``: ``s`` and ``fields`` go to ``spec.parse(s, **fields)``;
    a keyword that is a layer argument (``energy_loss``, ``name``, ``dtype``, ...) goes
    to the layer instead.

    With ``params`` (canonical names and shapes) the weights are loaded from
    them; otherwise they are drawn from the spec's initial distributions.
    ``seed`` seeds the initializers and the layer's ``SeedGenerator``;
    ``matmul_precision`` is ``"float32"`` or, on JAX, the TF32 opt-in
    ``"tensorfloat32"`` (see ``FusionLayer``).
    """
    spec_fields = {k: v for k, v in fields.items() if k not in LAYER_ARGUMENTS}
    layer_kwargs = {k: v for k, v in fields.items() if k in LAYER_ARGUMENTS}
    s = parse(s, **spec_fields)
    layer = LAYERS[s.kind](s, seed=seed, matmul_precision=matmul_precision, **layer_kwargs)
    if params is not None:
        layer.load_canonical(params)  # builds with them (no random initial draw)
    else:
        layer.build()
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
    "MonitorCallback",
    "ProgressCallback",
    "ShomrFusion",
    "SimpleFusion",
    "TransformerConcatFusion",
    "build",
]

if not TYPE_CHECKING:  # a type checker reports a misspelt name itself

    def __getattr__(name: str):
        """A misspelt name (``GatedFuson``): the closest names and every one there is."""
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}{did_you_mean(name, __all__)}; "
            f"it has: {', '.join(sorted(__all__))}"
        )
