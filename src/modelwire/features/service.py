"""``FeatureService``: the features façade every wire calls (REST, gRPC, the broker ingestion, the join).

Authorization is decided here, where the action happens, for every wire: reading (``GetOnlineFeatures``,
listing views) needs ``features:read``, writing (push, a broker's events are written as the configured
consumer) ``features:write``. Freshness is decided here too, from each value's event time and its view's
TTL, the same for every store.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelwire.errors import InvalidInputError, PayloadTooLargeError
from modelwire.features.rows import EntityKey, Row, entity_key, parse_row
from modelwire.features.store import FeatureStore, Lookup
from modelwire.features.views import FeatureRef, FeatureView, FeatureViews
from modelwire.observability.metrics import Metrics
from modelwire.security.principal import Scope, current_principal

__all__ = ["FeatureService", "FeatureValue", "OnlineFeatures", "PushResult", "Status", "rfc3339"]

logger = logging.getLogger("modelwire.features")
PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE = "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"
Status = str
_EPOCH = "1970-01-01T00:00:00Z"  # Feast's event time of an absent value and of the entity columns
PUSH_CHUNK = 1000  # rows per store write while a push streams in


def rfc3339(ts: float) -> str:
    """``2026-01-02T03:04:05.123456Z``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PushResult:
    """Rows written (``applied``) and rows older than what was stored (``skipped``)."""

    applied: int = 0
    skipped: int = 0

    def __add__(self, other: PushResult) -> PushResult:
        return PushResult(self.applied + other.applied, self.skipped + other.skipped)


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One feature of one entity as read: its value (``None`` unless ``PRESENT``), status and event time."""

    value: Any
    status: Status
    event_ts: float | None


@dataclass(slots=True)
class Column:
    values: list[Any] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    event_timestamps: list[float | None] = field(default_factory=list)
    """Epoch seconds; ``None`` for the entity columns and absent values (rendered as the epoch)."""


@dataclass(slots=True)
class OnlineFeatures:
    """Feast's column-wise answer: ``feature_names`` (entity keys first), one column per name."""

    feature_names: list[str]
    results: list[Column]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadata": {"feature_names": self.feature_names},
            "results": [
                {
                    "values": c.values,
                    "statuses": c.statuses,
                    "event_timestamps": [_EPOCH if t is None else rfc3339(t) for t in c.event_timestamps],
                }
                for c in self.results
            ],
        }


class FeatureService:
    """Views, the store, freshness and scopes. Built by ``app/builder.py``; opened with the services.

    >>> service = FeatureService(FeatureViews.from_settings(settings.feature_views), store)
    >>> await service.get_online(["user_stats:avg_rating"], {"user_id": ["u1", "u2"]})
    """

    def __init__(
        self,
        views: FeatureViews,
        store: FeatureStore,
        metrics: Metrics | None = None,
        *,
        max_entities: int = 10_000,
        clock: Callable[[], float] = time.time,
        on_write: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.views = views
        self.store = store
        self.metrics = metrics
        self.max_entities = max_entities
        self.clock = clock
        self.on_write = on_write
        """Told of every write (``{"view", "applied", "skipped", "newest_event_ts"}``): the ``features``
        event topic."""
        self._newest: dict[str, float] = {}  # view -> the newest event time written by this process
        self._written: dict[str, int] = {}

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    # -- listing ------------------------------------------------------------------------------------

    def list_views(self) -> list[dict[str, Any]]:
        current_principal().require(Scope.FEATURES_READ)
        return [view.describe() for view in self.views]

    # -- writing ------------------------------------------------------------------------------------

    async def push(
        self, view_name: str, rows: Iterable[Any] | AsyncIterable[Sequence[Any]], *, where: str = "$.rows"
    ) -> PushResult:
        """Validate and write raw rows (JSON objects). A list is validated whole before anything is
        written; an async iterable of chunks (an NDJSON stream) is written chunk by chunk, so a bad row
        later in a stream leaves the rows before it written (the error names its index)."""
        current_principal().require(Scope.FEATURES_WRITE)
        view = self.views.get(view_name)
        if not isinstance(rows, AsyncIterable):
            parsed = self.parse(view, list(rows), where)
            return await self.write(view, parsed)
        total, index = PushResult(), 0
        async for chunk in rows:
            parsed = self.parse(view, chunk, where, start=index)
            index += len(chunk)
            total += await self.write(view, parsed)
        return total

    def parse(self, view: FeatureView, rows: Sequence[Any], where: str, start: int = 0) -> list[Row]:
        now = self.clock()
        return [parse_row(view, raw, now, f"{where}[{start + i}]") for i, raw in enumerate(rows)]

    async def write(self, view: FeatureView, rows: Sequence[Row]) -> PushResult:
        """Write validated rows (the ingestion's path: its consumer holds ``features:write``)."""
        if not rows:
            return PushResult()
        applied = await self.store.write(view, rows)
        result = PushResult(applied, len(rows) - applied)
        if applied:
            newest = max(row.event_ts for row in rows)
            self._newest[view.name] = max(newest, self._newest.get(view.name, newest))
            self._written[view.name] = self._written.get(view.name, 0) + applied
        if self.on_write is not None:
            event = {"view": view.name, "applied": result.applied, "skipped": result.skipped}
            event["newest_event_ts"] = self._newest.get(view.name)
            try:
                await self.on_write(event)
            except Exception:  # telling listeners never fails the write
                logger.exception("feature view %s: publishing the write failed", view.name)
        if self.metrics is not None:
            self.metrics.feature_writes.labels(view.name, "applied").inc(result.applied)
            self.metrics.feature_writes.labels(view.name, "skipped").inc(result.skipped)
        return result

    def freshness(self) -> list[dict[str, Any]]:
        """Each view's freshness as this process saw it (the dashboard's panel, the ``metrics`` topic):
        the age of the newest event it wrote (``None``: none yet), and how many rows it applied."""
        now = self.clock()
        out = []
        for view in self.views:
            newest = self._newest.get(view.name)
            age = None if newest is None else round(max(now - newest, 0.0), 3)
            out.append(
                {
                    "name": view.name,
                    "ttl_s": view.ttl_s,
                    "newest_event_age_s": age,
                    "stale": age is not None and age > view.ttl_s,
                    "applied": self._written.get(view.name, 0),
                }
            )
        return out

    # -- reading ------------------------------------------------------------------------------------

    async def get_online(
        self,
        features: Sequence[str],
        entities: Mapping[str, Sequence[Any]],
        *,
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """Feast's ``get-online-features``: the ``features`` (``view:feature``) of every entity in the
        ``entities`` columns, in one store call."""
        current_principal().require(Scope.FEATURES_READ)
        refs = self.views.resolve(features)
        if not refs:
            raise InvalidInputError("name at least one feature (view:feature)", field="features")
        if not entities:
            raise InvalidInputError("give the entity keys, e.g. {'user_id': ['u1', 'u2']}", field="entities")
        columns = {name: list(values) for name, values in entities.items()}
        sizes = {len(v) for v in columns.values()}
        if len(sizes) != 1:
            raise InvalidInputError("every entity column must have the same length", field="entities")
        n = sizes.pop()
        if n > self.max_entities:
            raise PayloadTooLargeError(f"at most {self.max_entities} entities per call", field="entities")
        rows = [{name: columns[name][i] for name in columns} for i in range(n)]
        values = await self.lookup(refs, rows, where="entities")
        names = list(columns)
        out = [Column(columns[name], [PRESENT] * n, [None] * n) for name in names]
        seen = set(names)
        for j, ref in enumerate(refs):
            name = f"{ref.view}__{ref.feature}" if full_feature_names else ref.feature
            if name in seen:
                raise InvalidInputError(
                    f"{name!r} is asked twice or clashes with an entity or another view's feature: "
                    "set full_feature_names to name columns view__feature",
                    field=f"features[{j}]",
                )
            seen.add(name)
            names.append(name)
            column = Column()
            for row in values:
                value = row[j]
                column.values.append(value.value)
                column.statuses.append(value.status)
                column.event_timestamps.append(value.event_ts)
            out.append(column)
        return OnlineFeatures(names, out)

    async def lookup(
        self, refs: Sequence[FeatureRef], rows: Sequence[Mapping[str, Any]], *, where: str = "$"
    ) -> list[list[FeatureValue]]:
        """For each row (a mapping holding entity keys), the value of each ref: one store call for all.
        The scope is the caller's to check (``get_online``; the join runs as part of a prediction)."""
        views = {ref.view: self.views.get(ref.view) for ref in refs}
        keys: list[dict[str, EntityKey]] = []
        lookups: dict[Lookup, int] = {}
        for i, row in enumerate(rows):
            by_view: dict[str, EntityKey] = {}
            for name, view in views.items():
                missing = [e for e in view.entities if e not in row]
                if missing:
                    raise InvalidInputError(
                        f"the entity key {missing[0]!r} of view {name!r} is missing",
                        field=f"{where}.{missing[0]}",
                    )
                key = entity_key([row[e] for e in view.entities], view.entities, f"{where}[{i}]")
                by_view[name] = key
                lookups.setdefault((name, key), len(lookups))
            keys.append(by_view)
        stored = await self.store.read(list(lookups))
        if self.metrics is not None:
            self.metrics.feature_store_reads.inc()
        now = self.clock()
        out: list[list[FeatureValue]] = []
        statuses: dict[tuple[str, str], int] = {}
        ages: dict[str, list[float]] = {}
        for by_view in keys:
            values = []
            for ref in refs:
                got = stored[lookups[(ref.view, by_view[ref.view])]].get(ref.feature)
                if got is None:
                    value = FeatureValue(None, NOT_FOUND, None)
                else:
                    age = now - got[1]
                    fresh = age <= views[ref.view].ttl_s
                    status = PRESENT if fresh else OUTSIDE_MAX_AGE
                    value = FeatureValue(got[0] if fresh else None, status, got[1])
                    ages.setdefault(ref.view, []).append(age)
                statuses[(ref.view, value.status)] = statuses.get((ref.view, value.status), 0) + 1
                values.append(value)
            out.append(values)
        if self.metrics is not None:  # counted once per call, not per value (the labels lookup costs ~1 µs)
            for (name, status), n in statuses.items():
                self.metrics.feature_reads.labels(name, status).inc(n)
            for name, seen in ages.items():
                histogram = self.metrics.feature_age.labels(name)
                for age in seen:
                    histogram.observe(max(age, 0.0))
        return out
