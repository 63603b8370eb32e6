"""The embedded online feature store: one SQLite file in the data dir (``features.sqlite3``), WAL mode.

One connection on one dedicated thread (as ``jobs.py``), so the event loop never waits on disk. One table,
``feature_values``, keyed by (view, entity, feature) WITHOUT ROWID: a write is an upsert whose ``WHERE``
keeps the stored value unless the new event time is strictly newer (last-write-wins by event time), a
whole batch in one transaction (so atomic per entity); a read is one query joining the asked
(view, entity) pairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

from modelwire.errors import ConfigurationError, InternalError, ModelwireError, UnavailableError
from modelwire.features.rows import Row
from modelwire.features.store import FeatureStore, Lookup, StoredValue
from modelwire.features.views import FeatureView

__all__ = ["SqliteFeatureStore"]

logger = logging.getLogger("modelwire.features")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_values (
    view TEXT NOT NULL,
    entity TEXT NOT NULL,
    feature TEXT NOT NULL,
    value BLOB NOT NULL,
    event_ts REAL NOT NULL,
    PRIMARY KEY (view, entity, feature)
) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO feature_values (view, entity, feature, value, event_ts) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (view, entity, feature) DO UPDATE SET value = excluded.value, event_ts = excluded.event_ts "
    "WHERE excluded.event_ts > feature_values.event_ts"
)
_READ_CHUNK = 10_000  # pairs per query: 2 variables each, under SQLite's 32766


@contextlib.contextmanager
def _map_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except ModelwireError:
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise UnavailableError(f"the feature store {path} is busy", retry_after_s=0.5) from exc
        err = InternalError("the feature store failed")
        logger.error("SQLite error on %s [error_id=%s]: %s", path, err.error_id, exc)
        raise err from exc
    except sqlite3.Error as exc:
        err = InternalError("the feature store failed")
        logger.error("SQLite error on %s [error_id=%s]: %s", path, err.error_id, exc)
        raise err from exc


class SqliteFeatureStore(FeatureStore):
    """Feature values in ``path`` (created with its folder on ``open``)."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None or self._thread is None:
            raise UnavailableError("the feature store is not open")
        db = self._db

        def call() -> T:
            with _map_errors(self.path):
                return fn(db)

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def open(self) -> None:
        if self._db is not None:
            return
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="features-sqlite")

        def connect() -> sqlite3.Connection:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=5000")
                db.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigurationError(f"cannot open the feature store {self.path}: {exc}") from exc
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        db, thread = self._db, self._thread
        self._db = self._thread = None
        if db is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
            thread.shutdown(wait=True)

    async def write(self, view: FeatureView, rows: Sequence[Row]) -> int:
        encode = msgspec.json.encode
        params = [
            [(view.name, row.entity, name, encode(value), row.event_ts) for name, value in row.values.items()]
            for row in rows
        ]

        def write(db: sqlite3.Connection) -> int:
            applied = 0
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in params:
                    changed = 0
                    for values in row:
                        changed += db.execute(_UPSERT, values).rowcount
                    applied += changed > 0
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return applied

        return await self._run(write)

    async def read(self, lookups: Sequence[Lookup]) -> list[dict[str, StoredValue]]:
        pairs = list(lookups)

        def read(db: sqlite3.Connection) -> list[dict[str, StoredValue]]:
            out: list[dict[str, StoredValue]] = [{} for _ in pairs]
            where: dict[Lookup, list[int]] = {}
            for i, pair in enumerate(pairs):
                where.setdefault(pair, []).append(i)
            unique = list(where)
            decode = msgspec.json.decode
            for start in range(0, len(unique), _READ_CHUNK):
                chunk = unique[start : start + _READ_CHUNK]
                values = ", ".join("(?, ?)" for _ in chunk)
                query = (
                    f"WITH q(view, entity) AS (VALUES {values}) "  # noqa: S608 - placeholders only
                    "SELECT f.view, f.entity, f.feature, f.value, f.event_ts FROM q "
                    "JOIN feature_values f ON f.view = q.view AND f.entity = q.entity"
                )
                args = [part for pair in chunk for part in pair]
                for view, entity, feature, value, ts in db.execute(query, args):
                    stored = (decode(value), ts)
                    for i in where[(view, entity)]:
                        out[i][feature] = stored
            return out

        if not pairs:
            return []
        return await self._run(read)
