"""``"sticky": "entity"`` on a real server: a canary split over two versions of a model that joins features
keeps each entity on one version (REST and gRPC alike, the same key on both), a call carrying two entities
is refused naming why, and a model with no entity key refuses the mode with a 400."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import grpc
import httpx
import msgspec
import pytest

from modelwire import Model
from modelwire.protocols.grpc._generated.modelwire.v1 import admin_pb2, admin_pb2_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer

VIEW = {"name": "user_stats", "entities": ["user_id"], "ttl_s": 3600, "features": {"avg_rating": "float"}}


class Scored(Model):
    """Joins ``user_stats:avg_rating`` (0 when the store has none) and answers its own version."""

    features: ClassVar[tuple[str, ...]] = ("user_stats:avg_rating",)
    feature_defaults: ClassVar[dict[str, Any]] = {"user_stats:avg_rating": 0.0}

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [
            {"version": self.version, "rating": item["features"]["user_stats:avg_rating"]} for item in batch
        ]


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(Scored("scored", "1"), Scored("scored", "2"), EchoModel("echo"), feature_views=[VIEW])


def _version(client: httpx.Client, user: str) -> str:
    answer = client.post("/v1/models/scored/predict", json={"instance": {"entity": {"user_id": user}}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == answer.headers["model-version"]
    return answer.headers["model-version"]


def test_a_split_sticky_per_entity_keeps_each_entity_on_one_version(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        split = {"versions": {"1": 50, "2": 50}, "sticky": "entity"}
        answer = client.put("/v1/admin/models/scored/traffic", json=split)
        assert answer.status_code == 200, answer.text
        assert answer.json()["traffic"]["sticky"] == "entity"
        per_user = {f"user-{i}": {_version(client, f"user-{i}") for _ in range(4)} for i in range(60)}
        assert all(len(versions) == 1 for versions in per_user.values()), per_user
        assert {v for versions in per_user.values() for v in versions} == {"1", "2"}  # both take entities
        # a batch of one entity lands where that entity does
        user = "user-7"
        (expected,) = per_user[user]
        batch = {"instances": [{"entity": {"user_id": user}}] * 3}
        answer = client.post("/v1/models/scored/predict", json=batch)
        assert answer.status_code == 200, answer.text
        assert answer.headers["model-version"] == expected
        # gRPC: the same entity, the same version
        with grpc.insecure_channel(server.grpc_url.split("://", 1)[1]) as channel:
            stub = pb_grpc.PredictorStub(channel)
            request = pb.Input(
                model="scored", instance=msgspec.msgpack.encode({"entity": {"user_id": "user-7"}})
            )
            _reply, call = stub.Predict.with_call(request, timeout=30)
            assert dict(call.trailing_metadata())["model-version"] == expected
        # two entities in one call: one version answers a call, so it is refused naming why
        mixed = {"instances": [{"entity": {"user_id": "a"}}, {"entity": {"user_id": "b"}}]}
        answer = client.post("/v1/models/scored/predict", json=mixed)
        assert answer.status_code == 400, answer.text
        assert "2 different entities" in answer.text
        # no entity at all
        answer = client.post("/v1/models/scored/predict", json={"instance": {"x": 1}})
        assert answer.status_code == 400, answer.text
        assert "routes each call by its entity (user_id)" in answer.text
        client.put("/v1/admin/models/scored/traffic", json={"versions": {}, "sticky": None})


def test_a_model_without_an_entity_key_refuses_sticky_entity(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        split = {"versions": {"1": 100}, "sticky": "entity"}
        answer = client.put("/v1/admin/models/echo/traffic", json=split)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["field"] == "$.sticky"
        assert "'echo' has no entity key" in answer.json()["error"]["message"]
    with grpc.insecure_channel(server.grpc_url.split("://", 1)[1]) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.SetTraffic(
                admin_pb2.SetTrafficRequest(name="echo", set_sticky=True, sticky="entity"), timeout=30
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "no entity key" in (refused.value.details() or "")
