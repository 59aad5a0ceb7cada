"""Per-modality input widths (``image_dim``, ``text_dim``): spec, parameters, reference math."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import fusion_ref, spec
from fusion_spec.fusion_ref._layers import linear


def _fields(kind: str) -> dict:
    return {"dim": 8, **({"heads": 2} if "heads" in spec.RULES[kind].model_fields else {})}


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_widths_equal_to_dim_keep_exactly_the_parameters(kind):
    plain = spec.parse(kind, **_fields(kind))
    for widths in ({}, {"image_dim": 8}, {"text_dim": 8}, {"image_dim": 8, "text_dim": 8}):
        s = spec.parse(kind, **_fields(kind), **widths)
        assert [(p.name, p.shape) for p in s.params()] == [(p.name, p.shape) for p in plain.params()]
        assert s.projected() == ()


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_projection_parameters_and_shapes(kind):
    s = spec.parse(kind, **_fields(kind), image_dim=768, text_dim=512)
    shapes = s.param_shapes()
    assert shapes["input_proj.image.weight"] == (8, 768)
    assert shapes["input_proj.image.bias"] == (8,)
    assert shapes["input_proj.text.weight"] == (8, 512)
    bound = {p.name: p.init.bound for p in s.params() if p.name.startswith("input_proj")}
    assert bound["input_proj.image.weight"] == pytest.approx(1 / np.sqrt(768))
    assert bound["input_proj.text.bias"] == pytest.approx(1 / np.sqrt(512))
    # only the projected modality gets one
    only = spec.parse(kind, **_fields(kind), text_dim=5)
    assert [p.name for p in only.input_proj_params()] == ["input_proj.text.weight", "input_proj.text.bias"]


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_reference_projects_then_applies_the_rule(kind):
    """f_widths(v, t) == f(W_v v + b_v, W_t t + b_t) with the rule's own parameters."""
    s = spec.parse(kind, **_fields(kind), image_dim=12, text_dim=6)
    plain = spec.parse(kind, **_fields(kind))
    params = spec.init_params(s, seed=3)
    rng = np.random.default_rng(0)
    v, t = rng.standard_normal((5, 12)), rng.standard_normal((5, 6))
    out = fusion_ref.forward(s, params, v, t)
    rule = {k: a for k, a in params.items() if not k.startswith("input_proj")}
    expected = fusion_ref.forward(
        plain, rule, linear(params, "input_proj.image", v), linear(params, "input_proj.text", t)
    )
    np.testing.assert_array_equal(out, expected)  # the same float64 operations in order


def test_absent_rows_stay_zero_after_the_projection():
    """zero_fill reads the absent row: it must be 0, not the projection's bias."""
    s = spec.parse("concat_mlp", dim=8, image_dim=12, missing_modality="zero_fill")
    plain = spec.parse("concat_mlp", dim=8, missing_modality="zero_fill")
    params = spec.init_params(s, seed=1)
    rule = {k: a for k, a in params.items() if not k.startswith("input_proj")}
    rng = np.random.default_rng(1)
    v, t = rng.standard_normal((3, 12)), rng.standard_normal((3, 8))
    present = np.array([[0, 1], [1, 1], [0, 1]], dtype=bool)
    v[~present[:, 0]] = np.nan
    out = fusion_ref.forward(s, params, v, t, present)
    projected = np.where(present[:, :1], linear(params, "input_proj.image", np.nan_to_num(v)), 0.0)
    np.testing.assert_array_equal(out, fusion_ref.forward(plain, rule, projected, t, present))


def test_a_wrong_width_is_an_input_error_naming_the_expected_shape():
    s = spec.parse("gated", dim=8, image_dim=12, text_dim=6)
    params = spec.init_params(s)
    with pytest.raises(spec.InputError, match=r"argument 'v' expected shape \(B, 12\) or \(B, L_v, 12\); received shape \(2, 8\)"):
        fusion_ref.forward(s, params, np.zeros((2, 8)), np.zeros((2, 6)))
    with pytest.raises(spec.InputError, match=r"argument 't' expected shape \(B, 6\)"):
        fusion_ref.forward(s, params, np.zeros((2, 12)), np.zeros((2, 12)))


@pytest.mark.parametrize("value", [0, -3, 65537])
def test_widths_are_bounded(value):
    with pytest.raises(spec.SpecError, match="image_dim"):
        spec.parse("gated", dim=8, image_dim=value)


def test_weight_file_round_trip_with_widths(tmp_path):
    s = spec.parse("shomr", dim=8, heads=2, image_dim=12, text_dim=6)
    params = spec.init_params(s, seed=2)
    spec.save_weights(tmp_path / "w.safetensors", s, params)
    s2, loaded = spec.load_weights(tmp_path / "w.safetensors")
    assert s2 == s
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_a_stored_spec_without_widths_loads_without_projections():
    stored = spec.parse("gated", dim=8).model_dump()
    del stored["image_dim"], stored["text_dim"]
    s = spec.parse_stored(stored)
    assert s.projected() == () and s.width("image") == 8


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_macs_count_the_input_projections(kind):
    """Each projected modality adds ``D_w * D`` multiply-adds per sample to every route."""
    plain = spec.parse(kind, **_fields(kind))
    wide = spec.parse(kind, **_fields(kind), image_dim=12, text_dim=6)
    extra = (12 + 6) * plain.dim
    assert wide.macs() == {route: n + extra for route, n in plain.macs().items()}
    assert spec.parse(kind, **_fields(kind), image_dim=plain.dim).macs() == plain.macs()


def test_a_stored_spec_without_the_momentum_loads_with_the_earlier_default():
    """Files written while input_norm_momentum defaulted to 0.1 and did not name it
    keep updating their running statistics by 0.1; a stored value is kept."""
    stored = spec.parse("gated", dim=8).model_dump()
    del stored["input_norm_momentum"]
    assert spec.parse_stored(stored).input_norm_momentum == 0.1
    assert spec.parse_stored(stored).input_norm == "batch"  # the stored field is kept
    assert spec.parse_stored({**stored, "input_norm_momentum": 0.5}).input_norm_momentum == 0.5
    assert spec.parse("gated", dim=8).input_norm_momentum == 0.5  # today's default


def test_a_stored_spec_without_the_absent_fill_loads_with_the_earlier_one():
    """Files written before input_norm_absent put an absent row at the present rows'
    mean: they keep computing that; a stored value is kept."""
    stored = spec.parse("film", dim=8).model_dump()
    del stored["input_norm_absent"]
    assert spec.parse_stored(stored).input_norm_absent == "mean"
    assert spec.parse_stored({**stored, "input_norm_absent": "zero"}).input_norm_absent == "zero"
    assert spec.parse("film", dim=8).input_norm_absent == "zero"  # today's default


def test_a_stored_cross_attention_without_lone_gradient_loads_passing_it():
    """cross_attention files written before lone_gradient trained with a lone sample's
    gradient reaching its encoder: they keep "pass"; a stored value is kept."""
    stored = spec.parse("cross_attention", dim=8, heads=2).model_dump()
    del stored["lone_gradient"]
    assert spec.parse_stored(stored).lone_gradient == "pass"
    assert spec.parse_stored({**stored, "lone_gradient": "stop"}).lone_gradient == "stop"
    assert spec.parse("cross_attention", dim=8, heads=2).lone_gradient == "stop"


def test_stopped_input_rows_are_the_present_modality_of_a_lone_sample():
    present = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=bool)
    s = spec.parse("cross_attention", dim=8, heads=2)
    np.testing.assert_array_equal(
        s.stopped_input_rows(present), [[0, 0], [1, 0], [0, 1], [0, 0]]
    )
    assert s.stopped_input_rows(None) is None
    assert spec.parse("cross_attention", dim=8, heads=2, lone_gradient="pass").stopped_input_rows(present) is None
    assert spec.parse("film", dim=8).stopped_input_rows(present) is None
    with pytest.raises(spec.SpecError, match="lone_gradient"):
        spec.parse("cross_attention", dim=8, heads=2, lone_gradient="detach")
