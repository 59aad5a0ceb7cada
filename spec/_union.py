"""The discriminated union of the nine rule specs, parsing and the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, overload

from pydantic import Field, TypeAdapter, ValidationError

from ._base import FusionSpecBase, spec_error
from ._errors import SpecError, did_you_mean
from .concat_mlp import ConcatMlpSpec
from .cross_attention import CrossAttentionSpec
from .energy_aware_adaptive import EnergyAwareAdaptiveSpec
from .film import FilmSpec
from .gated import GatedSpec
from .modality_dropout import ModalityDropoutSpec
from .shomr import ShomrSpec
from .simple import SimpleSpec
from .transformer_concat import TransformerConcatSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._fields import (
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

SPEC_CLASSES = (
    SimpleSpec,
    ConcatMlpSpec,
    GatedSpec,
    FilmSpec,
    ModalityDropoutSpec,
    TransformerConcatSpec,
    CrossAttentionSpec,
    ShomrSpec,
    EnergyAwareAdaptiveSpec,
)
#: kind -> spec class, in the order of the mission statement.
RULES: dict[str, type] = {cls.model_fields["kind"].default: cls for cls in SPEC_CLASSES}

#: Any rule's spec: the union of the nine spec classes (spelt out so that type checkers
#: read it: ``def f(s: spec.FusionSpec)``), discriminated by ``kind`` for pydantic.
FusionSpec = Annotated[
    Union[  # noqa: UP007
        SimpleSpec,
        ConcatMlpSpec,
        GatedSpec,
        FilmSpec,
        ModalityDropoutSpec,
        TransformerConcatSpec,
        CrossAttentionSpec,
        ShomrSpec,
        EnergyAwareAdaptiveSpec,
    ],
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter = TypeAdapter(FusionSpec)

SCHEMA_PATH = Path(__file__).with_name("schema.json")


_Spec = TypeVar("_Spec", bound=FusionSpecBase)


# The return type follows the argument where a type checker can tell it: a kind given
# as a literal string, or a spec of a known class; anything else is some rule's spec.
@overload
def parse(obj: Literal["simple"], /, **fields: Unpack[SimpleFields]) -> SimpleSpec: ...
@overload
def parse(obj: Literal["concat_mlp"], /, **fields: Unpack[ConcatMlpFields]) -> ConcatMlpSpec: ...
@overload
def parse(obj: Literal["gated"], /, **fields: Unpack[GatedFields]) -> GatedSpec: ...
@overload
def parse(obj: Literal["film"], /, **fields: Unpack[FilmFields]) -> FilmSpec: ...
@overload
def parse(obj: Literal["modality_dropout"], /, **fields: Unpack[ModalityDropoutFields]) -> ModalityDropoutSpec: ...
@overload
def parse(obj: Literal["transformer_concat"], /, **fields: Unpack[TransformerConcatFields]) -> TransformerConcatSpec: ...
@overload
def parse(obj: Literal["cross_attention"], /, **fields: Unpack[CrossAttentionFields]) -> CrossAttentionSpec: ...
@overload
def parse(obj: Literal["shomr"], /, **fields: Unpack[ShomrFields]) -> ShomrSpec: ...
@overload
def parse(obj: Literal["energy_aware_adaptive"], /, **fields: Unpack[EnergyAwareAdaptiveFields]) -> EnergyAwareAdaptiveSpec: ...
@overload
def parse(obj: _Spec, /, **fields: Any) -> _Spec: ...
@overload
def parse(obj: Any, /, **fields: Any) -> FusionSpec: ...
def parse(obj: Any, /, **fields: Any) -> FusionSpecBase:
    """Build a rule spec from a kind and fields, a dict, a JSON string or an existing spec.

    ``parse("gated", dim=64)`` is ``parse({"kind": "gated", "dim": 64})``. ``fields``
    also override the fields of a dict, a JSON object or a spec
    (``parse(s, dropout=0.0)``, as ``s.replace(dropout=0.0)``).

    A spec instance is validated again (a copy made with pydantic's
    ``model_copy(update=...)`` or ``model_construct`` skips validation), so every
    entry point that takes a spec refuses an invalid one. Raises ``SpecError``
    whose first line names the rule, the field, the rule broken and the received value
    (also for a string that is neither a kind nor a JSON object).
    """
    if isinstance(obj, FusionSpecBase):
        return obj.replace(**fields)  # validated again against its own rule
    if isinstance(obj, (str, bytes)):
        text = _text(obj)
        if text.strip().startswith("{"):
            if not fields:
                try:
                    return _ADAPTER.validate_json(text)
                except ValidationError as e:
                    raise spec_error(e, kinds=tuple(RULES)) from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError(f"spec: parse argument 'obj' is not valid JSON: {e}") from None
        elif text in RULES:
            obj = {"kind": text}
        else:
            raise SpecError(
                f"spec: parse argument 'obj' expected a kind (one of {list(RULES)}), a JSON "
                f"object, a dict or a spec; received the string {text[:80]!r}"
                f"{did_you_mean(text, RULES)}"
            )
    if fields:
        if not isinstance(obj, dict):
            raise SpecError(
                f"spec: parse fields {sorted(fields)} need a kind, a dict or a spec as the first "
                f"argument; received {type(obj).__name__}"
            )
        obj = {**obj, **fields}
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as e:
        raise spec_error(e, kinds=tuple(RULES)) from None


#: Fields added after artefacts were first stored whose default changes the function:
#: the value a stored spec without the field meant (the behaviour before the field, or
#: the field's default then: ``input_norm_momentum`` was 0.1 until 2026-12-07; an
#: absent row sat at the mean, ``input_norm_absent="mean"``, until 2026-12-07 too).
STORED_DEFAULTS: dict[str, Any] = {
    "input_norm": "none",
    "input_norm_momentum": 0.1,
    "input_norm_absent": "mean",
}
#: The same for one kind's fields: ``energy_aware_adaptive`` files written before
#: ``straight_through_routes`` trained the router with the chosen route's factor (and
#: ``shomr`` files, before it had the field on 2026-12-07);
#: ``modality_dropout`` files written before ``missing_modality="zero_fill"`` dropped
#: an absent modality; ``cross_attention`` files written before ``lone_gradient`` passed
#: a lone modality's gradient to its input (training differs, the forward pass does not).
STORED_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "energy_aware_adaptive": {"straight_through_routes": "chosen"},
    "shomr": {"straight_through_routes": "chosen"},
    "modality_dropout": {"missing_modality": "drop"},
    "cross_attention": {"lone_gradient": "pass"},
}


def parse_stored(obj: Any, /) -> FusionSpec:
    """``parse`` for a spec read back from a weight file or a saved model.

    A stored spec that lacks a field of ``STORED_DEFAULTS`` was written before the
    field existed and computes what that field's earlier behaviour computes, so it
    takes that value, not today's default: files saved before ``input_norm`` load
    as ``input_norm="none"``, with the parameters they hold (``STORED_KIND_DEFAULTS``:
    the same for one kind's fields).
    """
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError:
            return parse(obj)  # parse words the error
    if isinstance(obj, dict):
        kind = obj.get("kind")
        by_kind = STORED_KIND_DEFAULTS.get(kind, {}) if isinstance(kind, str) else {}
        obj = {**STORED_DEFAULTS, **by_kind, **obj}
    return parse(obj)


def _text(obj: str | bytes) -> str:
    """``obj`` as text: bytes are read as UTF-8 (JSON's encoding), a SpecError otherwise."""
    if isinstance(obj, str):
        return obj
    try:
        return obj.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"spec: parse argument 'obj' expected UTF-8 text (a kind or a JSON object); "
            f"received bytes {obj[:20]!r}{'...' if len(obj) > 20 else ''} that are not UTF-8 "
            f"({e.reason} at byte {e.start})"
        ) from None


def json_schema() -> dict:
    """JSON Schema of the union of all rule specs."""
    schema = _ADAPTER.json_schema()
    schema["title"] = "FusionSpec"
    schema["description"] = "A fusion rule of fusion-spec, discriminated by 'kind'."
    return schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(render_schema())
    return path
