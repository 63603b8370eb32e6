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
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwire.monitoring.profiles import ReferenceProfile
from modelwire.monitoring.statistics import bin_proportions, chisquare, ks_2samp, psi
from modelwire.monitoring.windows import ItemSample, RequestSample

__all__ = ["DRIFT_MONITORS", "MonitorValue", "drift", "error_ratio", "latency_p99"]

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


def drift(
    monitor: str, items: Sequence[ItemSample], profile: ReferenceProfile | None, min_samples: int
) -> MonitorValue:
    """``prediction_drift``, ``input_drift`` or ``confidence`` over ``items``."""
    if profile is None:
        return MonitorValue(None, len(items), reason="no reference profile")
    answered = [s for s in items if s.label is not None]
    if monitor == "input_drift":
        return _input_drift(items, profile, min_samples)
    if len(answered) < min_samples:
        return MonitorValue(None, len(answered), reason=f"fewer than {min_samples} samples")
    if monitor == "prediction_drift":
        reference: dict[str, float] = dict(profile.data["labels"])
        counts = collections.Counter(s.label for s in answered)
        names = sorted(set(reference) | {str(k) for k in counts})
        observed = [counts.get(n, 0) for n in names]
        expected = [reference.get(n, 0.0) for n in names]
        live = [c / len(answered) for c in observed]
        _, p = chisquare(observed, expected)
        shares = {n: _r(x) for n, x in zip(names, live, strict=True)}
        return MonitorValue(_r(psi(expected, live)), len(answered), _r(p), {"labels": shares})
    conf = profile.data["confidence"]
    values = np.asarray([s.confidence for s in answered if s.confidence is not None], dtype=np.float64)
    if len(values) < min_samples:
        return MonitorValue(None, len(values), reason=f"fewer than {min_samples} samples")
    drop = float(conf["mean"]) - float(values.mean())
    _, p = ks_2samp(conf["quantiles"], values, n_reference=profile.n)
    share = psi(conf["proportions"], bin_proportions(values, conf["edges"]))
    return MonitorValue(_r(drop), len(values), _r(p), {"mean": _r(values.mean()), "psi": _r(share)})


def _input_drift(items: Sequence[ItemSample], profile: ReferenceProfile, min_samples: int) -> MonitorValue:
    texts = [s for s in items if s.length is not None]
    if profile.kind != "text":
        return MonitorValue(None, len(items), reason=f"no input statistics for {profile.kind!r} inputs")
    if len(texts) < min_samples:
        return MonitorValue(None, len(texts), reason=f"fewer than {min_samples} samples")
    inputs = profile.data["inputs"]
    detail: dict[str, Any] = {}
    p_values = []
    for name in ("length", "oov_rate"):
        ref = inputs[name]
        values = np.asarray([getattr(s, name) for s in texts], dtype=np.float64)
        share = psi(ref["proportions"], bin_proportions(values, ref["edges"]))
        _, p = ks_2samp(ref["quantiles"], values, n_reference=profile.n)
        p_values.append(p)
        detail[name] = {"psi": _r(share), "p_value": _r(p), "mean": _r(values.mean())}
    mass = np.sum([s.hashed for s in texts if s.hashed is not None], axis=0)
    total = float(np.sum(mass))
    hashed = psi(inputs["hashed"]["proportions"], mass / total) if total else 0.0
    detail["hashed"] = {"psi": _r(hashed)}
    value = max(detail["length"]["psi"], detail["oov_rate"]["psi"], _r(hashed))
    return MonitorValue(value, len(texts), _r(min(p_values)), detail)


def latency_p99(requests: Sequence[RequestSample], min_samples: int = 1) -> MonitorValue:
    """The 99th percentile of the requests' latency, in seconds."""
    if len(requests) < min_samples or not requests:
        return MonitorValue(None, len(requests), reason="no requests in the window")
    latencies = np.asarray([r.latency_s for r in requests], dtype=np.float64)
    return MonitorValue(_r(np.percentile(latencies, 99)), len(requests))


def error_ratio(requests: Sequence[RequestSample], min_samples: int = 1) -> MonitorValue:
    """The share of requests that failed, wholly or for one of their items."""
    if len(requests) < min_samples or not requests:
        return MonitorValue(None, len(requests), reason="no requests in the window")
    failed = sum(1 for r in requests if not r.ok)
    return MonitorValue(_r(failed / len(requests)), len(requests))
