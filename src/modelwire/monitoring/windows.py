"""Sliding windows of what the monitors saw, per model version: count-based (the last N) and time-based
(the last N seconds). Pure data structures, fed by the monitor task (never by a request).

Columnar ring buffers (numpy arrays) rather than an object per sample: a window of 20,000 samples is a
few arrays, not 20,000 objects for the garbage collector to walk on every collection of the old
generation (an object per sample cost the serving process ~20 µs per request in GC time, measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ItemBatch", "Ring", "Window"]

Array = np.ndarray[Any, Any]


class Ring:
    """Named columns of one length limit; ``append`` adds rows (oldest overwritten), ``select`` reads."""

    def __init__(self, limit: int, columns: dict[str, tuple[Any, tuple[int, ...]]]) -> None:
        self.limit = limit
        self.columns = {
            name: np.zeros((limit, *shape), dtype=dtype) for name, (dtype, shape) in columns.items()
        }
        self.count = 0  # rows ever appended

    def __len__(self) -> int:
        return min(self.count, self.limit)

    def append(self, rows: dict[str, Array]) -> None:
        n = len(next(iter(rows.values())))
        if n == 0:
            return
        if n > self.limit:
            rows = {k: v[-self.limit :] for k, v in rows.items()}
            self.count += n - self.limit
            n = self.limit
        where = (self.count + np.arange(n)) % self.limit
        for name, values in rows.items():
            self.columns[name][where] = values
        self.count += n

    def _order(self) -> Array:
        """Positions of the kept rows, oldest first."""
        size = len(self)
        return (self.count - size + np.arange(size)) % self.limit

    def select(self, count: int | None, seconds: float | None, now: float) -> dict[str, Array]:
        """The last ``count`` rows, or those whose ``time`` is within ``seconds`` of ``now``."""
        if count is not None:
            size = min(count, len(self))
            order = (self.count - size + np.arange(size)) % self.limit
        else:
            order = self._order()
            times = self.columns["time"][order]
            order = order[times >= now - (seconds or 0.0)]
        return {name: column[order] for name, column in self.columns.items()}


@dataclass(slots=True)
class ItemBatch:
    """Items gathered from one round of calls, appended to a window at once."""

    time: list[float]
    label: list[int]
    confidence: list[float]
    length: list[float]
    oov_rate: list[float]
    buckets: list[bytes]


class Window:
    """The newest ``limit`` requests and items of one model version, and the label names seen."""

    def __init__(self, limit: int, hash_buckets: int) -> None:
        self.requests = Ring(
            limit, {"time": (np.float64, ()), "latency": (np.float64, ()), "ok": (np.bool_, ())}
        )
        self.items = Ring(
            limit,
            {
                "time": (np.float64, ()),
                "label": (np.int32, ()),  # index into ``labels``; -1: none
                "confidence": (np.float64, ()),  # nan: none
                "length": (np.float64, ()),  # nan: not a text
                "oov_rate": (np.float64, ()),
                "hashed": (np.uint16, (hash_buckets,)),  # tokens per hashed bucket
            },
        )
        self.hash_buckets = hash_buckets
        self.labels: list[str] = []
        self._label_ids: dict[str, int] = {}

    def label_id(self, label: str | None) -> int:
        if label is None:
            return -1
        found = self._label_ids.get(label)
        if found is None:
            if len(self.labels) >= 1000:  # a model answering free text as its label: stop counting
                return -1
            found = self._label_ids[label] = len(self.labels)
            self.labels.append(label)
        return found

    def add_requests(self, times: Sequence[float], latencies: Sequence[float], oks: Sequence[bool]) -> None:
        self.requests.append(
            {
                "time": np.asarray(times),
                "latency": np.asarray(latencies),
                "ok": np.asarray(oks, dtype=np.bool_),
            }
        )

    def add_items(self, batch: ItemBatch) -> None:
        n = len(batch.time)
        if n == 0:
            return
        hashed = np.zeros((n, self.hash_buckets), dtype=np.uint16)
        sizes = np.fromiter((len(b) for b in batch.buckets), dtype=np.int64, count=n)
        if sizes.sum():
            rows = np.repeat(np.arange(n), sizes)
            cols = np.frombuffer(b"".join(batch.buckets), dtype=np.uint8)
            np.add.at(hashed, (rows, cols), 1)
        self.items.append(
            {
                "time": np.asarray(batch.time),
                "label": np.asarray(batch.label, dtype=np.int32),
                "confidence": np.asarray(batch.confidence, dtype=np.float64),
                "length": np.asarray(batch.length, dtype=np.float64),
                "oov_rate": np.asarray(batch.oov_rate, dtype=np.float64),
                "hashed": hashed,
            }
        )
