"""The Redis online feature store: one hash per (view, entity), ``<prefix>features:<view>:<entity>``.

Fields: ``v:<feature>`` the JSON value, ``t:<feature>`` its event time (epoch seconds). One Lua script
(``_WRITE``) writes all the rows of one entity: per feature it replaces the value only when the row's
event time is strictly newer than the stored one, so a late or replayed event changes nothing, and Redis
runs the script with nothing interleaved (atomic per entity).

The key expires twice the view's TTL after its last applied write (``PEXPIRE``), counted from the write,
not from the event time: a value pushed already old is still read and reported as ``OUTSIDE_MAX_AGE``
(and a replay of it skipped) for that long, then Redis purges the entity's hash if nothing newer came.

A batch is one pipeline of scripts, a read one pipeline of ``HGETALL``: one round trip each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from modelwire.backends.redis.connection import RedisTarget, map_redis_errors
from modelwire.errors import UnavailableError
from modelwire.features.rows import Row
from modelwire.features.store import FeatureStore, Lookup, StoredValue
from modelwire.features.views import FeatureView

__all__ = ["RedisFeatureStore"]

_WRITE = """
local key = KEYS[1]
local purge_ms = tonumber(ARGV[1])
local applied = 0
local i = 2
while i <= #ARGV do
  local ts_text = ARGV[i]
  local ts = tonumber(ts_text)
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  local changed = false
  for _ = 1, n do
    local name = ARGV[i]
    local old = redis.call('HGET', key, 't:' .. name)
    if (not old) or tonumber(old) < ts then
      redis.call('HSET', key, 'v:' .. name, ARGV[i + 1], 't:' .. name, ts_text)
      changed = true
    end
    i = i + 2
  end
  if changed then applied = applied + 1 end
end
if applied > 0 then
  redis.call('PEXPIRE', key, purge_ms)
end
return applied
"""


class RedisFeatureStore(FeatureStore):
    """Feature values in Redis, shared by every process naming the same URL and prefix."""

    name = "redis"

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self._client: Redis | None = None
        self._script: Any = None

    @classmethod
    def from_url(cls, url: str) -> RedisFeatureStore:
        return cls(RedisTarget.parse(url))

    def key(self, view: str, entity: str) -> str:
        return f"{self.target.prefix}features:{view}:{entity}"

    def _redis(self) -> Redis:
        if self._client is None:
            raise UnavailableError("the feature store is not open")
        return self._client

    async def open(self) -> None:
        if self._client is None:
            self._client = self.target.connect("modelwire-features")
            self._script = self._client.register_script(_WRITE)
            with map_redis_errors("the feature store"):
                await self._client.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def write(self, view: FeatureView, rows: Sequence[Row]) -> int:
        client = self._redis()
        by_entity: dict[str, list[bytes | str]] = {}
        encode = msgspec.json.encode
        purge_ms = str(int(view.ttl_s * 2000))
        for row in rows:
            args = by_entity.setdefault(row.entity, [purge_ms])
            args += [repr(row.event_ts), str(len(row.values))]
            for name, value in row.values.items():
                args += [name, encode(value)]
        if not by_entity:
            return 0
        with map_redis_errors("the feature store"):
            async with client.pipeline(transaction=False) as pipe:
                for entity, args in by_entity.items():
                    await self._script(keys=[self.key(view.name, entity)], args=args, client=pipe)
                results = await pipe.execute()
        return sum(int(n) for n in results)

    async def read(self, lookups: Sequence[Lookup]) -> list[dict[str, StoredValue]]:
        if not lookups:
            return []
        client = self._redis()
        with map_redis_errors("the feature store"):
            async with client.pipeline(transaction=False) as pipe:
                for view, entity in lookups:
                    pipe.hgetall(self.key(view, entity))
                hashes = await pipe.execute()
        decode = msgspec.json.decode
        out: list[dict[str, StoredValue]] = []
        for fields in hashes:
            values: dict[str, StoredValue] = {}
            for name, raw in fields.items():
                if name.startswith(b"v:"):
                    ts = fields.get(b"t:" + name[2:])
                    if ts is not None:
                        values[name[2:].decode()] = (decode(raw), float(ts))
            out.append(values)
        return out
