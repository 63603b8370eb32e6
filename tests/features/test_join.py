"""The feature join on a real server: the example churn model (docs/examples/churn_model.py) declares its
features, requests carry only the entity, and the prediction changes when the user's features change.
One store read per batch, on every wire that reaches the core (REST, gRPC Predictor, async jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import httpx
import msgspec
import pytest

from modelwire.app.builder import build_services
from modelwire.errors import ConfigurationError
from modelwire.model.base import Model
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.settings import Settings
from tests.serving import ServeModule, ThreadedServer

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` meanwhile (pytest's ``syspath_prepend`` also calls into
    ``pkg_resources``, which a shim in this venv does not fully provide)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


VIEW = {
    "name": "user_stats",
    "entities": ["user_id"],
    "ttl_s": 3600,
    "features": {"avg_rating": "float", "n_reviews": "int"},
}


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> Iterator[ThreadedServer]:
    with on_path(ROOT / "docs" / "examples"):  # what --app-dir does for `modelwire serve`
        yield serve_module(
            models=[{"name": "churn", "source": "churn_model:ChurnModel"}],
            feature_views=[VIEW],
            batching={"max_delay_ms": 2.0},
        )


@pytest.fixture
def users() -> Iterator[list[str]]:
    run = uuid.uuid4().hex[:8]
    return [f"{run}-{i}" for i in range(4)]


def _push(client: httpx.Client, rows: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/features/user_stats/push", json={"rows": rows})
    assert answer.status_code == 200, answer.text


def _predict(client: httpx.Client, instances: list[Any]) -> list[Any]:
    answer = client.post("/v1/models/churn/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["predictions"])


def test_the_prediction_follows_the_users_features(server: ThreadedServer, users: list[str]) -> None:
    good, bad, nobody, old = users
    now = time.time()
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        _push(
            client,
            [
                {"user_id": good, "avg_rating": 4.8, "n_reviews": 30},
                {"user_id": bad, "avg_rating": 1.5, "n_reviews": 1},
                {"user_id": old, "avg_rating": 4.0, "n_reviews": 5, "event_timestamp": now - 7200},
            ],
        )
        first = _predict(
            client,
            [
                {"entity": {"user_id": good}},
                {"entity": {"user_id": bad}},
                {"entity": {"user_id": nobody}},
                {"entity": {"user_id": old}},
                {"text": "no entity"},
                {"entity": {"user_id": [1]}},
            ],
        )
        assert first[0]["label"] == "stay"
        assert first[1]["label"] == "churn"
        assert first[1]["churn"] > 0.8 > 0.2 > first[0]["churn"]
        missing, expired, no_entity, bad_key = (p["error"] for p in first[2:])
        assert missing["code"] == "FAILED_PRECONDITION"
        assert "user_stats:avg_rating" in missing["message"]
        assert "NOT_FOUND" in missing["message"]
        assert missing["field"] == "$.instances[2]"
        assert "OUTSIDE_MAX_AGE" in expired["message"]
        assert no_entity["code"] == "INVALID_ARGUMENT"
        assert '"entity"' in no_entity["message"]
        assert bad_key["code"] == "INVALID_ARGUMENT"
        # the user's features change (a newer event): the next prediction changes with them
        _push(client, [{"user_id": bad, "avg_rating": 4.9, "n_reviews": 40}])
        (after,) = _predict(client, [{"entity": {"user_id": bad}}])
        assert after["label"] == "stay"
        # the default: a user with a rating but no review count reads n_reviews = 0
        _push(client, [{"user_id": nobody, "avg_rating": 2.0}])
        (defaulted,) = _predict(client, [{"entity": {"user_id": nobody}}])
        assert defaulted["label"] == "churn"
        metadata = client.get("/v2/models/churn").json()
        assert metadata["name"] == "churn"


async def test_one_store_read_per_batch_over_rest_and_grpc(server: ThreadedServer, users: list[str]) -> None:
    assert server.server is not None
    assert server.server.services is not None
    metrics = server.server.services.metrics
    good = users[0]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        pushed = await client.post(
            "/v1/features/user_stats/push",
            json={"rows": [{"user_id": good, "avg_rating": 4.0, "n_reviews": 9}]},
        )
        assert pushed.status_code == 200

        def counts() -> tuple[float, float]:
            reads = metrics.feature_store_reads._value.get()
            batches = next(
                s.value
                for m in metrics.batch_size.collect()
                for s in m.samples
                if s.name.endswith("_count") and s.labels.get("model") == "churn"
            )
            return reads, batches

        reads0, batches0 = counts()
        async with grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
            stub = pb_grpc.PredictorStub(channel)
            instance = msgspec.msgpack.encode({"entity": {"user_id": good}})
            rest_calls = [
                client.post("/v1/models/churn/predict", json={"instance": {"entity": {"user_id": good}}})
                for _ in range(40)
            ]
            grpc_calls = [stub.Predict(pb.Input(model="churn", instance=instance)) for _ in range(20)]
            answers = await asyncio.gather(*rest_calls, *grpc_calls)
        for answer in answers[:40]:
            assert answer.json()["label"] == "stay", answer.text
        for reply in answers[40:]:
            assert reply.result["label"] == "stay"
        reads, batches = counts()
    assert reads - reads0 == batches - batches0  # exactly one store read per batch the model ran
    assert batches - batches0 <= 60


def test_a_model_asking_for_an_undefined_feature_stops_the_start(tmp_path: Path) -> None:
    class Greedy(Model):
        features: ClassVar[tuple[str, ...]] = ("user_stats:avg_rating", "user_stats:lifetime_value")

        def predict(self, batch: Any) -> Any:
            return batch

    settings = Settings(data_dir=tmp_path, feature_views=[VIEW])
    with pytest.raises(ConfigurationError, match=r"model 'greedy' declares features .*lifetime_value"):
        build_services(settings, models=[Greedy("greedy")])


def test_the_join_works_for_async_jobs_too(server: ThreadedServer, users: list[str]) -> None:
    good, bad, nobody, _ = users
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        _push(
            client,
            [
                {"user_id": good, "avg_rating": 4.8, "n_reviews": 30},
                {"user_id": bad, "avg_rating": 1.2, "n_reviews": 0},
            ],
        )
        inputs = [{"entity": {"user_id": u}} for u in (good, bad, nobody)]
        job = client.post("/v1/jobs", json={"model": "churn", "inputs": inputs}).json()
        deadline = time.monotonic() + 60
        while (state := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        rows = client.get(f"/v1/jobs/{job['id']}/results", params={"format": "json"}).json()["results"]
    assert [r.get("label") for r in rows] == ["stay", "churn", None]
    assert rows[2]["error"]["code"] == "FAILED_PRECONDITION"


def test_the_open_inference_protocol_carries_the_entity_as_a_parameter(
    server: ThreadedServer, users: list[str]
) -> None:
    good, bad, _, _ = users
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        _push(
            client,
            [
                {"user_id": good, "avg_rating": 4.8, "n_reviews": 30},
                {"user_id": bad, "avg_rating": 1.2, "n_reviews": 0},
            ],
        )
        body = {
            "inputs": [{"name": "input", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}],
            "parameters": {"entity": {"user_id": [good, bad]}},
        }
        answer = client.post("/v2/models/churn/infer", json=body)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert outputs["label"] == ["stay", "churn"]
        wrong = client.post(
            "/v2/models/churn/infer", json={**body, "parameters": {"entity": {"user_id": [good]}}}
        )
        assert wrong.status_code == 400
        assert "parameters.entity.user_id has 1 values for 2 rows" in wrong.text
    from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
    from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc

    async def over_grpc() -> Any:
        async with grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
            request = oip.ModelInferRequest(model_name="churn")
            tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(b"x")
            request.parameters["entity"].string_param = json.dumps({"user_id": bad})
            return await oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)

    reply = asyncio.run(over_grpc())
    label = next(o for o in reply.outputs if o.name == "label")
    assert list(label.contents.bytes_contents) == [b"churn"]


async def test_a_version_registered_at_run_time_gets_the_join_too(tmp_path: Path) -> None:
    """A version trained, registered or dropped into the repository while serving goes through the admin
    façade: it must be served with its features joined, as the versions built at start are."""
    from modelwire.app.lifecycle import start_services, stop_services
    from modelwire.core.dataplane import CallContext

    with on_path(ROOT / "docs" / "examples"):
        from churn_model import ChurnModel  # type: ignore[import-not-found]

    settings = Settings(data_dir=tmp_path, feature_views=[VIEW])
    services = build_services(settings, models=[ChurnModel("churn", "1")])
    await start_services(services)
    try:
        await services.features.push("user_stats", [{"user_id": "u1", "avg_rating": 4.9, "n_reviews": 40}])
        verdict = await services.admin.register(ChurnModel("churn", "2"), mode="never")
        assert not verdict.promoted
        (answer,) = await services.dataplane.infer(
            "churn", [{"entity": {"user_id": "u1"}}], version="2", ctx=CallContext("rest")
        )
        assert answer["label"] == "stay", answer
    finally:
        await stop_services(services)
