"""Property-based tests of spec validation: any input gives a spec or a SpecError
whose first line names the field. Profiles: tests/hypothesis_cases.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_spec import spec
from tests.hypothesis_cases import examples, valid_specs

KINDS = list(spec.RULES)

#: Any JSON-like value, and the floats that break arithmetic.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-300, 1e300, -0.0, 5e-324]),
    st.text(max_size=6),
    st.lists(st.floats(allow_nan=True), max_size=4).map(tuple),
)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples())
@given(data=st.data())
def test_hypothesis_any_field_value_gives_a_spec_or_a_spec_error_naming_it(kind, data):
    fields = [f for f in spec.RULES[kind].model_fields if f != "kind"] + ["bogus"]
    base = data.draw(valid_specs(kind), label="base")
    field = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(VALUES, label="value")
    given_fields = {**base.model_dump(), field: value}
    try:
        s = spec.parse(given_fields)
    except spec.SpecError as e:
        first = str(e).splitlines()[0]
        assert first.startswith(f"{kind}: "), first
        named = f"'{field}" in first or (
            field in ("heads", "dim") and "heads must divide dim" in first
        )
        assert named, (field, value, first)
        with pytest.raises(spec.SpecError):
            base.replace(**{field: value})
    else:
        assert spec.parse(s.model_dump_json()) == s  # what validates round-trips
        for name in type(s).model_fields:
            x = getattr(s, name)
            if isinstance(x, float):
                assert x == x and abs(x) != float("inf"), (name, x)


@settings(max_examples=examples())
@given(obj=st.one_of(VALUES, st.dictionaries(st.text(max_size=8), VALUES, max_size=4)))
def test_hypothesis_parse_of_anything_raises_only_spec_error(obj):
    for candidate in (obj, json.dumps(obj, default=str) if not isinstance(obj, str) else obj):
        try:
            spec.parse(candidate)
        except spec.SpecError as e:
            assert str(e).splitlines()[0].split(":")[0] in ("spec", *KINDS)
