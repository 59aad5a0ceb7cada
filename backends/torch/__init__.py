"""The PyTorch backend: the nine fusion rules as ``torch.nn.Module``s.

``build(s, params)`` returns the module of rule ``s``; its ``state_dict()`` keys
are the canonical parameter names, ``canonical_params()`` gives them back as
NumPy arrays. ``load_legacy_checkpoint`` imports a checkpoint of the original
research code through ``spec.from_legacy``. Forward passes never synchronise
with the host, and every rule compiles with ``torch.compile(fullgraph=True)``
and exports with ``torch.export`` and the dynamo ONNX exporter.

Compiling: every rule shares ``FusionModule.forward``, so dynamo counts each
compiled rule x train/eval x call-option combination against that one code
object's ``torch._dynamo.config.recompile_limit`` (8 by default); raise it when a
process compiles more. A ``generator`` given at build time cannot be traced: a
compiled training call without injected ``noise`` needs ``generator=None`` (the
global generator).
"""

from __future__ import annotations

import os
import pickle
import re
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import torch

from fusion_spec.spec import (
    RULES,
    ConcatMlpSpec,
    CrossAttentionSpec,
    EnergyAwareAdaptiveSpec,
    FilmSpec,
    GatedSpec,
    InputError,
    ModalityDropoutSpec,
    ShomrSpec,
    SimpleSpec,
    TransformerConcatSpec,
    WeightsError,
    check_flag,
    describe,
    from_legacy,
    parse,
)
from fusion_spec.spec._errors import did_you_mean
from fusion_spec.spec._weights import file_kind

from ._layers import FusionModule
from .concat_mlp import ConcatMlpFusion
from .cross_attention import CrossAttentionFusion
from .energy_aware_adaptive import EnergyAwareAdaptiveFusion
from .film import FilmFusion
from .gated import GatedFusion
from .modality_dropout import ModalityDropoutFusion
from .shomr import ShomrFusion
from .simple import SimpleFusion
from .transformer_concat import TransformerConcatFusion

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fusion_spec.spec._fields import (
        ConcatMlpFields,
        CrossAttentionFields,
        EnergyAwareAdaptiveFields,
        FilmFields,
        GatedFields,
        ModalityDropoutFields,
        ShomrFields,
        SimpleFields,
        TransformerConcatFields,
    )

#: kind -> module class.
MODULES: dict[str, type[FusionModule]] = {
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


# The module class follows the rule where a type checker can tell it: a kind given as a
# literal string, or a spec of that rule's class; anything else is some FusionModule.
@overload
def build(
    s: Literal["simple"] | SimpleSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[SimpleFields],
) -> SimpleFusion: ...
@overload
def build(
    s: Literal["concat_mlp"] | ConcatMlpSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[ConcatMlpFields],
) -> ConcatMlpFusion: ...
@overload
def build(
    s: Literal["gated"] | GatedSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[GatedFields],
) -> GatedFusion: ...
@overload
def build(
    s: Literal["film"] | FilmSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[FilmFields],
) -> FilmFusion: ...
@overload
def build(
    s: Literal["modality_dropout"] | ModalityDropoutSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[ModalityDropoutFields],
) -> ModalityDropoutFusion: ...
@overload
def build(
    s: Literal["transformer_concat"] | TransformerConcatSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[TransformerConcatFields],
) -> TransformerConcatFusion: ...
@overload
def build(
    s: Literal["cross_attention"] | CrossAttentionSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[CrossAttentionFields],
) -> CrossAttentionFusion: ...
@overload
def build(
    s: Literal["shomr"] | ShomrSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[ShomrFields],
) -> ShomrFusion: ...
@overload
def build(
    s: Literal["energy_aware_adaptive"] | EnergyAwareAdaptiveSpec,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Unpack[EnergyAwareAdaptiveFields],
) -> EnergyAwareAdaptiveFusion: ...
@overload
def build(
    s: Any,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Any,
) -> FusionModule: ...
def build(
    s: Any,
    params: Mapping[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    dispatch: str | None = None,
    skip_unrouted: bool = False,
    **fields: Any,
) -> FusionModule:
    """The module of rule ``s`` (a spec or anything ``spec.parse`` accepts), in float32.

    ``build("gated", dim=64)``: ``s`` and ``fields`` go to ``spec.parse(s, **fields)``.

    With ``params`` (canonical names and shapes, NumPy arrays or tensors, e.g.
    from ``spec.init_params``, ``spec.load_weights`` or ``spec.from_legacy``) the
    weights are loaded from them (``spec.WeightsError`` on a mismatch);
    otherwise ``reset_parameters()`` draws them from the spec's distributions with
    ``generator``. ``generator`` also drives the stochastic decisions of calls
    without injected ``noise``.

    ``dispatch`` (``shomr`` and ``energy_aware_adaptive`` only; the module
    attribute of that name can be flipped later): ``"auto"`` (default) runs each
    routed path only on the samples that take it where that is cheaper and
    allowed (eager, on the CPU), and computes the paths for every sample with
    static shapes while compiling, exporting or capturing a CUDA graph and on
    CUDA; ``"dense"`` and ``"sparse"`` force one (``_layers.DISPATCHES``).
    ``skip_unrouted=True`` is the older spelling of ``dispatch="sparse"``.
    ``benchmarks/bench.py`` measures both.
    """
    s = parse(s, **fields)
    cls = MODULES[s.kind]
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(
            f"{s.kind}: argument 'generator' expected None or a torch.Generator; "
            f"received {describe(generator)}"
        )
    check_flag(s.kind, "skip_unrouted", skip_unrouted)
    if skip_unrouted:
        dispatch = "sparse"
    if dispatch is None:
        module = cls(s, generator=generator)
    elif cls.routes:
        module = cls(s, generator=generator, dispatch=dispatch)
    else:
        routed = [k for k, c in MODULES.items() if c.routes]
        argument = "skip_unrouted" if skip_unrouted else "dispatch"
        received = "True" if skip_unrouted else repr(dispatch)
        raise InputError(
            f"{s.kind}: argument {argument!r} expected {'False' if skip_unrouted else None} "
            f"for a rule without routing (only {routed} route samples); received {received}"
        )
    if params is not None:
        module.load_canonical(params)
    return module


#: Top-level attributes of each original module: a bare fusion state_dict has only these.
_LEGACY_ROOTS: dict[str, tuple[str, ...]] = {
    "simple": ("fusion.layers.",),
    "concat_mlp": ("mlp.",),
    "gated": ("gate.",),
    "film": ("mlp_gamma.", "mlp_beta."),
    "modality_dropout": ("gated.",),
    "transformer_concat": ("transformer.", "modality_token"),
    "cross_attention": ("norm1.", "norm2.", "cross_attn.", "ffn."),
    "shomr": (
        "conf_net.",
        "router.",
        "cross_attn.",
        "gate.",
        "norm1.",
        "norm2.",
        "ffn.",
        "proj_single.",
    ),
    "energy_aware_adaptive": (
        "lambda_energy",
        "router.",
        "gate.",
        "cross_attn.",
        "norm.",
        "ffn.",
    ),
}


def _fusion_state_dict(kind: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The original fusion module's own keys, from a bare or a full-model state_dict.

    Bare: every key lies under one of the module's attributes. Otherwise the keys
    under the model's ``fusion.`` attribute, prefix removed (``simple``'s own keys
    start with ``fusion.layers.``, so a full model holding it has
    ``fusion.fusion.layers.``: bare means *every* key is the module's own).
    """
    roots = _LEGACY_ROOTS[kind]
    if state and all(isinstance(key, str) and key.startswith("module.") for key in state):
        # DistributedDataParallel / DataParallel wrap the model as "module."
        state = {k[len("module.") :]: v for k, v in state.items()}
    if state and all(isinstance(key, str) and key.startswith(roots) for key in state):
        return dict(state)
    inner = {
        k[len("fusion.") :]: v
        for k, v in state.items()
        if isinstance(k, str) and k.startswith("fusion.")
    }
    if inner and all(key.startswith(roots) for key in inner):
        return inner
    raise WeightsError(
        f"load_legacy_checkpoint: expected the state_dict of an original {kind!r} module "
        f"(keys under {list(roots)}) or of a model holding one as 'fusion.'; "
        f"received keys {sorted(map(str, state))[:20]}{' ...' if len(state) > 20 else ''}"
    )


def _read_checkpoint(path: str) -> Any:
    """``torch.load(path, weights_only=True)``: every failure a ``WeightsError`` naming the path.

    ``weights_only=True`` unpickles tensors and plain containers only: a file that
    needs anything else (a class, a function: code to run) is refused unread.
    """
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such checkpoint file")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # before opening it: a FIFO would block
        raise WeightsError(f"{path}: expected a checkpoint file; received {file_kind(mode)}")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"{path}: not a torch.save checkpoint (the file is empty)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported (global|operand)[^\n]*", str(e))
        detail = found.group(0).strip() if found else (str(e).strip().splitlines() or [""])[0]
        raise WeightsError(
            f"{path}: refused: not a checkpoint of tensors and plain containers only (the "
            f"weights-only unpickler stopped at: {detail}); nothing in it was run"
        ) from e
    except Exception as e:  # truncated zip, random bytes, an old format gone wrong
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WeightsError(
            f"{path}: not a readable torch.save checkpoint ({type(e).__name__}: {first})"
        ) from e


def load_legacy_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    kind: str,
    *,
    generator: torch.Generator | None = None,
    **init_kwargs: Any,
) -> FusionModule:
    """The module of ``kind`` holding the weights of an original-code checkpoint.

    ``path_or_state_dict``: a file written by ``torch.save`` (read with
    ``torch.load(..., map_location="cpu", weights_only=True)``: no pickled code
    runs) or the loaded mapping: the fusion module's bare ``state_dict``, a full
    model's (fusion keys under ``fusion.``), either saved from a
    ``DistributedDataParallel``/``DataParallel`` wrapper (every key under
    ``module.``), or a dict holding one of these under ``"state_dict"`` or ``"model"``. ``init_kwargs`` are the original
    constructor's arguments the weights cannot tell (``heads``, ``dropout``, ...)
    and any spec field; ``dim``, ``layers`` and ``hidden_mult`` are inferred.
    Conversion is ``spec.from_legacy``; raises ``spec.WeightsError`` on a mismatch.
    """
    if not isinstance(kind, str) or kind not in RULES:
        raise InputError(
            f"load_legacy_checkpoint: argument 'kind' expected one of {list(RULES)}; "
            f"received {kind!r}{did_you_mean(kind, RULES)}"
        )
    state = path_or_state_dict
    where = "load_legacy_checkpoint"
    if isinstance(state, (str, os.PathLike)):
        where = os.fspath(state)
        state = _read_checkpoint(where)
    if not isinstance(state, Mapping):
        raise WeightsError(
            f"{where}: expected a state_dict mapping; received {describe(state)}"
        )
    for entry in ("state_dict", "model"):
        if isinstance(state.get(entry), Mapping):
            state = state[entry]
            break
    s, params = from_legacy(kind, _fusion_state_dict(kind, state), **init_kwargs)
    return build(s, params, generator=generator)


__all__ = [
    "MODULES",
    "ConcatMlpFusion",
    "CrossAttentionFusion",
    "EnergyAwareAdaptiveFusion",
    "FilmFusion",
    "FusionModule",
    "GatedFusion",
    "ModalityDropoutFusion",
    "ShomrFusion",
    "SimpleFusion",
    "TransformerConcatFusion",
    "build",
    "load_legacy_checkpoint",
]

if not TYPE_CHECKING:  # a type checker reports a misspelt name itself

    def __getattr__(name: str):
        """A misspelt name (``GatedFuson``): the closest names and every one there is."""
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}{did_you_mean(name, __all__)}; "
            f"it has: {', '.join(sorted(__all__))}"
        )
