"""fusion-spec: the binding definition of nine multimodal fusion rules.

Each rule is a frozen pydantic model (discriminated by ``kind``) that pins every
hyperparameter and numeric constant and declares its canonical parameters,
noise inputs, auxiliary outputs and cost. This package depends only on NumPy,
pydantic and safetensors.
"""

from typing import TYPE_CHECKING

from ._base import (
    LAYER_NORM_EPS,
    MAX_DIM,
    MAX_HIDDEN_MULT,
    MAX_LAYERS,
    MAX_PARAMS,
    AuxSpec,
    CallOption,
    Comparison,
    FusionSpecBase,
    Init,
    NoiseSpec,
    ParamSpec,
)
from ._checks import CALL_INPUTS, ArgSpec, array_meta, check_arrays, check_flag, check_noise
from ._errors import FusionError, InputError, SpecError, WeightsError, describe, did_you_mean
from ._legacy import from_legacy, to_legacy
from ._params import as_numpy, check_params, init_params
from ._union import (
    RULES,
    SCHEMA_PATH,
    FusionSpec,
    json_schema,
    parse,
    parse_stored,
    render_schema,
    write_schema,
)
from ._weights import load_weights, save_weights
from .concat_mlp import ConcatMlpSpec
from .cross_attention import CrossAttentionSpec
from .energy_aware_adaptive import EnergyAwareAdaptiveSpec
from .film import FilmSpec
from .gated import GatedSpec
from .modality_dropout import ModalityDropoutSpec
from .shomr import ShomrSpec
from .simple import SimpleSpec
from .transformer_concat import TransformerConcatSpec

__all__ = [
    "CALL_INPUTS",
    "ArgSpec",
    "array_meta",
    "check_arrays",
    "check_flag",
    "check_noise",
    "LAYER_NORM_EPS",
    "MAX_DIM",
    "MAX_HIDDEN_MULT",
    "MAX_LAYERS",
    "MAX_PARAMS",
    "RULES",
    "SCHEMA_PATH",
    "AuxSpec",
    "Comparison",
    "CallOption",
    "ConcatMlpSpec",
    "CrossAttentionSpec",
    "EnergyAwareAdaptiveSpec",
    "FilmSpec",
    "FusionSpec",
    "FusionError",
    "FusionSpecBase",
    "GatedSpec",
    "Init",
    "InputError",
    "ModalityDropoutSpec",
    "NoiseSpec",
    "ParamSpec",
    "ShomrSpec",
    "SimpleSpec",
    "SpecError",
    "TransformerConcatSpec",
    "WeightsError",
    "as_numpy",
    "check_params",
    "describe",
    "from_legacy",
    "to_legacy",
    "init_params",
    "json_schema",
    "load_weights",
    "parse",
    "parse_stored",
    "render_schema",
    "save_weights",
    "write_schema",
]

if not TYPE_CHECKING:  # a type checker reports a misspelt name itself

    def __getattr__(name: str):
        """A misspelt name (``spec.GatedSpc``): the closest names and every one there is."""
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}{did_you_mean(name, __all__)}; "
            f"it has: {', '.join(sorted(__all__))}"
        )
