"""The scopes decided where the action happens, on a real server over every wire: a training job needs
``models:admin`` on REST and gRPC (unary and streamed submit), a ``models:admin`` key follows its own
training job through the 202's ``Location``, and event topics need ``events`` on WebSocket, SSE and gRPC
alike (one job's topic: ``jobs:read`` will do)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from websockets.asyncio.client import connect

from modelwire.protocols.grpc._generated.modelwire.v1 import events_pb2, events_pb2_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2_grpc as pb_grpc
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import Settings
from tests.serving import ThreadedServer

LABELLED = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]


@dataclass(frozen=True)
class Keys:
    jobs: str  # jobs:write + predict: may submit prediction jobs, not train
    admin: str  # models:admin only
    admin_jobs: str  # models:admin + jobs:write
    predict: str  # predict only
    reader: str  # predict + jobs:read


@pytest.fixture(scope="module")
def keys_and_server(
    trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Keys, ThreadedServer]]:
    data_dir = tmp_path_factory.mktemp("scopes") / "data"
    shutil.copytree(trained_data_dir, data_dir)
    store = KeyStore.in_data_dir(data_dir)
    keys = Keys(
        jobs=store.create({Scope.JOBS_WRITE, Scope.PREDICT})[0],
        admin=store.create({Scope.MODELS_ADMIN})[0],
        admin_jobs=store.create({Scope.MODELS_ADMIN, Scope.JOBS_WRITE})[0],
        predict=store.create({Scope.PREDICT})[0],
        reader=store.create({Scope.PREDICT, Scope.JOBS_READ})[0],
    )
    # No job workers: accepted jobs stay queued, so nothing trains while the tests look at them.
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=data_dir,
        auth={"mode": "on"},
        jobs={"workers": 0},
    )
    server = ThreadedServer(settings).start()
    try:
        yield keys, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def keys(keys_and_server: tuple[Keys, ThreadedServer]) -> Keys:
    return keys_and_server[0]


@pytest.fixture(scope="module")
def server(keys_and_server: tuple[Keys, ThreadedServer]) -> ThreadedServer:
    return keys_and_server[1]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def values(*items: Any) -> list[struct_pb2.Value]:
    out = []
    for item in items:
        value = struct_pb2.Value()
        json_format.ParseDict(item, value)
        out.append(value)
    return out


@pytest.fixture
async def jobs_stub(server: ThreadedServer) -> AsyncIterator[pb_grpc.JobsStub]:
    async with grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        yield pb_grpc.JobsStub(channel)


def train_request() -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(model="sentiment", kind="train", instances=values(*LABELLED))


async def submit_stream(stub: pb_grpc.JobsStub, key: str) -> pb.SubmitJobResponse:
    async def chunks() -> AsyncIterator[pb.SubmitJobChunk]:
        yield pb.SubmitJobChunk(spec=pb.SubmitJobRequest(model="sentiment", kind="train"))
        yield pb.SubmitJobChunk(instances=values(*LABELLED))

    return await stub.SubmitStream(chunks(), metadata=tuple(bearer(key).items()), timeout=10)


# -- a training job needs models:admin, on every wire ----------------------------------------------------


async def test_grpc_submit_train_needs_models_admin(keys: Keys, jobs_stub: pb_grpc.JobsStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs_stub.Submit(train_request(), metadata=tuple(bearer(keys.jobs).items()), timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'models:admin'" in (caught.value.details() or "")


async def test_grpc_submit_stream_train_needs_models_admin(keys: Keys, jobs_stub: pb_grpc.JobsStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit_stream(jobs_stub, keys.jobs)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'models:admin'" in (caught.value.details() or "")


async def test_grpc_train_with_models_admin_is_accepted(keys: Keys, jobs_stub: pb_grpc.JobsStub) -> None:
    meta = tuple(bearer(keys.admin_jobs).items())
    answer = await jobs_stub.Submit(train_request(), metadata=meta, timeout=10)
    assert answer.created
    assert answer.job.kind == "train"
    streamed = await submit_stream(jobs_stub, keys.admin_jobs)
    assert streamed.created
    assert streamed.job.kind == "train"


async def test_grpc_predict_job_still_needs_only_jobs_write(keys: Keys, jobs_stub: pb_grpc.JobsStub) -> None:
    request = pb.SubmitJobRequest(model="sentiment", texts=["fine"])
    answer = await jobs_stub.Submit(request, metadata=tuple(bearer(keys.jobs).items()), timeout=10)
    assert answer.created
    assert answer.job.kind == "predict"


async def test_rest_train_needs_models_admin(server: ThreadedServer, keys: Keys) -> None:
    body = {"texts": ["good", "bad"], "labels": [1, 0]}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        refused = await http.post("/v1/models/sentiment/train", json=body, headers=bearer(keys.jobs))
    assert refused.status_code == 403
    assert "'models:admin'" in refused.json()["error"]["message"]


# -- a models:admin key follows its own training job ----------------------------------------------------


async def test_a_models_admin_key_polls_its_training_job(server: ThreadedServer, keys: Keys) -> None:
    body = {"texts": ["good", "bad"], "labels": [1, 0]}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        accepted = await http.post("/v1/models/sentiment/train", json=body, headers=bearer(keys.admin))
        assert accepted.status_code == 202, accepted.text
        polled = await http.get(accepted.headers["location"], headers=bearer(keys.admin))
        assert polled.status_code == 200, polled.text
        assert polled.json()["id"] == accepted.json()["id"]
        listed = await http.get("/v1/jobs", headers=bearer(keys.admin))
        assert accepted.json()["id"] in {job["id"] for job in listed.json()["jobs"]}
        # models:admin includes reading jobs, not writing them: a prediction job still needs jobs:write
        refused = await http.post(
            "/v1/jobs", json={"model": "sentiment", "inputs": ["x"]}, headers=bearer(keys.admin)
        )
    assert refused.status_code == 403
    assert "'jobs:write'" in refused.json()["error"]["message"]


async def test_a_models_admin_key_reads_its_job_over_grpc(
    server: ThreadedServer, keys: Keys, jobs_stub: pb_grpc.JobsStub
) -> None:
    body = {"texts": ["good", "bad"], "labels": [1, 0]}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        accepted = await http.post("/v1/models/sentiment/train", json=body, headers=bearer(keys.admin))
    job_id = accepted.json()["id"]
    job = await jobs_stub.Get(
        pb.GetJobRequest(id=job_id), metadata=tuple(bearer(keys.admin).items()), timeout=10
    )
    assert job.id == job_id


# -- event topics need the events scope, on every wire ----------------------------------------------------


async def ws_subscribe(server: ThreadedServer, key: str, topic: str) -> dict[str, Any]:
    url = server.http_url.replace("http://", "ws://") + "/v1/ws"
    async with connect(url, additional_headers=bearer(key), open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "id": 1}))
        reply: dict[str, Any] = json.loads(await ws.recv(decode=True))
        return reply


@pytest.mark.parametrize("topic", ["metrics", "models", "server", "jobs/*", "*"])
async def test_ws_subscribe_needs_the_events_scope(server: ThreadedServer, keys: Keys, topic: str) -> None:
    reply = await ws_subscribe(server, keys.predict, topic)
    assert reply["op"] == "error", reply
    assert reply["id"] == 1
    assert reply["error"]["code"] == "PERMISSION_DENIED"
    assert "'events'" in reply["error"]["message"]


async def test_ws_one_jobs_topic_needs_jobs_read(server: ThreadedServer, keys: Keys) -> None:
    assert (await ws_subscribe(server, keys.predict, "jobs/j1"))["op"] == "error"
    assert (await ws_subscribe(server, keys.reader, "jobs/j1"))["op"] == "subscribed"


async def test_sse_events_need_the_events_scope(server: ThreadedServer, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        refused = await http.get("/v1/events", params={"topics": "metrics"}, headers=bearer(keys.predict))
    assert refused.status_code == 403
    assert "'events'" in refused.json()["error"]["message"]


async def test_grpc_events_need_the_events_scope(server: ThreadedServer, keys: Keys) -> None:
    async with grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        call = stub.Subscribe(
            events_pb2.SubscribeRequest(topics=["metrics"]),
            metadata=tuple(bearer(keys.predict).items()),
            timeout=10,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'events'" in (caught.value.details() or "")
