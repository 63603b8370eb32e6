"""``--features grpc://host:port``: a model service reading another modelwire's feature store over gRPC,
with a key of its own; the feature service checks the scopes."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelwire.errors import PermissionDeniedError
from modelwire.features.rows import Row
from modelwire.features.views import FeatureViews
from modelwire.gateway.features import RemoteFeatureStore
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import Settings
from tests.features.test_join import ROOT, VIEW, on_path
from tests.serving import ThreadedServer


@pytest.fixture(scope="module")
def servers(
    trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadedServer, ThreadedServer, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("feature-service") / "data"
    shutil.copytree(trained_data_dir, data_dir)
    store = KeyStore.in_data_dir(data_dir)
    keys = {
        "read": store.create({Scope.FEATURES_READ})[0],
        "both": store.create({Scope.FEATURES_READ, Scope.FEATURES_WRITE})[0],
    }
    base = {
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "jobs": {"workers": 0},
        "feature_views": [VIEW],
    }
    feature_service = ThreadedServer(Settings(**base, data_dir=data_dir, auth={"mode": "on"})).start()
    model_dir = tmp_path_factory.mktemp("model-service") / "data"
    with on_path(ROOT / "docs" / "examples"):
        model_service = ThreadedServer(
            Settings(
                **base,
                data_dir=model_dir,
                models=[{"name": "churn", "source": "churn_model:ChurnModel"}],
                features={"store": feature_service.grpc_url, "key": keys["read"]},
            )
        )
        try:
            model_service.start()
            yield feature_service, model_service, keys
        finally:
            model_service.stop()
            feature_service.stop()


def test_a_model_service_predicts_from_a_remote_feature_service(
    servers: tuple[ThreadedServer, ThreadedServer, dict[str, str]],
) -> None:
    feature_service, model_service, keys = servers
    user = f"u-{uuid.uuid4().hex[:8]}"
    auth = {"authorization": f"Bearer {keys['both']}"}
    with httpx.Client(base_url=feature_service.http_url, headers=auth, timeout=30) as client:
        pushed = client.post(
            "/v1/features/user_stats/push",
            json={"rows": [{"user_id": user, "avg_rating": 1.2, "n_reviews": 1}]},
        )
        assert pushed.status_code == 200, pushed.text
    with httpx.Client(base_url=model_service.http_url, timeout=30) as client:
        first = client.post("/v1/models/churn/predict", json={"instance": {"entity": {"user_id": user}}})
        assert first.json()["label"] == "churn", first.text
        online = client.post(
            "/v1/features/get-online-features",
            json={"features": ["user_stats:avg_rating"], "entities": {"user_id": [user, "nobody"]}},
        ).json()
        assert online["results"][1]["values"] == [1.2, None]
        assert online["results"][1]["statuses"] == ["PRESENT", "NOT_FOUND"]
        # the model service's key may read, not write: the feature service says so
        refused = client.post(
            "/v1/features/user_stats/push", json={"rows": [{"user_id": user, "avg_rating": 5.0}]}
        )
        assert refused.status_code == 403, refused.text
        assert "features:write" in refused.json()["error"]["message"]
    with httpx.Client(base_url=feature_service.http_url, headers=auth, timeout=30) as client:
        client.post(
            "/v1/features/user_stats/push",
            json={"rows": [{"user_id": user, "avg_rating": 4.9, "n_reviews": 40}]},
        )
    with httpx.Client(base_url=model_service.http_url, timeout=30) as client:
        after = client.post("/v1/models/churn/predict", json={"instance": {"entity": {"user_id": user}}})
        assert after.json()["label"] == "stay", after.text


async def test_the_remote_store_keeps_the_contract(
    servers: tuple[ThreadedServer, ThreadedServer, dict[str, str]],
) -> None:
    feature_service, _, keys = servers
    views = FeatureViews.from_settings(Settings(feature_views=[VIEW]).feature_views)
    view = views.get("user_stats")
    store = RemoteFeatureStore(feature_service.grpc_url, views, key=keys["both"])
    await store.open()
    try:
        user = f'["{uuid.uuid4().hex[:8]}"]'
        now = time.time()
        assert await store.write(view, [Row(user, {"avg_rating": 3.0, "n_reviews": 2}, now - 10)]) == 1
        assert await store.write(view, [Row(user, {"avg_rating": 1.0}, now - 20)]) == 0  # late: skipped
        old = '["old-one"]'
        await store.write(view, [Row(old, {"n_reviews": 9}, now - 7200)])
        got = await store.read([("user_stats", user), ("user_stats", '["absent"]'), ("user_stats", old)])
        assert got[0]["avg_rating"] == (3.0, pytest.approx(now - 10, abs=1e-3))
        assert got[0]["n_reviews"][0] == 2
        assert got[1] == {}
        assert got[2]["n_reviews"][1] == pytest.approx(now - 7200, abs=1e-3)  # outside max age, with its time
    finally:
        await store.close()
    reader = RemoteFeatureStore(feature_service.grpc_url, views, key=keys["read"])
    await reader.open()
    try:
        with pytest.raises(PermissionDeniedError, match="features:write"):
            await reader.write(view, [Row('["x"]', {"n_reviews": 1}, time.time())])
    finally:
        await reader.close()
