"""What each monitor measures, over one window of samples (pure functions; docs/monitoring.md).

Drift monitors need the version's reference profile (``profiles.py``) and ``min_samples`` items:

- ``prediction_drift``: PSI of the predicted-label shares against the reference's; the test is Pearson's
  chi-square goodness of fit against the reference shares (the label is categorical).
- ``input_drift``: the largest PSI of three input statistics (token count and out-of-vocabulary rate over the
  reference's decile bins, token mass over the hashed buckets); the test is the two-sample KS on the token
  count and on the out-of-vocabulary rate (both continuous), the smaller p-value reported.
- ``confidence``: the fall of the mean confidence below the reference's (``0.1``: ten points lower; negative
  when more confident); also the PSI and the KS test of the confidence distribution.

Service objectives need no reference: ``latency_p99`` (seconds, over the window's requests), ``error_ratio``
(the share of requests with an error: the request's or any item's). ``saturation`` and ``job_queue_age`` are
instantaneous, read by the service, not from a window.

Feature monitors are per feature view, from what the feature service already counts
(``modelwire_feature_reads_total``, ``modelwire_feature_age_seconds``), differenced per round:
``feature_missing_rate`` (the share of values read NOT_FOUND or OUTSIDE_MAX_AGE) and ``feature_freshness``
(the 90th percentile age of the values read, seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwire.monitoring.profiles import ReferenceProfile
from modelwire.monitoring.statistics import bin_proportions, chisquare, ks_2samp, psi

__all__ = [
    "DRIFT_MONITORS",
    "FEATURE_MONITORS",
    "FeatureRound",
    "MonitorValue",
    "drift",
    "error_ratio",
    "feature_freshness",
    "feature_missing_rate",
    "latency_p99",
]

DRIFT_MONITORS = ("prediction_drift", "input_drift", "confidence")


@dataclass(frozen=True, slots=True)
class MonitorValue:
    """A monitor's value over a window (``None``: not enough data), with its test's p-value and details."""

    value: float | None
    samples: int
    p_value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "samples": self.samples}
        if self.p_value is not None:
            out["p_value"] = self.p_value
        if self.detail:
            out["detail"] = self.detail
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _r(x: float) -> float:
    return round(float(x), 6)


Columns = Mapping[str, Any]
"""A window's selected rows by column (``windows.Ring.select``)."""


def drift(
    monitor: str, items: Columns, labels: Sequence[str], profile: ReferenceProfile | None, min_samples: int
) -> MonitorValue:
    """``prediction_drift``, ``input_drift`` or ``confidence`` over the window's ``items``."""
    total = len(items["time"])
    if profile is None:
        return MonitorValue(None, total, reason="no reference profile")
    if monitor == "input_drift":
        return _input_drift(items, profile, min_samples)
    if monitor == "prediction_drift":
        ids = items["label"][items["label"] >= 0]
        if len(ids) < min_samples:
            return MonitorValue(None, len(ids), reason=f"fewer than {min_samples} samples")
        reference: dict[str, float] = dict(profile.data["labels"])
        counted = np.bincount(ids, minlength=len(labels))
        counts = {labels[i]: int(c) for i, c in enumerate(counted) if c}
        names = sorted(set(reference) | set(counts))
        observed = [counts.get(n, 0) for n in names]
        expected = [reference.get(n, 0.0) for n in names]
        live = [c / len(ids) for c in observed]
        _, p = chisquare(observed, expected)
        shares = {n: _r(x) for n, x in zip(names, live, strict=True)}
        return MonitorValue(_r(psi(expected, live)), len(ids), _r(p), {"labels": shares})
    conf = profile.data["confidence"]
    values = items["confidence"][~np.isnan(items["confidence"])]
    if len(values) < min_samples:
        return MonitorValue(None, len(values), reason=f"fewer than {min_samples} samples")
    drop = float(conf["mean"]) - float(values.mean())
    _, p = ks_2samp(conf["quantiles"], values, n_reference=profile.n)
    share = psi(conf["proportions"], bin_proportions(values, conf["edges"]))
    return MonitorValue(_r(drop), len(values), _r(p), {"mean": _r(values.mean()), "psi": _r(share)})


def _input_drift(items: Columns, profile: ReferenceProfile, min_samples: int) -> MonitorValue:
    texts = ~np.isnan(items["length"])
    n = int(texts.sum())
    if profile.kind != "text":
        return MonitorValue(None, n, reason=f"no input statistics for {profile.kind!r} inputs")
    if n < min_samples:
        return MonitorValue(None, n, reason=f"fewer than {min_samples} samples")
    inputs = profile.data["inputs"]
    detail: dict[str, Any] = {}
    p_values = []
    for name in ("length", "oov_rate"):
        ref = inputs[name]
        values = items[name][texts]
        share = psi(ref["proportions"], bin_proportions(values, ref["edges"]))
        _, p = ks_2samp(ref["quantiles"], values, n_reference=profile.n)
        p_values.append(p)
        detail[name] = {"psi": _r(share), "p_value": _r(p), "mean": _r(values.mean())}
    mass = items["hashed"][texts].sum(axis=0, dtype=np.float64)
    total = float(mass.sum())
    hashed = psi(inputs["hashed"]["proportions"], mass / total) if total else 0.0
    detail["hashed"] = {"psi": _r(hashed)}
    value = max(detail["length"]["psi"], detail["oov_rate"]["psi"], _r(hashed))
    return MonitorValue(value, n, _r(min(p_values)), detail)


def latency_p99(requests: Columns) -> MonitorValue:
    """The 99th percentile of the requests' latency, in seconds."""
    latencies = requests["latency"]
    if not len(latencies):
        return MonitorValue(None, 0, reason="no requests in the window")
    return MonitorValue(_r(np.percentile(latencies, 99)), len(latencies))


def error_ratio(requests: Columns) -> MonitorValue:
    """The share of requests that failed, wholly or for one of their items."""
    ok = requests["ok"]
    if not len(ok):
        return MonitorValue(None, 0, reason="no requests in the window")
    return MonitorValue(_r(1.0 - float(ok.mean())), len(ok))


FEATURE_MONITORS = ("feature_freshness", "feature_missing_rate")
FRESHNESS_QUANTILE = 0.9


@dataclass(frozen=True, slots=True)
class FeatureRound:
    """What one view's reads added in one monitoring round: values read, those NOT_FOUND or
    OUTSIDE_MAX_AGE, and the new observations of ``modelwire_feature_age_seconds`` per bucket (the
    histogram's cumulative ``le`` counts, the last one ``+Inf``)."""

    time: float
    read: int
    missing: int
    age_buckets: tuple[float, ...]


def _select(
    rounds: Sequence[FeatureRound], count: int | None, seconds: float | None, now: float
) -> list[FeatureRound]:
    if seconds is not None:
        return [r for r in rounds if r.time >= now - seconds]
    chosen: list[FeatureRound] = []
    total = 0
    for r in reversed(rounds):  # the newest rounds holding at least ``count`` values (whole rounds)
        if count is not None and total >= count:
            break
        chosen.append(r)
        total += r.read
    return chosen


def feature_missing_rate(
    rounds: Sequence[FeatureRound], count: int | None, seconds: float | None, now: float
) -> MonitorValue:
    """The share of the window's feature values read that were NOT_FOUND or OUTSIDE_MAX_AGE."""
    chosen = _select(rounds, count, seconds, now)
    read = sum(r.read for r in chosen)
    if not read:
        return MonitorValue(None, 0, reason="no feature values read in the window")
    missing = sum(r.missing for r in chosen)
    return MonitorValue(_r(missing / read), read, detail={"missing": missing})


def feature_freshness(
    rounds: Sequence[FeatureRound],
    bounds: Sequence[float],
    count: int | None,
    seconds: float | None,
    now: float,
) -> MonitorValue:
    """The 90th percentile age (seconds) of the window's values read that had a value (PRESENT or
    OUTSIDE_MAX_AGE), from the age histogram's buckets with Prometheus's ``histogram_quantile``
    interpolation (so ``modelwire alerts rules --prometheus`` computes the same number)."""
    chosen = _select(rounds, count, seconds, now)
    if not chosen:
        return MonitorValue(None, 0, reason="no feature values read in the window")
    cumulative = [sum(r.age_buckets[i] for r in chosen) for i in range(len(bounds) + 1)]
    total = cumulative[-1]
    if not total:
        return MonitorValue(None, 0, reason="no stored feature values read in the window")
    rank = FRESHNESS_QUANTILE * total
    for i, upper in enumerate(bounds):
        if cumulative[i] >= rank:
            lower = bounds[i - 1] if i else 0.0
            below = cumulative[i - 1] if i else 0.0
            inside = cumulative[i] - below
            value = lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
            return MonitorValue(_r(value), int(total))
    return MonitorValue(_r(bounds[-1]), int(total), detail={"above_largest_bucket": True})
