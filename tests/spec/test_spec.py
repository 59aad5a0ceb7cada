import json

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
    assert spec.parse(s) is s


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
        "heads": 8,
        "layers": 2,
        "dropout": 0.1,
        "layer_norm_eps": 1e-05,
        "gelu": "erf",
        "ffn_mult": 4,
    }
    assert spec.parse({"kind": "transformer_concat", "dim": 8}).layers == 4
    c = spec.parse({"kind": "concat_mlp", "dim": 8})
    assert (c.hidden_mult, c.layers, c.dropout) == (2, 2, 0.1)
    m = spec.parse({"kind": "modality_dropout", "dim": 8})
    assert (m.p_img, m.p_txt, m.drop_granularity) == (0.3, 0.3, "batch")
    h = spec.parse({"kind": "shomr", "dim": 8})
    assert (h.confidence_threshold, h.routing_temperature, h.fallback) == (0.6, 1.0, True)
    e = spec.parse({"kind": "energy_aware_adaptive"})
    assert (e.dim, e.heads, e.energy_budget_mJ, e.energy_costs_mJ) == (512, 8, 8.0, (3.2, 4.1, 9.8))
    assert (e.eval_routing, e.energy_weight, e.straight_through) == ("argmax", 0.01, False)


def test_frozen_and_extra_forbidden():
    s = make_spec("gated")
    with pytest.raises(pydantic.ValidationError):
        s.dim = 3
    with pytest.raises(pydantic.ValidationError, match="bogus"):
        spec.parse({"kind": "gated", "dim": 4, "bogus": 1})


@pytest.mark.parametrize(
    "obj, words",
    [
        ({"kind": "simple", "dim": 10, "heads": 4}, ["heads", "heads=4", "dim=10"]),
        ({"kind": "gated", "dim": 0}, ["dim", "greater than 0", "input_value=0"]),
        ({"kind": "modality_dropout", "dim": 4, "p_img": 1.5}, ["p_img", "1.5"]),
        (
            {"kind": "shomr", "dim": 4, "heads": 2, "routing_temperature": 0},
            ["routing_temperature"],
        ),
        ({"kind": "concat_mlp", "dim": 4, "layers": 0}, ["layers", "input_value=0"]),
        ({"kind": "cross_attention", "dim": 4, "heads": 2, "dropout": 1.0}, ["dropout", "1.0"]),
        (
            {"kind": "simple", "dim": 4, "heads": 2, "layer_norm_eps": 1e-3},
            ["layer_norm_eps", "0.001"],
        ),
        ({"kind": "simple", "dim": 4, "heads": 2, "gelu": "tanh"}, ["gelu", "tanh"]),
        (
            {"kind": "energy_aware_adaptive", "energy_costs_mJ": [1, -2, 3]},
            ["energy_costs_mJ", "-2"],
        ),
        ({"kind": "fancy", "dim": 4}, ["fancy", "simple"]),
    ],
)
def test_validation_errors_name_field_and_value(obj, words):
    with pytest.raises(pydantic.ValidationError) as info:
        spec.parse(obj)
    text = str(info.value)
    for word in words:
        assert word in text, (word, text)


def test_schema_file_is_up_to_date():
    assert spec.SCHEMA_PATH.read_text() == spec.render_schema(), (
        "spec/schema.json is stale: run `python -m fusion_spec.spec schema`"
    )


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
    with pytest.raises(TypeError, match="shomr: unexpected call option.*progress"):
        h.check_call_options({"progress": 0.1})
    with pytest.raises(
        TypeError, match="use_hard_routing expected None, True or False; received 'yes'"
    ):
        h.check_call_options({"use_hard_routing": "yes"})
    e = make_spec("energy_aware_adaptive")
    with pytest.raises(
        ValueError, match=r"progress expected None or a float in \[0, 1\]; received 1.5"
    ):
        e.check_call_options({"progress": 1.5})
    with pytest.raises(TypeError, match="gated: unexpected call option.*accepts: none"):
        make_spec("gated").check_call_options({"progress": 0.1})


def test_output_drop_probability():
    e = make_spec("energy_aware_adaptive")
    assert e.output_drop_probability(0.0) == pytest.approx(0.1)
    assert e.output_drop_probability(0.5) == pytest.approx(0.25)
    assert e.output_drop_probability(1.0) == pytest.approx(0.4)
    assert np.isclose(
        spec.parse(
            {"kind": "energy_aware_adaptive", "output_drop_max": 0.2}
        ).output_drop_probability(1.0),
        0.2,
    )
