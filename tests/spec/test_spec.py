import json
import re

import numpy as np
import pydantic
import pytest

from fusion_spec import spec
from tests.conftest import make_spec

KINDS = list(spec.RULES)


def test_nine_rules_in_mission_order():
    assert KINDS == [
        "simple",
        "concat_mlp",
        "gated",
        "film",
        "modality_dropout",
        "transformer_concat",
        "cross_attention",
        "shomr",
        "energy_aware_adaptive",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip(kind):
    s = make_spec(kind)
    assert spec.parse(s.model_dump_json()) == s
    assert spec.parse(json.loads(s.model_dump_json())) == s
    again = spec.parse(s)  # a spec instance is validated again, not passed through
    assert again == s and again is not s


def test_options_round_trip():
    for s in [
        make_spec("modality_dropout", drop_granularity="sample", p_img=0.0, p_txt=1.0),
        make_spec(
            "energy_aware_adaptive",
            eval_routing="sample",
            straight_through=True,
            energy_weight_trainable=True,
            energy_costs_mJ=(1.0, 2.0, 3.0),
        ),
        make_spec("shomr", fallback=False, routing_temperature=0.5, straight_through=True),
        make_spec("transformer_concat", modality_embeddings=False, layers=1),
        make_spec("concat_mlp", layers=3, hidden_mult=3),
    ]:
        assert spec.parse(s.model_dump_json()) == s


def test_defaults_follow_the_original_constructors():
    assert spec.parse({"kind": "simple", "dim": 8}).model_dump() == {
        "kind": "simple",
        "dim": 8,
        "image_dim": None,  # v and t as wide as dim: no input projections
        "text_dim": None,
        "input_norm": "batch",  # training default (issue 20); the original: "none"
        "input_norm_momentum": 0.5,  # issue 20: 0.1 lags encoders trained from scratch
        "input_norm_eps": 1e-05,
        "input_norm_absent": "zero",  # issue 20: at the mean, zero_fill rules lose with a mask
        "heads": 8,
        "layers": 2,
        "dropout": 0.1,
        "layer_norm_eps": 1e-05,
        "gelu": "erf",
        "ffn_mult": 4,
        "missing_modality": "zero_fill",
    }
    assert spec.parse({"kind": "transformer_concat", "dim": 8}).layers == 4
    c = spec.parse({"kind": "concat_mlp", "dim": 8})
    assert (c.hidden_mult, c.layers, c.dropout) == (2, 2, 0.1)
    m = spec.parse({"kind": "modality_dropout", "dim": 8})
    assert (m.p_img, m.p_txt, m.drop_granularity) == (0.3, 0.3, "batch")
    h = spec.parse({"kind": "shomr", "dim": 8})
    assert (h.confidence_threshold, h.routing_temperature, h.fallback) == (0.6, 1.0, True)
    assert h.straight_through is True  # training default; the original: False
    e = spec.parse({"kind": "energy_aware_adaptive", "dim": 8})
    assert (e.heads, e.energy_budget_mJ, e.energy_costs_mJ) == (8, 8.0, (3.2, 4.1, 9.8))
    assert (e.eval_routing, e.energy_weight, e.straight_through) == ("argmax", 1.0, True)
    assert e.straight_through_routes == "all"  # the router compares every route
    tc = spec.parse({"kind": "transformer_concat", "dim": 8})
    assert (tc.modality_embeddings, tc.modality_embedding_std) == (True, 0.02)


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_every_rule_requires_dim(kind):
    message = rf"{kind}: field 'dim' is required and was not given"
    with pytest.raises(spec.SpecError, match=message):
        spec.parse({"kind": kind})
    with pytest.raises(spec.SpecError, match=message):
        spec.parse(kind)


def test_parse_kind_and_fields():
    assert spec.parse("gated", dim=64) == spec.parse({"kind": "gated", "dim": 64})
    s = spec.parse("shomr", dim=8, heads=2, straight_through=False)
    assert (s.dim, s.heads, s.straight_through) == (8, 2, False)
    # fields override a dict, a JSON object and a spec, and are validated again
    assert spec.parse({"kind": "gated", "dim": 4}, dim=6).dim == 6
    assert spec.parse('{"kind": "gated", "dim": 4}', dim=6).dim == 6
    assert spec.parse(s, dim=16).dim == 16 and s.dim == 8
    with pytest.raises(spec.SpecError, match="heads"):
        spec.parse(s, heads=3)
    with pytest.raises(spec.SpecError, match=r"expected a kind \(one of \['simple'.*received the string 'gatd'"):
        spec.parse("gatd", dim=4)
    with pytest.raises(spec.SpecError, match=r"fields \['dim'\] need a kind, a dict or a spec"):
        spec.parse(3, dim=4)


def test_parse_reads_bytes_as_utf8_and_refuses_other_bytes():
    assert spec.parse(b'{"kind": "gated", "dim": 4}') == spec.parse("gated", dim=4)
    assert spec.parse(b"gated", dim=4) == spec.parse("gated", dim=4)
    with pytest.raises(spec.SpecError) as info:
        spec.parse(b"\xff\xfe")
    assert str(info.value) == (
        "spec: parse argument 'obj' expected UTF-8 text (a kind or a JSON object); received "
        "bytes b'\\xff\\xfe' that are not UTF-8 (invalid start byte at byte 0)"
    )
    with pytest.raises(spec.SpecError, match=r"received bytes b'\{\\xff\\xfex{17}'\.\.\. that"):
        spec.parse(b"{\xff\xfe" + b"x" * 40)


def test_misspelt_kinds_and_fields_get_a_suggestion_and_the_valid_names():
    kinds = ", ".join(repr(k) for k in KINDS)
    with pytest.raises(spec.SpecError) as info:
        spec.parse({"kind": "concat-mlp", "dim": 4})
    assert str(info.value) == (
        f"spec: field 'kind' expected one of {kinds}; received kind='concat-mlp' "
        "(did you mean 'concat_mlp'?)"
    )
    with pytest.raises(spec.SpecError) as info:
        spec.parse("crossattention", dim=4)
    assert str(info.value).endswith(
        "received the string 'crossattention' (did you mean 'cross_attention'?)"
    )
    with pytest.raises(spec.SpecError) as info:
        spec.parse("gated_fusion_rule", dim=4)  # nothing close: the list alone
    assert "did you mean" not in str(info.value)
    fields = [name for name in spec.CrossAttentionSpec.model_fields if name != "kind"]
    for call in (
        lambda: spec.parse("cross_attention", dim=4, heads=2, dropuot=0.1),
        lambda: spec.CrossAttentionSpec(dim=4, heads=2, dropuot=0.1),
    ):
        with pytest.raises(spec.SpecError) as info:
            call()
        assert str(info.value) == (
            f"cross_attention: unknown field 'dropuot'; expected one of "
            f"{', '.join(map(repr, fields))}; received dropuot=0.1 (did you mean 'dropout'?)"
        )


def test_a_misspelt_name_of_the_package_gets_a_suggestion_and_the_names():
    with pytest.raises(AttributeError) as info:
        spec.GatedSpc  # noqa: B018
    assert str(info.value) == (
        "module 'fusion_spec.spec' has no attribute 'GatedSpc' (did you mean 'GatedSpec'?); "
        f"it has: {', '.join(sorted(spec.__all__))}"
    )
    assert getattr(spec, "missing", None) is None


def test_frozen_and_extra_forbidden():
    s = make_spec("gated")
    with pytest.raises(spec.SpecError, match=r"gated: specs are frozen.*s.replace\(dim=...\)"):
        s.dim = 3
    with pytest.raises(spec.SpecError, match="gated: unknown field 'bogus'; expected one of 'dim', .*'missing_modality'; received bogus=1$"):
        spec.parse({"kind": "gated", "dim": 4, "bogus": 1})


@pytest.mark.parametrize(
    "obj, first_line",
    [
        (
            {"kind": "simple", "dim": 10, "heads": 4},
            "simple: heads must divide dim; received heads=4 with dim=10 (dim % heads = 2)",
        ),
        (
            {"kind": "gated", "dim": 0},
            "gated: field 'dim': input should be greater than 0; received dim=0",
        ),
        (
            {"kind": "modality_dropout", "dim": 4, "p_img": 1.5},
            "modality_dropout: field 'p_img': input should be less than or equal to 1; "
            "received p_img=1.5",
        ),
        (
            {"kind": "shomr", "dim": 4, "heads": 2, "routing_temperature": 0},
            "shomr: field 'routing_temperature': input should be greater than or equal to "
            "0.001; received routing_temperature=0",
        ),
        (
            {"kind": "concat_mlp", "dim": 4, "layers": 0},
            "concat_mlp: field 'layers': input should be greater than 0; received layers=0",
        ),
        (
            {"kind": "cross_attention", "dim": 4, "heads": 2, "dropout": 1.0},
            "cross_attention: field 'dropout': input should be less than 1; received dropout=1.0",
        ),
        (
            {"kind": "simple", "dim": 4, "heads": 2, "layer_norm_eps": 1e-3},
            "simple: field 'layer_norm_eps': input should be 1e-05; received layer_norm_eps=0.001",
        ),
        (
            {"kind": "simple", "dim": 4, "heads": 2, "gelu": "tanh"},
            "simple: field 'gelu': input should be 'erf'; received gelu='tanh'",
        ),
        (
            {"kind": "energy_aware_adaptive", "dim": 8, "energy_costs_mJ": [1, -2, 3]},
            "energy_aware_adaptive: field 'energy_costs_mJ': every cost expected in [0, 1e6]; "
            "received energy_costs_mJ=[1, -2, 3]",
        ),
        (
            {"kind": "fancy", "dim": 4},
            "spec: field 'kind' expected one of 'simple', 'concat_mlp', 'gated', 'film', "
            "'modality_dropout', 'transformer_concat', 'cross_attention', 'shomr', "
            "'energy_aware_adaptive'; received kind='fancy'",
        ),
        (None, "spec: expected a dict, a JSON string or a spec; received None"),
        ("{", "spec: the JSON text is invalid (EOF while parsing an object at line 1 column 1)"),
        (
            {"dim": 4},
            "spec: field 'kind' missing; expected one of 'simple', 'concat_mlp', "
            "'gated', 'film', 'modality_dropout', 'transformer_concat', 'cross_attention', "
            "'shomr', 'energy_aware_adaptive'; received {'dim': 4}",
        ),
        ({"kind": "gated"}, "gated: field 'dim' is required and was not given"),
        (
            {"kind": "gated", "dim": 10**7},
            "gated: field 'dim': input should be less than or equal to 65536; received dim=10000000",
        ),
        (
            {"kind": "gated", "dim": 10**30},
            "gated: field 'dim': input should be less than or equal to 65536; "
            "received dim=1000000000000000000000000000000",
        ),
        (
            {"kind": "concat_mlp", "dim": 8, "layers": 10**9},
            "concat_mlp: field 'layers': input should be less than or equal to 128; "
            "received layers=1000000000",
        ),
        (
            {"kind": "simple", "dim": 8, "heads": 2, "layers": 129},
            "simple: field 'layers': input should be less than or equal to 128; received layers=129",
        ),
        (
            {"kind": "transformer_concat", "dim": 8, "heads": 2, "layers": 10**9},
            "transformer_concat: field 'layers': input should be less than or equal to 128; "
            "received layers=1000000000",
        ),
        (
            {"kind": "concat_mlp", "dim": 8, "hidden_mult": 10**9},
            "concat_mlp: field 'hidden_mult': input should be less than or equal to 64; "
            "received hidden_mult=1000000000",
        ),
        (
            {"kind": "cross_attention", "dim": 8, "heads": 10**9},
            "cross_attention: field 'heads': input should be less than or equal to 65536; "
            "received heads=1000000000",
        ),
        (
            {"kind": "transformer_concat", "dim": 65536, "layers": 8},
            "transformer_concat: the parameter count expected at most 274877906944 "
            "(spec.MAX_PARAMS, 1 TiB of float32); received 412324069376 with dim=65536, "
            "heads=8, layers=8",
        ),
        (
            {"kind": "concat_mlp", "dim": 65536, "hidden_mult": 64},
            "concat_mlp: the parameter count expected at most 274877906944 "
            "(spec.MAX_PARAMS, 1 TiB of float32); received 824638242816 with dim=65536, "
            "layers=2, hidden_mult=64",
        ),
        (
            {"kind": "gated", "dim": True},
            "gated: field 'dim': input should be an integer, not a boolean; received dim=True",
        ),
        (
            '{"kind": "gated", "dim": true}',
            "gated: field 'dim': input should be an integer, not a boolean; received dim=True",
        ),
        (
            {"kind": "simple", "dim": 8, "heads": True},
            "simple: field 'heads': input should be an integer, not a boolean; received heads=True",
        ),
        (
            {"kind": "concat_mlp", "dim": 8, "layers": np.True_},
            "concat_mlp: field 'layers': input should be an integer, not a boolean; "
            f"received layers={np.True_!r}",
        ),
    ],
)
def test_validation_errors_first_line_names_field_rule_and_value(obj, first_line):
    with pytest.raises(spec.SpecError) as info:
        spec.parse(obj)
    assert str(info.value).splitlines()[0] == first_line
    assert isinstance(info.value.__cause__, pydantic.ValidationError) or info.value.errors


def test_dim_bound_is_inclusive_and_counts_take_plain_and_numpy_ints():
    """The largest dim parses (its parameters are not allocated by parse); an int
    given as a NumPy integer or a JSON number is still an int."""
    assert spec.parse({"kind": "gated", "dim": 65536}).dim == 65536 == spec.MAX_DIM
    assert spec.parse({"kind": "gated", "dim": np.int64(8)}).dim == 8
    assert spec.parse('{"kind": "simple", "dim": 8, "heads": 2, "layers": 1}').layers == 1


def test_size_bounds_are_inclusive_and_defaults_at_max_dim_stay_under_the_parameter_bound():
    """``layers`` and ``hidden_mult`` at their bounds parse; every rule's defaults at
    ``MAX_DIM`` parse (so ``dim`` is bounded by ``MAX_DIM`` alone, as documented); the
    bounds are in the JSON Schema a tool outside Python reads."""
    assert (spec.MAX_LAYERS, spec.MAX_HIDDEN_MULT, spec.MAX_PARAMS) == (128, 64, 2**38)
    s = spec.parse({"kind": "concat_mlp", "dim": 8, "layers": 128, "hidden_mult": 64})
    assert (s.layers, s.hidden_mult) == (128, 64)
    assert spec.parse({"kind": "simple", "dim": 8, "heads": 8, "layers": 128}).layers == 128
    for kind in spec.RULES:
        s = spec.parse({"kind": kind, "dim": spec.MAX_DIM})
        assert s.parameter_count() <= spec.MAX_PARAMS
    assert max(spec.parse({"kind": k, "dim": spec.MAX_DIM}).parameter_count() for k in spec.RULES) == (
        spec.parse({"kind": "transformer_concat", "dim": spec.MAX_DIM}).parameter_count()
    )
    schema = spec.json_schema()
    defs = schema["$defs"]
    assert defs["ConcatMlpSpec"]["properties"]["layers"]["maximum"] == spec.MAX_LAYERS
    assert defs["ConcatMlpSpec"]["properties"]["hidden_mult"]["maximum"] == spec.MAX_HIDDEN_MULT
    assert defs["SimpleSpec"]["properties"]["layers"]["maximum"] == spec.MAX_LAYERS
    assert defs["TransformerConcatSpec"]["properties"]["layers"]["maximum"] == spec.MAX_LAYERS
    assert defs["CrossAttentionSpec"]["properties"]["heads"]["maximum"] == spec.MAX_DIM


def test_parameter_count_counts_every_declared_scalar():
    s = spec.parse({"kind": "concat_mlp", "dim": 4, "hidden_mult": 3, "layers": 2})
    # mlp.0: (12, 8) + 12; mlp.1: (4, 12) + 4; input_norm's running mean and var: 2 x 2 x 4
    assert s.parameter_count() == 12 * 8 + 12 + 4 * 12 + 4 + 2 * 2 * 4 == sum(
        a.size for a in spec.init_params(s).values()
    )


@pytest.mark.parametrize(
    "change, first_line",
    [
        ({"dim": -1}, "shomr: field 'dim': input should be greater than 0; received dim=-1"),
        (
            {"heads": 3},
            "shomr: heads must divide dim; received heads=3 with dim=8 (dim % heads = 2)",
        ),
        ({"kind": "film"}, "shomr: field 'kind': input should be 'shomr'; received kind='film'"),
        (
            {"routing_temperature": 1e-50},
            "shomr: field 'routing_temperature': input should be greater than or equal to "
            "0.001; received routing_temperature=1e-50",
        ),
        (
            {"confidence_threshold": 5.0},
            "shomr: field 'confidence_threshold': input should be less than or equal to 1; "
            "received confidence_threshold=5.0",
        ),
        (
            {"layer_norm_eps": 1e-3},
            "shomr: field 'layer_norm_eps': input should be 1e-05; received layer_norm_eps=0.001",
        ),
    ],
)
def test_edited_specs_are_validated_again(change, first_line):
    """replace() validates; a model_copy(update=...) is refused wherever it is used."""
    s = spec.parse({"kind": "shomr", "dim": 8, "heads": 2})
    with pytest.raises(spec.SpecError) as info:
        s.replace(**change)
    assert str(info.value).splitlines()[0] == first_line
    unchecked = s.model_copy(update=change)
    with pytest.raises(spec.SpecError) as info:
        spec.parse(unchecked)
    assert str(info.value).splitlines()[0] == first_line
    assert s.replace(heads=4, routing_temperature=2.0) == spec.parse(
        {"kind": "shomr", "dim": 8, "heads": 4, "routing_temperature": 2.0}
    )


@pytest.mark.parametrize(
    "obj, field",
    [
        (
            {"kind": "energy_aware_adaptive", "energy_costs_mJ": (float("nan"), 1, 1)},
            "energy_costs_mJ[0]",
        ),
        ({"kind": "energy_aware_adaptive", "energy_weight": float("inf")}, "energy_weight"),
        ({"kind": "energy_aware_adaptive", "energy_budget_mJ": float("-inf")}, "energy_budget_mJ"),
        ({"kind": "energy_aware_adaptive", "output_drop_ramp": float("nan")}, "output_drop_ramp"),
        (
            {"kind": "shomr", "dim": 4, "heads": 2, "fallback_threshold": float("nan")},
            "fallback_threshold",
        ),
        ({"kind": "modality_dropout", "dim": 4, "p_txt": float("nan")}, "p_txt"),
        ({"kind": "concat_mlp", "dim": 4, "dropout": float("nan")}, "dropout"),
    ],
)
def test_non_finite_floats_are_refused_in_every_float_field(obj, field):
    with pytest.raises(
        spec.SpecError, match=rf"field '{re.escape(field)}': input should be a finite number"
    ):
        spec.parse(obj)


def test_every_float_field_refuses_nan():
    """Every float field of every rule, found from the models, refuses NaN."""
    for kind, cls in spec.RULES.items():
        base = make_spec(kind).model_dump()
        for name, info in cls.model_fields.items():
            if "float" not in str(info.annotation):
                continue
            value = (float("nan"),) * 3 if "tuple" in str(info.annotation) else float("nan")
            with pytest.raises(spec.SpecError, match="finite number"):
                spec.parse({**base, name: value})


_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


def _meaningful(node):
    """A JSON Schema without the ``type`` that only restates a ``const`` or ``enum``:
    pydantic writes it from 2.6 or so, 2.5 (the declared floor) does not; the schema
    accepts the same documents either way."""
    if isinstance(node, list):
        return [_meaningful(x) for x in node]
    if not isinstance(node, dict):
        return node
    values = [node["const"]] if "const" in node else node.get("enum")
    kind = _JSON_TYPES.get(node.get("type"))
    redundant = values is not None and kind is not None and all(
        isinstance(v, kind) and not (isinstance(v, bool) and kind is not bool) for v in values
    )
    return {k: _meaningful(v) for k, v in node.items() if not (redundant and k == "type")}


def test_schema_file_is_up_to_date():
    """Compares what the schema says (the committed file is written by the pinned pydantic
    of requirements/ci.txt; `make test-floors` runs this at pydantic 2.5)."""
    committed = json.loads(spec.SCHEMA_PATH.read_text())
    assert _meaningful(committed) == _meaningful(json.loads(spec.render_schema())), (
        "spec/schema.json is stale: run `python -m fusion_spec.spec schema`"
    )
    assert committed != _meaningful(committed)  # the normalisation has work to do: not a no-op


def test_the_schema_comparison_sees_a_real_change():
    committed = json.loads(spec.SCHEMA_PATH.read_text())
    changed = json.loads(spec.SCHEMA_PATH.read_text().replace('"const": "erf"', '"const": "tanh"', 1))
    assert changed != committed and _meaningful(changed) != _meaningful(committed)
    retyped = json.loads(spec.SCHEMA_PATH.read_text().replace('"type": "string"', '"type": "integer"', 1))
    assert _meaningful(retyped) != _meaningful(committed)


def test_schema_covers_every_rule():
    schema = spec.json_schema()
    assert set(schema["discriminator"]["mapping"]) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_declarations(kind):
    s = make_spec(kind)
    params = s.params()
    names = [p.name for p in params]
    assert len(names) == len(set(names))
    for p in params:
        assert all(isinstance(d, int) and d > 0 for d in p.shape) or p.shape == ()
        assert p.init.describe()
    assert all(v > 0 for v in s.macs().values())
    for a in s.aux(5, training=True):
        assert a.role in ("value", "decision", "margin")
        if a.margin is not None:
            assert a.margin in {x.name for x in s.aux(5, training=True)}
    for n in s.noise(
        5, training=True, **({"progress": 0.5} if kind == "energy_aware_adaptive" else {})
    ):
        assert n.shape and all(d >= 1 for d in n.shape)
    assert s.no_output_gradient() <= set(names)


def test_weights_are_stored_out_in():
    s = spec.parse({"kind": "concat_mlp", "dim": 4, "hidden_mult": 3, "layers": 2})
    shapes = s.param_shapes()
    assert shapes["mlp.0.weight"] == (12, 8)
    assert shapes["mlp.1.weight"] == (4, 12)
    e = spec.parse({"kind": "cross_attention", "dim": 6, "heads": 2})
    assert e.param_shapes()["ffn.up.weight"] == (24, 6)
    assert {
        "attn.query.weight",
        "attn.key.weight",
        "attn.value.weight",
        "attn.output.weight",
    } <= set(e.param_shapes())


def test_noise_declarations_follow_options():
    m = make_spec("modality_dropout")
    assert [(n.name, n.shape) for n in m.noise(7, training=True)] == [
        ("drop_image", (1,)),
        ("drop_text", (1,)),
    ]
    assert m.noise(7, training=False) == []
    ms = make_spec("modality_dropout", drop_granularity="sample")
    assert [n.shape for n in ms.noise(7, training=True)] == [(7,), (7,)]
    e = make_spec("energy_aware_adaptive")
    assert e.noise(7, training=False) == []
    assert [n.name for n in e.noise(7, training=True)] == ["route"]
    assert [n.name for n in e.noise(7, training=True, progress=0.2)] == [
        "route",
        "output_drop_gate",
        "output_drop_flags",
    ]
    es = make_spec("energy_aware_adaptive", eval_routing="sample")
    assert [n.name for n in es.noise(7, training=False)] == ["route"]


def test_macs_literal():
    assert spec.parse({"kind": "gated", "dim": 4}).macs() == {"all": 32}
    assert spec.parse({"kind": "film", "dim": 4}).macs() == {"all": 32}
    # attention over 1 query and 2 keys: 4 projections-worth 1*16 + 2*2*16 + 1*16, scores+mix 2*1*2*4
    d = 4
    attn = 1 * d * d + 2 * 2 * d * d + 1 * d * d + 2 * 1 * 2 * d
    ffn = 2 * d * 4 * d
    assert spec.parse({"kind": "cross_attention", "dim": d, "heads": 2}).macs() == {
        "all": attn + ffn
    }


def test_call_options_are_checked():
    h = make_spec("shomr")
    assert h.check_call_options({}) == {"use_hard_routing": None}
    with pytest.raises(spec.InputError, match="shomr: unexpected call option.*progress"):
        h.check_call_options({"progress": 0.1})
    with pytest.raises(
        spec.InputError, match="use_hard_routing' expected None, True or False; received str 'yes'"
    ):
        h.check_call_options({"use_hard_routing": "yes"})
    with pytest.raises(spec.InputError, match=r"received ndarray of shape \(2,\) and dtype bool"):
        h.check_call_options({"use_hard_routing": np.array([True, False])})
    assert h.check_call_options({"use_hard_routing": np.bool_(True)}) == {"use_hard_routing": True}
    e = make_spec("energy_aware_adaptive")
    for bad, shown in [
        (1.5, "float 1.5"),
        (float("nan"), "float nan"),
        (True, "bool True"),
        ("0.5", "str '0.5'"),
        (np.array([0.5]), "ndarray of shape (1,)"),
    ]:
        with pytest.raises(
            spec.InputError,
            match=rf"'progress' expected None or a float in \[0, 1\]; received {re.escape(shown)}",
        ):
            e.check_call_options({"progress": bad})
    assert e.check_call_options({"progress": np.float32(0.5)}) == {"progress": 0.5}
    with pytest.raises(TypeError, match="gated: unexpected call option.*accepts: none"):
        make_spec("gated").check_call_options({"progress": 0.1})


def test_output_drop_probability():
    e = make_spec("energy_aware_adaptive")
    assert e.output_drop_probability(0.0) == pytest.approx(0.1)
    assert e.output_drop_probability(0.5) == pytest.approx(0.25)
    assert e.output_drop_probability(1.0) == pytest.approx(0.4)
    assert np.isclose(
        spec.parse(
            {"kind": "energy_aware_adaptive", "dim": 8, "output_drop_max": 0.2}
        ).output_drop_probability(1.0),
        0.2,
    )


def test_an_unknown_tolerance_dtype_is_an_input_error():
    from fusion_spec.spec.tolerance import tolerance

    with pytest.raises(spec.InputError) as info:
        tolerance("int8")
    assert str(info.value) == (
        "tolerance: argument 'dtype' expected one of ['bfloat16', 'float32', 'float64', "
        "'tensorfloat32']; received 'int8'"
    )
