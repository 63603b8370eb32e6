"""Sliding windows of what the monitors saw, per model version: count-based (the last N) and time-based
(the last N seconds). Pure data structures, fed by the monitor task (never by a request)."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ItemSample", "RequestSample", "Window"]


@dataclass(frozen=True, slots=True)
class RequestSample:
    """One request: when it ended, how long it took, whether everything in it succeeded."""

    time: float
    latency_s: float
    ok: bool


@dataclass(frozen=True, slots=True)
class ItemSample:
    """One predicted item: its input statistics (text models) and what the model answered."""

    time: float
    label: str | None
    confidence: float | None
    length: float | None = None
    oov_rate: float | None = None
    hashed: np.ndarray[Any, Any] | None = None


class Window:
    """The newest ``limit`` requests and items of one model version."""

    def __init__(self, limit: int) -> None:
        self.requests: collections.deque[RequestSample] = collections.deque(maxlen=limit)
        self.items: collections.deque[ItemSample] = collections.deque(maxlen=limit)

    def add_request(self, sample: RequestSample) -> None:
        self.requests.append(sample)

    def add_item(self, sample: ItemSample) -> None:
        self.items.append(sample)

    def select_requests(self, count: int | None, seconds: float | None, now: float) -> list[RequestSample]:
        return _select(self.requests, count, seconds, now)

    def select_items(self, count: int | None, seconds: float | None, now: float) -> list[ItemSample]:
        return _select(self.items, count, seconds, now)


def _select(
    samples: collections.deque[Any], count: int | None, seconds: float | None, now: float
) -> list[Any]:
    """The last ``count`` samples, or those of the last ``seconds`` (oldest first)."""
    if count is not None:
        picked = list(itertools.islice(reversed(samples), count))
    else:
        since = now - (seconds or 0.0)
        picked = list(itertools.takewhile(lambda s: s.time >= since, reversed(samples)))
    picked.reverse()
    return picked
