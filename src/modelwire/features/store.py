"""The ``FeatureStore`` contract every online store keeps (SQLite embedded, Redis at scale).

- ``write`` is last-write-wins by event time, per feature: a value is replaced only by one with a strictly
  newer event time, so a late or replayed event changes nothing; a row counts as applied when at least one
  of its values was written, else as skipped (stale). The rows of one entity are written atomically.
- ``read`` answers many (view, entity) pairs in one round trip to the store, each with every stored
  feature's value and event time. Age and ``OUTSIDE_MAX_AGE`` are decided above, by the service, from the
  event time: a store may purge expired values later, never earlier than the view's TTL.

Tests: ``tests/backends/test_feature_store_contract.py``, run over every store.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from modelwire.features.rows import EntityKey, Row
from modelwire.features.views import FeatureView

__all__ = ["FeatureStore", "Lookup", "StoredValue"]

StoredValue = tuple[Any, float]
"""A feature's value and its event time (epoch seconds)."""
Lookup = tuple[str, EntityKey]
"""A view name and an entity key."""


class FeatureStore(abc.ABC):
    """An online feature store. Built without I/O (``backends/resolve.py``); ``open()`` connects.

    A new store implements the four methods and is added to the contract test's parameters::

        class MyStore(FeatureStore):
            async def write(self, view, rows):
                ...  # per feature: replace only when the row's event time is newer
                return applied_rows
    """

    name: str = "store"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect or create what the store needs."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def write(self, view: FeatureView, rows: Sequence[Row]) -> int:
        """Write ``rows`` of ``view`` (last-write-wins by event time); return how many were applied."""

    @abc.abstractmethod
    async def read(self, lookups: Sequence[Lookup]) -> list[dict[str, StoredValue]]:
        """For each lookup, ``{feature: (value, event_ts)}`` of what is stored (``{}``: nothing)."""
