"""What every online feature store does, run against each one (``[sqlite]``, ``[redis]``), through the
``FeatureService`` façade as every wire uses it: typed values, last-write-wins by event time, TTL,
many entities x many features in one store call, sharing between processes, scopes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from modelwire.backends.resolve import open_feature_store
from modelwire.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from modelwire.features.rows import Row
from modelwire.features.service import FeatureService
from modelwire.features.store import FeatureStore, Lookup, StoredValue
from modelwire.features.views import FeatureView, FeatureViews
from modelwire.security.principal import Principal, Scope, reset_principal, use_principal
from modelwire.settings import FeaturesSettings, FeatureViewSettings, Settings

VIEWS = (
    FeatureViewSettings(
        name="user_stats",
        entities=("user_id",),
        ttl_s=3600,
        features={"avg_rating": "float", "n_reviews": "int", "tier": "string", "vip": "bool"},
    ),
    FeatureViewSettings(
        name="user_embed", entities=("user_id",), ttl_s=3600, features={"vec": "float_vector"}
    ),
    FeatureViewSettings(name="pair", entities=("user_id", "item_id"), ttl_s=60, features={"clicks": "int"}),
)
Connect = Callable[[], Awaitable[FeatureService]]


class CountingStore(FeatureStore):
    """A store that counts the calls made to the real one under it."""

    def __init__(self, inner: FeatureStore) -> None:
        self.inner = inner
        self.reads: list[int] = []

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write(self, view: FeatureView, rows: Sequence[Row]) -> int:
        return await self.inner.write(view, rows)

    async def read(self, lookups: Sequence[Lookup]) -> list[dict[str, StoredValue]]:
        self.reads.append(len(lookups))
        return await self.inner.read(lookups)


@pytest.fixture(params=["sqlite", "redis"])
def feature_store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_backend"))
    return "sqlite"


@pytest.fixture
async def connect(feature_store_url: str, tmp_path: Path) -> AsyncIterator[Connect]:
    """``await connect()``: another service on the same store, as another process has."""
    settings = Settings(
        data_dir=tmp_path, feature_views=VIEWS, features=FeaturesSettings(store=feature_store_url)
    )
    opened: list[FeatureService] = []

    async def make() -> FeatureService:
        service = FeatureService(
            FeatureViews.from_settings(settings.feature_views), CountingStore(open_feature_store(settings))
        )
        await service.open()
        opened.append(service)
        return service

    yield make
    for service in opened:
        await service.close()


@pytest.fixture
async def features(connect: Connect) -> FeatureService:
    return await connect()


async def test_pushed_values_read_back_typed_in_feasts_shape(features: FeatureService) -> None:
    ts = time.time() - 5
    result = await features.push(
        "user_stats",
        [
            {
                "user_id": "u1",
                "avg_rating": 4,
                "n_reviews": 10,
                "tier": "gold",
                "vip": True,
                "event_timestamp": ts,
            },
            {"user_id": "u2", "avg_rating": 2.5, "n_reviews": 3.0},
        ],
    )
    assert (result.applied, result.skipped) == (2, 0)
    await features.push("user_embed", [{"user_id": "u1", "vec": [1, 2.5, -3]}])
    answer = (
        await features.get_online(
            ["user_stats:avg_rating", "user_stats:n_reviews", "user_stats:vip", "user_embed:vec"],
            {"user_id": ["u1", "u2", "u3"]},
        )
    ).to_dict()
    assert answer["metadata"]["feature_names"] == ["user_id", "avg_rating", "n_reviews", "vip", "vec"]
    entity, rating, reviews, vip, vec = answer["results"]
    assert entity["values"] == ["u1", "u2", "u3"]
    assert rating["values"] == [4.0, 2.5, None]
    assert isinstance(rating["values"][0], float)
    assert reviews["values"] == [10, 3, None]
    assert vip["values"] == [True, None, None]
    assert vec["values"] == [[1.0, 2.5, -3.0], None, None]
    assert rating["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert vip["statuses"] == ["PRESENT", "NOT_FOUND", "NOT_FOUND"]
    assert rating["event_timestamps"][2] == "1970-01-01T00:00:00Z"
    assert rating["event_timestamps"][0].endswith("Z")
    import datetime as dt

    parsed = dt.datetime.fromisoformat(rating["event_timestamps"][0])
    assert parsed.timestamp() == pytest.approx(ts, abs=1e-3)


async def test_a_late_or_replayed_event_never_overwrites_a_newer_value(features: FeatureService) -> None:
    now = time.time()
    first = await features.push(
        "user_stats", [{"user_id": "u1", "avg_rating": 5.0, "n_reviews": 7, "event_timestamp": now - 10}]
    )
    assert (first.applied, first.skipped) == (1, 0)
    late = await features.push(
        "user_stats", [{"user_id": "u1", "avg_rating": 1.0, "event_timestamp": now - 20}]
    )
    assert (late.applied, late.skipped) == (0, 1)
    replay = await features.push(
        "user_stats", [{"user_id": "u1", "avg_rating": 9.0, "event_timestamp": now - 10}]
    )
    assert (replay.applied, replay.skipped) == (0, 1)  # the same event time: a duplicate, not newer
    # per feature: a newer event with one feature updates that one only
    newer = await features.push(
        "user_stats", [{"user_id": "u1", "n_reviews": 8, "event_timestamp": "2999-01-01T00:00:00Z"}]
    )
    assert (newer.applied, newer.skipped) == (1, 0)
    answer = (
        await features.get_online(["user_stats:avg_rating", "user_stats:n_reviews"], {"user_id": ["u1"]})
    ).to_dict()
    assert answer["results"][1]["values"] == [5.0]
    assert answer["results"][2]["values"] == [8]
    assert answer["results"][2]["event_timestamps"] == ["2999-01-01T00:00:00Z"]


async def test_rows_in_one_batch_apply_in_event_time_order_whatever_their_order(
    features: FeatureService,
) -> None:
    now = time.time()
    rows = [{"user_id": "u1", "n_reviews": n, "event_timestamp": now - 100 + n} for n in (5, 9, 2, 7)]
    result = await features.push("user_stats", rows)
    assert (result.applied, result.skipped) == (2, 2)  # 5, then 9; 2 and 7 are older than 9
    answer = (await features.get_online(["user_stats:n_reviews"], {"user_id": ["u1"]})).to_dict()
    assert answer["results"][1]["values"] == [9]


async def test_a_value_older_than_the_ttl_reads_outside_max_age(features: FeatureService) -> None:
    now = time.time()
    await features.push(
        "user_stats",
        [
            {"user_id": "old", "avg_rating": 3.0, "event_timestamp": now - 3600 - 30},
            {"user_id": "new", "avg_rating": 4.0, "event_timestamp": now - 3600 + 300},
        ],
    )
    answer = (await features.get_online(["user_stats:avg_rating"], {"user_id": ["old", "new"]})).to_dict()
    column = answer["results"][1]
    assert column["statuses"] == ["OUTSIDE_MAX_AGE", "PRESENT"]
    assert column["values"] == [None, 4.0]
    assert column["event_timestamps"][0] != "1970-01-01T00:00:00Z"  # reported with its event time


async def test_many_entities_and_views_are_read_in_one_store_call(features: FeatureService) -> None:
    rows = [{"user_id": f"u{i}", "avg_rating": i / 10, "n_reviews": i} for i in range(100)]
    await features.push("user_stats", rows)
    await features.push("pair", [{"user_id": "u1", "item_id": 7, "clicks": 3}])
    store = features.store
    assert isinstance(store, CountingStore)
    answer = (
        await features.get_online(
            ["user_stats:avg_rating", "user_stats:n_reviews", "pair:clicks"],
            {"user_id": [f"u{i}" for i in range(100)], "item_id": [7] * 100},
        )
    ).to_dict()
    assert store.reads == [200]  # 100 entities x 2 views, one call
    names = answer["metadata"]["feature_names"]
    assert names == ["user_id", "item_id", "avg_rating", "n_reviews", "clicks"]
    assert answer["results"][3]["values"] == list(range(100))
    assert answer["results"][4]["values"][:2] == [None, 3]
    assert answer["results"][4]["statuses"][:2] == ["NOT_FOUND", "PRESENT"]


async def test_writers_in_two_processes_converge_on_the_newest_event(connect: Connect) -> None:
    a, b = await connect(), await connect()
    now = time.time()
    stamps = [now - 50 + (i * 7) % 40 for i in range(40)]  # a shuffled order of event times

    async def push(service: FeatureService, i: int) -> None:
        await service.push(
            "user_stats",
            [{"user_id": "u1", "n_reviews": i, "avg_rating": float(i), "event_timestamp": stamps[i]}],
        )

    await asyncio.gather(*(push(a if i % 2 else b, i) for i in range(40)))
    newest = max(range(40), key=lambda i: stamps[i])
    for service in (a, b):
        answer = (
            await service.get_online(["user_stats:n_reviews", "user_stats:avg_rating"], {"user_id": ["u1"]})
        ).to_dict()
        assert answer["results"][1]["values"] == [newest]
        assert answer["results"][2]["values"] == [float(newest)]  # both features from the same event


async def test_bad_rows_are_refused_naming_the_field_and_nothing_is_written(features: FeatureService) -> None:
    cases = [
        ({"avg_rating": 1.0}, "$.rows[1].user_id"),
        ({"user_id": "u", "avg_rating": "high"}, "$.rows[1].avg_rating"),
        ({"user_id": "u", "n_reviews": 1.5}, "$.rows[1].n_reviews"),
        ({"user_id": "u", "vip": 1}, "$.rows[1].vip"),
        ({"user_id": "u", "rating": 1.0}, "$.rows[1].rating"),
        ({"user_id": "u", "avg_rating": 1.0, "event_timestamp": "yesterday"}, "$.rows[1].event_timestamp"),
        ({"user_id": ["u"], "avg_rating": 1.0}, "$.rows[1].user_id"),
        ({"user_id": "u"}, "$.rows[1]"),
    ]
    for bad, field in cases:
        with pytest.raises(InvalidInputError) as caught:
            await features.push("user_stats", [{"user_id": "ok", "avg_rating": 1.0}, bad])
        assert caught.value.field == field
    answer = (await features.get_online(["user_stats:avg_rating"], {"user_id": ["ok"]})).to_dict()
    assert answer["results"][1]["statuses"] == ["NOT_FOUND"]
    with pytest.raises(NotFoundError, match="no feature view 'nope'"):
        await features.push("nope", [{"user_id": "u"}])
    with pytest.raises(InvalidInputError, match="no feature 'rating' in view 'user_stats'"):
        await features.get_online(["user_stats:rating"], {"user_id": ["u"]})
    with pytest.raises(InvalidInputError, match="entity key 'item_id'"):
        await features.get_online(["pair:clicks"], {"user_id": ["u"]})


async def test_reading_and_writing_need_their_scopes(features: FeatureService) -> None:
    reader = Principal(id="key:r", kind="key", scopes=frozenset({Scope.FEATURES_READ}), authenticated=True)
    token = use_principal(reader)
    try:
        assert [v["name"] for v in features.list_views()] == ["user_stats", "user_embed", "pair"]
        await features.get_online(["user_stats:tier"], {"user_id": ["u"]})
        with pytest.raises(PermissionDeniedError, match="features:write"):
            await features.push("user_stats", [{"user_id": "u", "tier": "x"}])
    finally:
        reset_principal(token)
    writer = Principal(id="key:w", kind="key", scopes=frozenset({Scope.FEATURES_WRITE}), authenticated=True)
    token = use_principal(writer)
    try:
        await features.push("user_stats", [{"user_id": "u", "tier": "x"}])
        with pytest.raises(PermissionDeniedError, match="features:read"):
            await features.get_online(["user_stats:tier"], {"user_id": ["u"]})
    finally:
        reset_principal(token)
