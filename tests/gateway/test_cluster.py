"""A gateway in front of two model services, each a real process: routing, errors, deadlines, tracing,
and a model service killed under load (the last test: it leaves the cluster without model services)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from websockets.asyncio.client import connect

from modelwire.errors import ErrorCode
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.http.errors import HTTP_STATUS
from tests.gateway.conftest import GATEWAY_READY, Process, Processes, service_port, wait_ready

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    processes: Processes
    services: list[Process]
    ports: list[int]
    gateway: Process
    url: str
    grpc_port: int
    markers: Path
    models: list[dict[str, Any]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    markers = root / "markers"
    markers.mkdir()
    no_batching = {"enabled": False}  # a cancelled call reaches the model itself, not a shared batch
    models = [
        {"name": "pid", "source": "tests.gateway.models:PidModel", "options": {"delay_s": 0.02}},
        {
            "name": "slow",
            "source": "tests.gateway.models:CancelledModel",
            "batching": no_batching,
            "options": {"marker_dir": str(markers)},
        },
        {"name": "raising", "source": "tests.gateway.models:RaisingModel", "batching": no_batching},
        {"name": "sum", "source": "tests.models:SumModel"},
    ]
    processes = Processes(root)
    try:
        services = [processes.model_service(f"service{i}", models) for i in range(2)]
        ports = [service_port(service) for service in services]
        gateway = processes.gateway("gateway", ports)
        ready = gateway.wait_for(GATEWAY_READY)
        url = f"http://127.0.0.1:{ready.group(1)}"
        wait_ready(url)
        yield Cluster(processes, services, ports, gateway, url, int(ready.group(2)), markers, models)
    finally:
        processes.close()


def predict(client: httpx.Client, model: str, text: str, **headers: str) -> httpx.Response:
    return client.post(f"/v1/models/{model}/predict", json={"text": text}, headers=headers)


def test_requests_spread_across_both_model_services(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        replies = [predict(client, "pid", f"hello {i}") for i in range(20)]
        batch = client.post("/v1/models/pid/predict", json={"texts": ["a", "b", "c"]})
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    pids = [r.json()["pid"] for r in replies]
    assert set(pids) == {s.pid for s in cluster.services}
    assert min(pids.count(s.pid) for s in cluster.services) >= 5  # round robin, not one then the other
    assert replies[0].json() == {"echo": "hello 0", "pid": pids[0]}  # an INT64 output stays an integer
    assert [p["echo"] for p in batch.json()["predictions"]] == ["a", "b", "c"]


def test_the_gateway_lists_the_models_of_its_upstreams(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        listed = client.get("/v1/models").json()["models"]
        meta = client.get("/v2/models/pid").json()
        infer = client.post(
            "/v2/models/pid/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x", "yy"]}]},
        )
    assert sorted(m["name"] for m in listed) == ["pid", "raising", "slow", "sum"]
    assert [o["name"] for o in meta["outputs"]] == ["echo", "pid"]
    assert infer.status_code == 200, infer.text
    outputs = {o["name"]: o for o in infer.json()["outputs"]}
    assert outputs["echo"]["data"] == ["x", "yy"]
    assert outputs["pid"]["datatype"] == "INT64"


def test_instances_that_are_not_text_cross_as_tensors(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        batch = client.post("/v1/models/sum/predict", json={"instances": [[1, 2], [3, 4.5]]})
        one = client.post("/v1/models/sum/predict", json={"instance": [1, 2, 3]})
        infer = client.post(
            "/v2/models/sum/infer",
            json={"inputs": [{"name": "values", "datatype": "FP32", "shape": [1, 2], "data": [2, 2]}]},
        )
    assert batch.json() == {"predictions": [3.0, 7.5]}
    assert one.json() == 6.0
    assert infer.json()["outputs"][0]["data"] == [4.0]


async def test_websocket_and_the_gateways_own_grpc_port_forward_too(cluster: Cluster) -> None:
    async with connect(cluster.url.replace("http", "ws", 1) + "/v1/models/pid/ws") as ws:
        await ws.send(json.dumps({"op": "predict", "id": 7, "text": "over ws"}))
        reply = json.loads(await ws.recv())
    assert reply["id"] == 7
    assert reply["echo"] == "over ws"
    assert reply["pid"] in {s.pid for s in cluster.services}

    async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.grpc_port}") as channel:
        stub = pb_grpc.PredictorStub(channel)
        output = await stub.Predict(pb.Input(text="over grpc", model="pid"), timeout=10)
        assert output.result["echo"] == "over grpc"
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the caller's deadline travels on
            await stub.Predict(pb.Input(text="x", model="slow"), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("code", list(ErrorCode))
def test_an_upstream_error_keeps_its_meaning_at_the_gateway(cluster: Cluster, code: ErrorCode) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        reply = predict(client, "raising", code.value)
    assert reply.status_code == HTTP_STATUS[code], reply.text
    error = reply.json()["error"]
    assert error["code"] == code.value
    if code is ErrorCode.INTERNAL:
        error_id = error["details"]["error_id"]
        assert "a bug" not in reply.text  # the model's own words stay in the model service's log
        assert any(f"error_id={error_id}" in s.text() for s in cluster.services)
    else:
        assert error["message"] == f"raised {code.value} on purpose"
    if code in (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE):
        assert reply.headers["retry-after"] == "7"
        assert error["retry_after_s"] == 7.0


def test_an_unknown_model_is_404_and_a_bad_item_is_its_own_400(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        unknown = predict(client, "nope", "x")
        batch = client.post("/v1/models/raising/predict", json={"texts": ["INVALID_ARGUMENT"]})
    assert unknown.status_code == 404
    assert "served: pid, raising, slow, sum" in unknown.json()["error"]["message"]
    assert batch.status_code == 200, batch.text
    assert batch.json()["predictions"][0]["error"]["code"] == "INVALID_ARGUMENT"


def test_a_request_timeout_becomes_504_and_cancels_the_upstream_call(cluster: Cluster) -> None:
    request_id = f"deadline-{secrets.token_hex(4)}"
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        reply = predict(client, "slow", "x", **{"Request-Timeout": "0.5", "x-request-id": request_id})
        assert reply.status_code == 504, reply.text
        assert reply.json()["error"]["code"] == "DEADLINE_EXCEEDED"
        assert reply.headers["x-request-id"] == request_id
        # The model (30 s of sleep) was cancelled on the model service, in the call carrying our request id.
        marker = cluster.markers / request_id
        for _ in range(200):  # the model service may write it a moment after the gateway answered
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.exists()
        bad = predict(client, "pid", "x", **{"Request-Timeout": "soon"})
    assert bad.status_code == 400
    assert "Request-Timeout" in bad.json()["error"]["message"]


def test_trace_context_and_request_id_reach_the_model_service_logs(cluster: Cluster) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        reply = predict(
            client, "raising", "INTERNAL", traceparent=traceparent, **{"x-request-id": "trace-me-1"}
        )
        minted = predict(client, "raising", "INTERNAL")
    assert reply.status_code == 500
    assert reply.headers["x-request-id"] == "trace-me-1"
    error_id = reply.json()["error"]["details"]["error_id"]
    (line,) = [
        line for s in cluster.services for line in s.text().splitlines() if f"error_id={error_id}" in line
    ]
    assert f"[request_id=trace-me-1 trace_id={trace_id}]" in line
    gateway_lines = [line for line in cluster.gateway.text().splitlines() if f"error_id={error_id}" in line]
    assert gateway_lines
    assert f"[request_id=trace-me-1 trace_id={trace_id}]" in gateway_lines[0]
    # Without headers, the gateway makes a request id (echoed) and a trace, and both travel on.
    minted_id = minted.headers["x-request-id"]
    minted_error = minted.json()["error"]["details"]["error_id"]
    assert any(
        re.search(rf"error_id={minted_error}.*\[request_id={minted_id} trace_id=[0-9a-f]{{32}}\]", s.text())
        for s in cluster.services
    )


async def test_a_model_service_killed_under_load_costs_no_request(cluster: Cluster) -> None:
    victim, survivor = cluster.services
    results: list[tuple[int, int | None]] = []  # (status, pid)
    not_ready: list[int] = []
    stop = asyncio.Event()
    reborn: list[Process] = []

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:

        async def load(worker: int) -> None:
            i = 0
            while not stop.is_set():
                reply = await client.post("/v1/models/pid/predict", json={"text": f"w{worker} {i}"})
                results.append((reply.status_code, reply.json().get("pid")))
                i += 1

        async def readiness() -> None:
            while not stop.is_set():
                reply = await client.get("/v2/health/ready")
                if reply.status_code != 200:
                    not_ready.append(reply.status_code)
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(load(w)) for w in range(4)] + [asyncio.create_task(readiness())]
        try:
            async with asyncio.timeout(50):
                while sum(1 for _, pid in results if pid == victim.pid) < 20:
                    await asyncio.sleep(0.02)
                victim.kill()
                killed_at = len(results)
                while len(results) < killed_at + 100:  # steady load on the survivor alone
                    await asyncio.sleep(0.02)
                reborn.append(
                    cluster.processes.model_service("service0-again", cluster.models, cluster.ports[0])
                )
                service_port(reborn[0])
                while not any(pid == reborn[0].pid for _, pid in results):  # traffic comes back to it
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    failed = [status for status, _ in results if status != 200]
    # At most the calls in flight on the killed service may fail (4 loaders); gRPC retries those that had
    # no answer yet on the survivor, so in practice none does.
    assert len(failed) <= 4, failed
    assert set(failed) <= {503}
    assert not_ready == []
    after = [pid for _, pid in results[killed_at:]]
    assert survivor.pid in after
    assert reborn[0].pid in after
    assert f"upstream 127.0.0.1:{cluster.ports[0]} is not serving" in cluster.gateway.text()

    # With no model service left, the gateway is not ready and answers 503 (retry later), not 500.
    for process in (survivor, reborn[0]):
        process.kill()
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        async with asyncio.timeout(30):
            while (await client.get("/v2/health/ready")).status_code != 503:
                await asyncio.sleep(0.05)
        reply = await client.post("/v1/models/pid/predict", json={"text": "anyone?"})
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "UNAVAILABLE"
    assert "retry-after" in reply.headers
