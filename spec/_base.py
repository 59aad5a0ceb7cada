"""Shared machinery of the rule specs: the base model and the declarations.

A rule spec is a frozen pydantic model. Besides its fields it *declares*:

* ``params()``: the canonical parameters (dotted name, shape, initial
  distribution), dense weights stored ``(out, in)``;
* ``noise(batch, training=..., **options)``: the named uniform ``[0, 1)`` noise
  arrays that drive every stochastic decision in that call;
* ``aux(batch, training=..., **options)``: the auxiliary outputs;
* ``macs()``: multiply-accumulates per sample for each route.

These declarations are plain dataclasses so that code outside Python (a C++
backend, the docs generator) can read them from ``spec.describe``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from ._checks import CALL_INPUTS, ArgSpec
from ._errors import InputError, SpecError, did_you_mean

# Every numeric constant a backend needs is pinned here and exposed as a spec
# field, never inherited from a framework default (Keras LayerNormalization:
# eps 1e-3; keras.ops.gelu: tanh approximation).
LAYER_NORM_EPS = 1e-5
FFN_MULT = 4

#: Largest ``dim``: one ``(dim, dim)`` float32 matrix is already 16 GiB there. Without a
#: bound, ``dim=10**7`` failed in the allocator and ``dim=10**30`` inside ``init_params``.
MAX_DIM = 65536
#: Largest ``layers`` (encoder layers, or the MLP's linears): above the deepest published
#: Transformer stacks (GPT-3: 96, PaLM: 118). ``layers=10**9`` failed in the allocator.
MAX_LAYERS = 128
#: Largest ``hidden_mult`` (``concat_mlp``'s hidden width is ``hidden_mult * dim``): 16
#: times the usual 4. ``hidden_mult=10**9`` failed in the allocator.
MAX_HIDDEN_MULT = 64
#: Most parameters a spec may declare (``2**38``, 1 TiB in float32): the product of the
#: bounded sizes (``dim`` x ``dim`` x ``layers`` ...) can still exceed any machine. Every
#: rule's defaults at ``MAX_DIM`` stay under it (the largest, ``transformer_concat``, has
#: 2.06e11), so ``dim`` alone is bounded by ``MAX_DIM``, not by this.
MAX_PARAMS = 2**38


def _not_bool(value: Any) -> Any:
    """Refuse a bool where a count is expected (pydantic's lax mode reads ``True`` as 1)."""
    if isinstance(value, (bool, np.bool_)):
        raise PydanticCustomError("int_type", "input should be an integer, not a boolean")
    return value


#: An integer field (a size or a count): any int, never a bool.
Count = Annotated[int, BeforeValidator(_not_bool)]


@dataclass(frozen=True)
class Init:
    """Initial distribution of one canonical parameter.

    ``kind`` is ``"uniform"`` (on ``(-bound, bound)``), ``"normal"``
    (mean 0, standard deviation ``std``), ``"constant"`` (every entry ``value``, or
    entry ``i`` ``values[i]`` of a 1-D parameter when ``values`` is given).
    ``tied_to`` names another parameter whose initial value this one copies
    (the original deep-copies one encoder layer ``layers`` times).
    ``origin`` says which PyTorch initialiser of the original it reproduces.
    """

    kind: Literal["uniform", "normal", "constant"]
    bound: float = 0.0
    std: float = 0.0
    value: float = 0.0
    tied_to: str | None = None
    origin: str = ""
    values: tuple[float, ...] | None = None

    def array(self, shape: tuple[int, ...]):
        """The constant initial value of a parameter of ``shape`` (float64 NumPy array)."""
        import numpy as np

        if self.values is None:
            return np.full(shape, self.value)
        return np.array(self.values, dtype=np.float64).reshape(shape)

    def describe(self) -> str:
        if self.kind == "uniform":
            text = f"U(-{self.bound:.6g}, {self.bound:.6g})"
        elif self.kind == "normal":
            text = f"N(0, {self.std:.6g}^2)"
        elif self.values is not None:
            text = "(" + ", ".join(f"{x:.6g}" for x in self.values) + ")"
        else:
            text = f"constant {self.value:.6g}"
        if self.tied_to:
            text += f", copy of {self.tied_to}"
        return text


@dataclass(frozen=True)
class ParamSpec:
    """One canonical parameter: dotted name, shape, dtype and initialisation."""

    name: str
    shape: tuple[int, ...]
    init: Init
    trained: bool = True
    doc: str = ""
    dtype: str = "float32"


@dataclass(frozen=True)
class NoiseSpec:
    """One named noise input: uniform on ``[0, 1)``, float, of ``shape``."""

    name: str
    shape: tuple[int, ...]
    doc: str = ""


@dataclass(frozen=True)
class AuxSpec:
    """One auxiliary output.

    ``role`` tells the conformance suite how to compare it:

    * ``"value"``: a continuous tensor, compared with the float tolerance;
    * ``"decision"``: a discrete outcome (route index, 0/1 mask), compared
      exactly except where the matching ``margin`` is within the rounding bound;
    * ``"margin"``: distance of a decision's deciding quantity from its
      threshold or runner-up, produced by the reference only (backends may omit).
    """

    name: str
    shape: tuple[int, ...]
    role: Literal["value", "decision", "margin"]
    doc: str = ""
    margin: str | None = None
    dtype: str = "float"
    #: A loss term a training loop adds to its loss (``energy_loss``): its gradient is part of
    #: the contract, checked by the suite's gradient cases with ``aux_gradient``.
    differentiable: bool = False


@dataclass(frozen=True)
class Comparison:
    """One comparison the rule decides by: ``decision`` follows ``left op right``.

    Declared so that the conformance catalogue can prove it tests the comparison
    at its boundary: a case where ``left == right`` exactly, so that the strict
    and the non-strict operator give different decisions. ``op`` is the spec's
    operator (``"<"``, ``">"``; ``"first"`` for an argmax whose ties go to the
    first index).
    """

    name: str
    decision: str
    left: str
    op: Literal["<", ">", "first"]
    right: str

    def describe(self) -> str:
        if self.op == "first":
            return f"{self.decision} = {self.left}: ties go to the first index"
        return f"{self.decision} where {self.left} {self.op} {self.right} (strict)"


@dataclass(frozen=True)
class CallOption:
    """A keyword argument the rule takes at call time (``progress``, ...)."""

    name: str
    type: str
    default: Any
    doc: str


class FusionSpecBase(BaseModel):
    """Fields and declarations common to every rule."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    kind: str
    dim: Count = Field(
        gt=0,
        le=MAX_DIM,
        description="Embedding size D of the output (and of v and t unless image_dim / "
        "text_dim say otherwise).",
    )
    image_dim: Count | None = Field(
        default=None,
        gt=0,
        le=MAX_DIM,
        description=(
            "Width D_v of v (an image encoder's output: 2048 for ResNet-50, 768 for ViT-B). "
            "None, or equal to dim: v is (B, dim) and the rule reads it as it is. Otherwise "
            "a canonical projection input_proj.image (a Linear D_v -> dim) maps it to dim "
            "first."
        ),
    )
    text_dim: Count | None = Field(
        default=None,
        gt=0,
        le=MAX_DIM,
        description=(
            "Width D_t of t (a text encoder's output: 768 for BERT-base, 512 for CLIP's). "
            "None, or equal to dim: t is (B, dim) as it is. Otherwise input_proj.text "
            "(a Linear D_t -> dim) maps it to dim first."
        ),
    )
    input_norm: Literal["none", "batch"] = Field(
        default="batch",
        description=(
            "'batch' (the default): standardise v and t per feature before the rule, with "
            "the batch's statistics in training (over the samples that have the modality; "
            "gradients flow through them) and running statistics in eval, as BatchNorm "
            "without affine. Encoders trained from scratch whose outputs carry a large "
            "common offset (ReLU features, a CNN's pooled map) otherwise die in the first "
            "epochs under the rules that mix v and t in one feature space (guide 'Training "
            "end to end'). 'none' (the original's function; from_legacy sets it): each "
            "sample's output depends on that sample alone, in training as in eval."
        ),
    )
    input_norm_momentum: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description=(
            "Running statistics update m of input_norm='batch': "
            "running = (1 - m) running + m batch (PyTorch's convention; Keras's "
            "BatchNormalization momentum is 1 - m). The default weighs the last few "
            "batches: encoders trained from scratch move their outputs' scale faster than "
            "BatchNorm's usual m = 0.1 follows, and eval, which reads the running "
            "statistics, then swings from epoch to epoch (guide 'Training end to end')."
        ),
    )
    input_norm_eps: float = Field(
        default=1e-5, gt=0.0, le=1.0, description="epsilon of input_norm='batch': (x - mu) / sqrt(var + eps)."
    )
    input_norm_absent: Literal["zero", "mean"] = Field(
        default="zero",
        description=(
            "Where input_norm='batch' puts an absent modality's row (a presence mask's "
            "False, or a sequence of padding only). 'zero' (the default): normalised as "
            "the zero row it is, (0 - mu) / sqrt(var + eps) with the statistics of the "
            "call (those of the present rows), away from the present rows' centre, as a "
            "model trained without the mask sees an empty input. 'mean': at the present "
            "rows' mean, 0 after the norm (files written before this field): a rule that "
            "reads the absent row (missing_modality 'zero_fill') trained with the mask "
            "then lost accuracy on complete samples (guide 'Training end to end'). Rules "
            "that never read it (a key mask, a route, a drop) compute the same under both."
        ),
    )

    @model_validator(mode="after")
    def _parameter_count_bounded(self):
        """At most ``MAX_PARAMS`` parameters (runs after the fields' own bounds, so the
        declarations it counts are few and small)."""
        count = self.parameter_count()
        if count > MAX_PARAMS:
            sizes = ", ".join(
                f"{name}={getattr(self, name)}"
                for name in SIZE_FIELDS
                if getattr(self, name, None) is not None
            )
            raise ValueError(
                f"{self.kind}: the parameter count expected at most {MAX_PARAMS} "
                f"(spec.MAX_PARAMS, 1 TiB of float32); received {count} with {sizes}"
            )
        return self

    #: Keyword arguments this rule accepts at call time.
    call_options: ClassVar[tuple[CallOption, ...]] = ()
    #: One-line summary for tables and reprs.
    summary: ClassVar[str] = ""
    #: Every comparison a decision of this rule follows (thresholds, gates, draws).
    comparisons: ClassVar[tuple[Comparison, ...]] = ()
    #: Fields whose effect depends on the routing mode (``use_hard_routing``): the
    #: conformance catalogue exercises them in every mode.
    routing_dependent: ClassVar[tuple[str, ...]] = ()
    #: Where training applies element-wise dropout of rate ``dropout`` (the original's
    #: ``nn.Dropout`` layers and attention dropout), in forward order; empty for rules
    #: without a ``dropout`` field.
    dropout_sites: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, **data: Any):
        """Validate ``data``; raises ``SpecError`` whose first line names the field."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            kind = type(self).model_fields["kind"].default
            raise spec_error(e, kind=kind if isinstance(kind, str) else None) from None

    def __setattr__(self, name: str, value: Any):
        raise SpecError(
            f"{self.kind}: specs are frozen; received an assignment to {name!r}: "
            f"use s.replace({name}=...) for a validated copy"
        )

    def __delattr__(self, name: str):
        raise SpecError(f"{self.kind}: specs are frozen; received a deletion of {name!r}")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated as a whole (``SpecError`` if invalid).

        The supported way to derive a spec: ``s.replace(heads=4)``. (pydantic's
        ``model_copy(update=...)`` does not validate; ``spec.parse`` re-validates
        whatever it is given, so an invalid copy is refused where it is used.)
        ``kind`` cannot change: build a new spec with ``spec.parse`` for another rule.
        """
        return type(self)(**{**self.model_dump(), **changes})
    #: Markdown (TeX math): what the rule computes for a sample missing a modality, for
    #: each value of its ``missing_modality`` field (the docs are generated from it).
    missing_semantics: ClassVar[dict[str, str]] = {}
    #: What the rule computes from token sequences ``(B, L, D)`` (docs/conventions.md,
    #: "Token sequences"): every rule but the attending ones reads the masked means.
    token_semantics: ClassVar[str] = (
        r"Each modality's masked mean over its real tokens, $\bar v_b = \sum_l w_{b,l} "
        r"v_{b,l} / \max(1, \sum_l w_{b,l})$ (likewise $\bar t$), then the vector rule on "
        r"$\bar v$, $\bar t$."
    )

    # --- declarations -----------------------------------------------------
    def params(self) -> list[ParamSpec]:
        """Every canonical parameter: the rule's own, the input projections (where a
        modality's width differs from ``dim``), then the input normalisation's state."""
        return self.rule_params() + self.input_proj_params() + self.input_norm_params()

    def width(self, modality: str) -> int:
        """The width of ``modality``'s input (``"image"``: ``v``, ``"text"``: ``t``)."""
        value = {"image": self.image_dim, "text": self.text_dim}[modality]
        return self.dim if value is None else value

    def projected(self) -> tuple[str, ...]:
        """The modalities whose input is projected to ``dim`` (width other than ``dim``)."""
        return tuple(m for m in MODALITIES if self.width(m) != self.dim)

    def input_proj_params(self) -> list[ParamSpec]:
        """``input_proj.{image,text}``: a ``Linear(width, dim)`` per projected modality.

        Initialised as ``torch.nn.Linear`` (uniform, bound ``1/sqrt(width)``); none when
        every width is ``dim``, so specs without widths keep exactly their parameters.
        """
        specs = []
        for modality in self.projected():
            specs += linear(
                f"input_proj.{modality}",
                self.width(modality),
                self.dim,
                doc=f"Projects the {modality} input (width {self.width(modality)}) to dim.",
            )
        return specs

    def rule_params(self) -> list[ParamSpec]:
        """The rule's own canonical parameters (each rule declares them)."""
        raise NotImplementedError

    def input_norm_params(self) -> list[ParamSpec]:
        """The running statistics of ``input_norm="batch"`` (state, not trained); else none.

        ``input_norm.{image,text}.running_mean`` start at 0, ``running_var`` at 1.
        ``params()`` ends with them.
        """
        if self.input_norm == "none":
            return []
        specs = []
        for modality in ("image", "text"):
            for stat, value in (("running_mean", 0.0), ("running_var", 1.0)):
                specs.append(
                    ParamSpec(
                        f"input_norm.{modality}.{stat}",
                        (self.dim,),
                        Init("constant", value=value, origin="torch.nn.BatchNorm1d buffers"),
                        trained=False,
                        doc=f"Running {stat[8:]} of the {modality} features (updated in training).",
                    )
                )
        return specs

    def inputs(self) -> tuple[ArgSpec, ...]:
        """The call's array arguments (``v``, ``t``, ...), checked by every implementation."""
        return CALL_INPUTS

    def noise(self, batch: int, *, training: bool, **options: Any) -> list[NoiseSpec]:
        """Noise arrays consumed by one call; empty for deterministic calls."""
        return []

    def aux(
        self, batch: int, *, training: bool = False, tokens: tuple[int, int] = (1, 1),
        **options: Any,
    ) -> list[AuxSpec]:
        """Auxiliary outputs returned by one call with ``return_aux=True``; ``tokens`` is the
        call's ``(L_v, L_t)`` (one each for vectors)."""
        return []

    def call_aux(
        self, batch: int, *, training: bool = False, present: bool = False,
        tokens: tuple[int, int] = (1, 1), **options: Any,
    ) -> list[AuxSpec]:
        """The aux outputs of one call: ``aux(...)``, plus ``neither`` when a ``present``
        mask or a padding mask is passed (``present=True``)."""
        declared = self.aux(batch, training=training, tokens=tokens, **options)
        if present:
            declared = declared + [
                AuxSpec(
                    "neither",
                    (batch,),
                    "decision",
                    "1 where the sample has neither modality (its output is zeros).",
                )
            ]
        return declared

    def macs(self) -> dict[str, int]:
        """Multiply-accumulates per sample, per route (weights and attention), for vector
        inputs (one token each): the rule's, plus the input projections where a width
        differs from ``dim``."""
        proj = sum(self.width(m) * self.dim for m in self.projected())
        return {route: n + proj for route, n in self.rule_macs().items()}

    def rule_macs(self) -> dict[str, int]:
        """The rule's multiply-accumulates per sample, per route (inputs of width ``dim``)."""
        raise NotImplementedError

    def stops_lone_gradient(self) -> bool:
        """Whether a sample with one modality passes no gradient back through the rule's
        input (``cross_attention``'s ``lone_gradient="stop"``); see ``stopped_input_rows``."""
        return False

    def stopped_input_rows(self, present: np.ndarray | None) -> np.ndarray | None:
        """The rows of ``v`` and ``t`` (``(B, 2)`` bool, image and text, ``present``'s
        layout: the modalities each sample has) whose sample's own output passes no
        gradient back through the rule's input (after ``input_proj`` and ``input_norm``):
        the sample trains the rule's parameters, not ``input_proj`` or its inputs. Such a
        row still gets the other samples' gradient through ``input_norm="batch"``'s
        statistics in training; elsewhere its gradient is exactly 0. ``None``: none
        (every rule but ``cross_attention`` with ``lone_gradient="stop"``)."""
        return None

    def no_output_gradient(self) -> set[str]:
        """Parameters that legitimately receive no gradient from the fused output."""
        return set()

    def has_elementwise_dropout(self) -> bool:
        """True when training applies element-wise dropout the noise contract omits."""
        return float(getattr(self, "dropout", 0.0)) > 0.0

    # --- convenience ------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.params()}

    def parameter_count(self) -> int:
        """The number of scalars in ``params()`` (trained or not), without allocating them."""
        return sum(math.prod(p.shape) for p in self.params())

    def check_call_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate call-time keyword arguments; returns them with defaults filled."""
        known = {o.name: o for o in self.call_options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            expected = ", ".join(known) or "none"
            raise InputError(
                f"{self.kind}: unexpected call option(s) {unknown}; this rule accepts: {expected}"
            )
        return {name: options.get(name, o.default) for name, o in known.items()}


# --- readable validation errors --------------------------------------------------


def _field(loc: tuple) -> str:
    """``('energy_costs_mJ', 0)`` -> ``energy_costs_mJ[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _line(err: dict, kind: str | None, kinds: tuple[str, ...]) -> str:
    loc = tuple(err.get("loc", ()))
    if loc and kind is None and loc[0] in kinds:
        kind, loc = loc[0], loc[1:]
    prefix = kind or "spec"
    kind_tags = ", ".join(repr(k) for k in kinds)
    msg = err.get("msg", "")
    kind_of_error = err.get("type")
    value = err.get("input")
    if kind_of_error == "union_tag_invalid":
        tag = err["ctx"]["tag"]
        hint = did_you_mean(tag, kinds)
        return f"spec: field 'kind' expected one of {kind_tags}; received kind={_short(tag)}{hint}"
    if kind_of_error == "union_tag_not_found":
        return f"spec: field 'kind' missing; expected one of {kind_tags}; received {_short(value)}"
    if kind_of_error in ("model_attributes_type", "model_type", "dict_type"):
        return f"spec: expected a dict, a JSON string or a spec; received {_short(value)}"
    if kind_of_error == "json_invalid":
        return f"spec: the JSON text is invalid ({err.get('ctx', {}).get('error', msg)})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        if msg.startswith(f"{prefix}: "):
            msg = msg[len(prefix) + 2 :]
    else:
        msg = msg[:1].lower() + msg[1:]
    if not loc:
        return f"{prefix}: {msg}"
    name = _field(loc)
    if kind_of_error == "extra_forbidden":
        fields = _rule_fields(kind)
        expected = f"; expected one of {', '.join(map(repr, fields))}" if fields else ""
        hint = did_you_mean(name, fields)
        return f"{prefix}: unknown field {name!r}{expected}; received {name}={_short(value)}{hint}"
    if kind_of_error == "missing":
        return f"{prefix}: field {name!r} is required and was not given"
    return f"{prefix}: field {name!r}: {msg}; received {name}={_short(value)}"


def _rule_fields(kind: str | None) -> list[str]:
    """The field names of rule ``kind`` (for an unknown field's message); empty if unknown."""
    todo = list(FusionSpecBase.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.model_fields.get("kind") is not None and cls.model_fields["kind"].default == kind:
            return [name for name in cls.model_fields if name != "kind"]
        todo += cls.__subclasses__()
    return []


def spec_error(e: ValidationError, *, kind: str | None = None, kinds: tuple[str, ...] = ()):
    """A ``SpecError`` from pydantic's error: first line field, rule and received value.

    Further lines list the other errors. ``.errors`` keeps pydantic's list with each
    ``loc`` relative to the rule (the union's tag removed). A rule class's own
    ``__init__`` raises ``SpecError``; pydantic wraps it when that class is validated
    as part of the union, so such an error is unwrapped here, not reformatted.
    """
    lines, errors = [], []
    for err in e.errors(include_url=False):
        inner = err.get("ctx", {}).get("error")
        if isinstance(inner, SpecError):
            lines += str(inner).replace("\n  also: ", "\n").splitlines()
            errors += inner.errors
            continue
        lines.append(_line(err, kind, kinds))
        loc = tuple(err.get("loc", ()))
        errors.append({**err, "loc": loc[1:] if loc and loc[0] in kinds else loc})
    text = lines[0] if lines else str(e)
    text += "".join(f"\n  also: {line}" for line in lines[1:])
    return SpecError(text, errors)


# --- declaration helpers shared by the rules ---------------------------------


def linear(name: str, fan_in: int, fan_out: int, doc: str = "") -> list[ParamSpec]:
    """``torch.nn.Linear(fan_in, fan_out)``: weight ``(out, in)``, bias ``(out,)``.

    PyTorch's default (Kaiming-uniform with ``a=sqrt(5)``) gives both weight
    and bias the bound ``1/sqrt(fan_in)``.
    """
    bound = 1.0 / math.sqrt(fan_in)
    origin = "torch.nn.Linear default (kaiming_uniform_, a=sqrt(5))"
    init = Init("uniform", bound=bound, origin=origin)
    return [
        ParamSpec(f"{name}.weight", (fan_out, fan_in), init, doc=doc),
        ParamSpec(f"{name}.bias", (fan_out,), init, doc=doc),
    ]


def layer_norm(name: str, dim: int, doc: str = "") -> list[ParamSpec]:
    """Affine LayerNorm: ``weight`` ones, ``bias`` zeros."""
    origin = "torch.nn.LayerNorm default"
    return [
        ParamSpec(f"{name}.weight", (dim,), Init("constant", value=1.0, origin=origin), doc=doc),
        ParamSpec(f"{name}.bias", (dim,), Init("constant", value=0.0, origin=origin), doc=doc),
    ]


def attention(name: str, dim: int, doc: str = "") -> list[ParamSpec]:
    """Multi-head attention with separate query/key/value/output projections.

    The original packs query, key and value into one ``in_proj_weight (3D, D)``
    initialised Xavier-uniform over the packed matrix, bound
    ``sqrt(6 / (D + 3D))``; each of our three blocks keeps that bound. The
    projection biases start at zero; the output weight is a ``Linear(D, D)``.

    The key bias never changes the output: it adds ``q . b_key`` to every score
    of a query, and softmax ignores a shift shared by all keys. Its gradient is
    zero up to rounding; it is kept for checkpoint compatibility.
    """
    xavier = Init(
        "uniform",
        bound=math.sqrt(6.0 / (dim + 3 * dim)),
        origin="torch.nn.MultiheadAttention: xavier_uniform_ over the packed (3D, D) in_proj_weight",
    )
    zero = Init("constant", value=0.0, origin="torch.nn.MultiheadAttention: constant_(0)")
    out = Init(
        "uniform",
        bound=1.0 / math.sqrt(dim),
        origin="torch.nn.MultiheadAttention.out_proj: torch.nn.Linear default",
    )
    specs = []
    for proj in ("query", "key", "value"):
        specs.append(ParamSpec(f"{name}.{proj}.weight", (dim, dim), xavier, doc=doc))
        specs.append(ParamSpec(f"{name}.{proj}.bias", (dim,), zero, doc=doc))
    specs.append(ParamSpec(f"{name}.output.weight", (dim, dim), out, doc=doc))
    specs.append(ParamSpec(f"{name}.output.bias", (dim,), zero, doc=doc))
    return specs


def feed_forward(name: str, dim: int, hidden: int, doc: str = "") -> list[ParamSpec]:
    """Two linears ``up: D -> hidden`` and ``down: hidden -> D``."""
    return linear(f"{name}.up", dim, hidden, doc) + linear(f"{name}.down", hidden, dim, doc)


def tie(specs: list[ParamSpec], source_prefix: str, prefix: str) -> list[ParamSpec]:
    """Declare ``specs`` (named under ``prefix``) as initial copies of ``source_prefix``."""
    tied = []
    for p in specs:
        source = source_prefix + p.name[len(prefix) :]
        init = Init(
            p.init.kind,
            bound=p.init.bound,
            std=p.init.std,
            value=p.init.value,
            tied_to=source,
            origin="torch.nn.TransformerEncoder deep-copies its first layer",
        )
        tied.append(ParamSpec(p.name, p.shape, init, p.trained, p.doc, p.dtype))
    return tied


# --- cost helpers (multiply-accumulates per sample) ---------------------------


def linear_macs(fan_in: int, fan_out: int, tokens: int = 1) -> int:
    return tokens * fan_in * fan_out


def attention_macs(dim: int, queries: int, keys: int) -> int:
    """Projections, scores ``Q K^T`` and the weighted sum ``A V``."""
    projections = queries * dim * dim + 2 * keys * dim * dim + queries * dim * dim
    return projections + 2 * queries * keys * dim


def encoder_layer_macs(dim: int, tokens: int, ffn_mult: int) -> int:
    ffn = linear_macs(dim, ffn_mult * dim, tokens) + linear_macs(ffn_mult * dim, dim, tokens)
    return attention_macs(dim, tokens, tokens) + ffn


# --- fields shared by the rules ----------------------------------------------


#: The integer size fields a spec may have, in the order an error lists them.
SIZE_FIELDS = ("dim", "image_dim", "text_dim", "heads", "layers", "hidden_mult")

ROUTE_NAMES = ("image", "text", "both")
#: The modalities, in the order of the call's arguments (``v``, ``t``).
MODALITIES = ("image", "text")


def router_init_bias_field():
    return Field(
        default=(0.0, 0.0, 2.0),
        description=(
            "Initial bias of the route logits (image, text, both): the router starts "
            "preferring 'both' (softmax 0.79 at bias 2), so both towers receive gradient "
            "while they learn and the router leaves 'both' where a single modality does "
            "as well. Without it, a text tower that learns first draws every sample to "
            "its route and the image tower stops learning (route collapse). None: "
            "torch.nn.Linear's default uniform bias (the original; from_legacy sets it)."
        ),
    )


def straight_through_routes_field(chosen_cost: str):
    """``straight_through_routes``: which routes the router's straight-through gradient
    compares. ``chosen_cost``: what ``"all"`` computes in training beyond ``"chosen"``."""
    return Field(
        default="all",
        description=(
            "With straight_through, the routes the router's gradient compares. 'all': add "
            "sum_j (r_j - stop_gradient(r_j)) stop_gradient(y_j) over the three routes' "
            "outputs y_j (a non-finite y_j counts as 0) to a routed sample's output, so the "
            "router's gradient is that of the mixture sum_j r_j y_j: it moves towards the "
            "route whose output the loss prefers, while the paths train only on the samples "
            f"routed to them. Training then computes {chosen_cost}. 'chosen': multiply the "
            "routed output by 1 + r_k - stop_gradient(r_k): the router only learns to scale "
            "the chosen route's output, never that another route would do better, and a "
            "router that leaves 'both' early in training may not come back. Files written "
            "before this field load as 'chosen'."
        ),
    )


def router_logits(name: str, fan_in: int, init_bias, doc: str = "") -> list[ParamSpec]:
    """``linear(name, fan_in, 3)``, its bias starting at ``init_bias`` unless ``None``."""
    specs = linear(name, fan_in, len(ROUTE_NAMES), doc)
    if init_bias is None:
        return specs
    weight, bias = specs
    init = Init("constant", values=tuple(float(b) for b in init_bias), origin="spec router_init_bias")
    return [weight, ParamSpec(bias.name, bias.shape, init, bias.trained, bias.doc, bias.dtype)]


def dropout_field():
    return Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description=(
            "Element-wise dropout rate in training (attention weights, FFN, MLP). "
            "Not part of the noise contract: the reference requires 0 in training."
        ),
    )


def missing_field(default: str, meaning: str):
    """The ``missing_modality`` field: what a sample without one modality computes."""
    return Field(
        default=default,
        description=(
            "What a sample missing a modality (call argument present, (B, 2) booleans "
            f"for image, text) computes: {meaning} A sample with neither outputs zeros."
        ),
    )


#: The presence-mask semantics every rule shares, in Markdown (rule pages lead with it).
PRESENCE_PREAMBLE = (
    "Every call takes an optional `present`, a `(B, 2)` boolean mask (image, text) "
    "per sample. Without it (or with every entry true) the output is the rule's "
    "function, bit for bit. With it, the content of an absent modality's row never "
    "matters: it is replaced by zeros before any arithmetic (a selection, not a "
    "product, so a NaN there cannot leak), and its gradient is exactly zero. Write "
    r"$\pi_v, \pi_t \in \{0, 1\}$ for a sample's mask and $\hat v = \pi_v v$, "
    r"$\hat t = \pi_t t$ (selections). A sample with neither modality outputs "
    r"$f = \mathbf{0}$ and is reported by the aux output `neither`."
)


def gelu_field():
    return Field(default="erf", description="GELU form: exact, x * Phi(x) with erf.")


class AttentionSpecBase(FusionSpecBase):
    """Fields of the rules built from attention, LayerNorm and a GELU feed-forward.

    ``layer_norm_eps``, ``gelu`` and ``ffn_mult`` admit one value each: they pin
    the constants a backend must not take from its framework's defaults.
    """

    heads: Count = Field(
        default=8,
        gt=0,
        le=MAX_DIM,
        description="Attention heads h; must divide dim. Scale 1/sqrt(dim/h).",
    )
    dropout: float = dropout_field()
    layer_norm_eps: Literal[1e-05] = Field(default=1e-05, description="LayerNorm epsilon.")
    gelu: Literal["erf"] = gelu_field()
    ffn_mult: Literal[4] = Field(default=4, description="Feed-forward width is ffn_mult * dim.")

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        """heads must divide dim (each head attends over dim / heads features)."""
        if self.dim % self.heads:
            raise ValueError(
                f"{self.kind}: heads must divide dim; received heads={self.heads} with "
                f"dim={self.dim} (dim % heads = {self.dim % self.heads})"
            )
        return self
