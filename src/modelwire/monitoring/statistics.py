"""Drift statistics over numpy alone: the population stability index and two two-sample tests.

- ``psi(expected, actual)``: ``sum((a - e) * ln(a / e))`` over bins, each proportion floored at ``EPS`` so an
  empty bin counts as rare, not impossible. The conventional reading: < 0.1 stable, 0.1-0.25 a shift worth a
  look, > 0.25 a shift.
- ``ks_2samp(reference, sample)``: the two-sample Kolmogorov-Smirnov statistic (the largest gap between the
  two empirical CDFs) and its asymptotic p-value (Kolmogorov's series with Stephens' small-sample
  correction), for continuous statistics (text length, out-of-vocabulary rate, confidence).
- ``chisquare(observed, expected)``: Pearson's goodness-of-fit against the reference proportions and its
  p-value (the regularised upper incomplete gamma function), for categorical ones (the predicted label).

Why not scipy: the default install is numpy alone (docs/decisions.md); tests compare these functions with
``scipy.stats`` (installed with the ``sklearn`` extra) to 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EPS", "bin_proportions", "chi2_sf", "chisquare", "ks_2samp", "ks_pvalue", "psi", "quantile_edges"]

EPS = 1e-4
Array = np.ndarray[Any, Any]


def psi(expected: Sequence[float] | Array, actual: Sequence[float] | Array) -> float:
    """The population stability index between two proportion vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: Sequence[float] | Array, bins: int = 10) -> list[float]:
    """Inner bin edges at the quantiles of ``values`` (duplicates removed): bins of about equal mass."""
    if len(values) == 0:
        return []
    inner = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return [float(x) for x in np.unique(inner)]


def bin_proportions(values: Sequence[float] | Array, edges: Sequence[float]) -> list[float]:
    """The share of ``values`` in each of the ``len(edges) + 1`` bins (``(-inf, e0], (e0, e1], ...``)."""
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), "left"),
        minlength=len(edges) + 1,
    )
    total = counts.sum()
    return [float(c) for c in (counts / total if total else counts.astype(np.float64))]


def ks_pvalue(d: float, n: int, m: int) -> float:
    """P(D >= d) for two samples of sizes ``n`` and ``m`` under the null, asymptotically."""
    if d <= 0.0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = sign * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
        sign = -sign
    return float(min(1.0, max(0.0, 2.0 * total)))


def ks_2samp(
    reference: Sequence[float] | Array, sample: Sequence[float] | Array, *, n_reference: int | None = None
) -> tuple[float, float]:
    """``(D, p)``: the KS statistic between the two samples' empirical CDFs, and its p-value.

    ``reference`` may be quantiles of a larger reference (a profile keeps 201 of them); ``n_reference``
    is then the size of the data they summarise, used for the p-value.
    """
    a = np.sort(np.asarray(reference, dtype=np.float64))
    b = np.sort(np.asarray(sample, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        return 0.0, 1.0
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    return d, ks_pvalue(d, n_reference or len(a), len(b))


def _gamma_q(s: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(s, x) (series below s + 1, continued fraction
    above, as Numerical Recipes' ``gammq``)."""
    if x <= 0.0:
        return 1.0
    log_front = -x + s * math.log(x) - math.lgamma(s)
    if x < s + 1.0:
        term = total = 1.0 / s
        a = s
        for _ in range(1000):
            a += 1.0
            term *= x / a
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - s
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - s)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with ``df`` degrees of freedom."""
    return _gamma_q(df / 2.0, x / 2.0)


def chisquare(
    observed: Sequence[float] | Array, expected_proportions: Sequence[float] | Array
) -> tuple[float, float]:
    """``(statistic, p)`` of Pearson's test that ``observed`` counts follow ``expected_proportions``."""
    o = np.asarray(observed, dtype=np.float64)
    e = np.clip(np.asarray(expected_proportions, dtype=np.float64), EPS, None)
    n = o.sum()
    if n <= 0 or len(o) < 2:
        return 0.0, 1.0
    e = e / e.sum() * n
    stat = float(np.sum((o - e) ** 2 / e))
    return stat, chi2_sf(stat, len(o) - 1)
