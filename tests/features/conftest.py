"""A real server with feature views, auth on and keys of each scope, once per store (``[sqlite]``,
``[redis]``), for the wire tests of this folder."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import Settings
from tests.features.brokers import under  # noqa: F401 - the fixture: each durable broker in turn
from tests.redis_server import delete_prefix
from tests.serving import ThreadedServer

VIEWS: list[dict[str, Any]] = [
    {
        "name": "user_stats",
        "entities": ["user_id"],
        "ttl_s": 3600,
        "features": {"avg_rating": "float", "n_reviews": "int", "tier": "string", "vec": "float_vector"},
    },
    {"name": "merchant", "entities": ["merchant_id"], "ttl_s": 60, "features": {"risk": "float"}},
]


@dataclass(frozen=True)
class FeatureServer:
    server: ThreadedServer
    reader: str  # features:read
    writer: str  # features:write
    both: str  # features:read + features:write
    predict: str  # predict only
    store: str


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def feature_server(
    request: pytest.FixtureRequest, trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeatureServer]:
    store, prefix = "sqlite", ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server")
        prefix = f"test-{uuid.uuid4().hex[:12]}:"
        store = f"{url}?prefix={prefix}"
    data_dir = tmp_path_factory.mktemp("features") / "data"
    shutil.copytree(trained_data_dir, data_dir)
    keys = KeyStore.in_data_dir(data_dir)
    make = lambda *scopes: keys.create(set(scopes))[0]  # noqa: E731
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=data_dir,
        auth={"mode": "on"},
        jobs={"workers": 0},
        feature_views=VIEWS,
        features={"store": store},
    )
    server = ThreadedServer(settings).start()
    try:
        yield FeatureServer(
            server,
            reader=make(Scope.FEATURES_READ),
            writer=make(Scope.FEATURES_WRITE),
            both=make(Scope.FEATURES_READ, Scope.FEATURES_WRITE),
            predict=make(Scope.PREDICT),
            store=request.param,
        )
    finally:
        server.stop()
        if prefix:
            delete_prefix(request.getfixturevalue("redis_server"), prefix)
