"""The suite's own p-values against SciPy (the suite itself does not need SciPy)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec.conformance.distribution import binom_test, chi2_sf, chi2_test

stats = pytest.importorskip("scipy.stats", reason="SciPy is the independent check of the p-values")


@pytest.mark.parametrize("df", [1, 2, 3, 7])
@pytest.mark.parametrize("x", [0.1, 1.0, 2.5, 10.0, 40.0, 120.0])
def test_chi2_sf_matches_scipy(x, df):
    assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 10, 0.3), (3, 10, 0.3), (120, 400, 0.3), (190, 400, 0.3), (2900, 4096, 0.75)],
)
def test_binom_test_matches_scipy(k, n, p):
    assert binom_test(k, n, p) == pytest.approx(stats.binomtest(k, n, p).pvalue, rel=1e-6)


def test_chi2_test_rejects_a_wrong_distribution_and_accepts_the_right_one():
    probs = [0.2, 0.3, 0.5]
    _, good = chi2_test([410, 610, 980], probs)
    _, bad = chi2_test([600, 600, 800], probs)
    assert good > 0.1 and bad < 1e-6
    assert chi2_test([1, 5, 5], [0.0, 0.5, 0.5])[1] == 0.0


def test_false_alarm_rate_of_a_correct_sampler_is_small():
    rng = np.random.default_rng(0)
    pvalues = [
        chi2_test(
            np.bincount(rng.choice(3, 4096, p=[0.2, 0.3, 0.5]), minlength=3), [0.2, 0.3, 0.5]
        )[1]
        for _ in range(200)
    ]
    assert min(pvalues) > 1e-6
    assert 0.3 < np.mean(np.array(pvalues) < 0.5) < 0.7  # p-values are uniform under the null
