"""Comparison: tolerance, ULPs, decisions and boundary classification."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec.conformance.compare import compare_decision, compare_values, ulp_distance


def test_ulp_distance_counts_representable_steps_across_zero():
    one = np.float32(1.0)
    assert ulp_distance(np.nextafter(one, np.float32(2)), one, "float32") == 1
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    assert ulp_distance(tiny, -tiny, "float32") == 2
    assert ulp_distance(np.float64(1.0), np.nextafter(1.0, 2.0), "float64") == 1


def test_values_pass_within_tolerance_and_fail_outside():
    expected = np.array([[1.0, -2.0, 0.0]])
    assert compare_values("x", expected * (1 + 5e-5), expected, "float32").ok
    report = compare_values("x", expected * (1 + 5e-3), expected, "float32")
    assert not report.ok
    assert report.message.startswith("x: 2/3 elements outside")
    assert report.max_rel > 4e-3


def test_absolute_term_scales_with_the_tensor_magnitude():
    expected = np.array([1e3, 1e-3])
    actual = expected + np.array([0.0, 5e-3])  # 5e-3 error on a tensor of magnitude 1e3
    assert compare_values("x", actual, expected, "float32").ok
    assert not compare_values("x", actual, expected / 1e3, "float32").ok


def test_shape_missing_and_non_finite_fail():
    e = np.zeros((2, 3))
    assert (
        "expected shape (2, 3); received (3, 2)"
        in compare_values("x", np.zeros((3, 2)), e, "float32").message
    )
    assert "missing" in compare_values("x", None, e, "float32").message
    assert "non-finite" in compare_values("x", np.full((2, 3), np.nan), e, "float32").message


def test_decision_within_margin_is_boundary_not_pass_or_fail():
    expected = np.array([0, 1, 2])
    actual = np.array([0, 2, 2])
    near = compare_decision("route", actual, expected, np.array([0.5, 1e-6, 0.5]), "float32")
    assert near.ok and near.boundary.tolist() == [False, True, False]
    far = compare_decision("route", actual, expected, np.array([0.5, 0.2, 0.5]), "float32")
    assert (
        not far.ok
        and "1/3 samples differ" in far.message
        and "got [2], expected [1]" in far.message
    )


def test_exact_cases_have_no_boundary():
    d = compare_decision(
        "route", np.array([0]), np.array([1]), np.array([0.0]), "float32", exact=True
    )
    assert not d.ok and not d.boundary.any()


class _FlipsOneRoute:
    """Returns the reference's outputs with sample 2's route and output row changed."""

    name, dtype = "flips-one-route", "float32"

    def __init__(self, out, aux):
        self.out, self.aux = out, aux

    def not_applicable(self, s, *, training):
        return None

    def build(self, s, params):
        return None

    def forward(self, model, v, t, **kw):
        out, aux = self.out.copy(), {k: np.array(a) for k, a in self.aux.items()}
        aux["route"][2] = (aux["route"][2] + 1) % 3
        out[2] += 1.0
        return out, aux


@pytest.mark.parametrize(("margin", "status"), [(1e-6, "boundary"), (0.5, "fail")])
def test_forward_check_reports_boundary_samples(monkeypatch, margin, status):
    from fusion_spec.conformance import suite

    case = next(c for c in suite.all_cases() if c.name == "shomr_default")
    out, aux = suite.reference(case.name)
    assert aux["hard"][2] == 1.0, "sample 2 takes the hard path, so its route matters"
    moved = dict(aux, route_margin=aux["route_margin"].copy())
    moved["route_margin"][2] = margin
    monkeypatch.setattr(suite, "reference", lambda name: (out, moved))
    outcome = suite.check_forward(_FlipsOneRoute(out, aux), case)
    assert outcome.status == status
    if status == "boundary":
        assert outcome.message.startswith("samples [2]: a decision differs")
    else:
        assert "route: 1/6 samples differ" in outcome.message
