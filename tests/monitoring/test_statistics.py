"""The drift statistics (numpy only) agree with scipy's, and PSI reads as documented."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modelwire.monitoring.statistics import bin_proportions, chi2_sf, chisquare, ks_2samp, psi, quantile_edges


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_ks_matches_scipy_asymptotic(seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=400), rng.normal(shift, size=150)
    d, p = ks_2samp(a, b)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, abs=0.02)  # scipy's exact-tail series differs slightly


@pytest.mark.parametrize("df", [1, 2, 5, 31])
@pytest.mark.parametrize("x", [0.01, 0.5, 3.0, 12.0, 80.0])
def test_chi2_survival_matches_scipy(df: int, x: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-6, abs=1e-12)


def test_chisquare_matches_scipy() -> None:
    observed = [30, 70]
    stat, p = chisquare(observed, [0.5, 0.5])
    expected = stats.chisquare(observed, [50, 50])
    assert stat == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)


def test_psi_is_zero_for_equal_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    edges = quantile_edges(reference)
    base = bin_proportions(reference, edges)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    small = psi(base, bin_proportions(rng.normal(0.1, size=5000), edges))
    large = psi(base, bin_proportions(rng.normal(1.0, size=5000), edges))
    assert small < 0.1 < 0.25 < large


def test_an_empty_bin_counts_as_rare_not_impossible() -> None:
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))
