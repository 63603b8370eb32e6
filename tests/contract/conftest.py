"""One live server (REST + gRPC on port 0) and a tiny per-transport driver, so every contract test runs
the same assertions over every wire. The drivers use the wire clients directly (httpx, grpcio stubs,
websockets, httpx-sse)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import httpx
import pytest
from google.protobuf import json_format
from httpx_sse import EventSource
from websockets.asyncio.client import ClientConnection, connect

from modelwire.app.builder import build_services
from modelwire.app.components import UpstreamRouter
from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2, predictor_pb2_grpc
from modelwire.settings import BatchingSettings, GatewaySettings, LimitsSettings, Settings
from tests.models import EchoModel, ErrorModel, IdentityModel, SlowModel

# The one status vocabulary the contract speaks; each transport maps to it below.
HTTP_TO_CODE = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    413: "PAYLOAD_TOO_LARGE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GRPC_TO_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "PAYLOAD_TOO_LARGE",
    grpc.StatusCode.INTERNAL: "INTERNAL",
    grpc.StatusCode.UNAVAILABLE: "UNAVAILABLE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
}


@dataclass
class Failure(Exception):
    code: str
    message: str
    error_id: str | None = None


class Driver(Protocol):
    async def predict(self, text: Any, model: str = "sentiment", version: str = "") -> dict[str, Any]: ...


class RestDriver:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def predict(self, text: Any, model: str = "sentiment", version: str = "") -> dict[str, Any]:
        path = f"/v1/models/{model}/versions/{version}/predict" if version else f"/v1/models/{model}/predict"
        response = await self.client.post(path, json={"text": text})
        if response.status_code != 200:
            error = response.json()["error"]
            code = HTTP_TO_CODE.get(response.status_code, str(response.status_code))
            raise Failure(code, error["message"], error.get("details", {}).get("error_id"))
        body: dict[str, Any] = response.json()
        return body


class GrpcDriver:
    def __init__(self, stub: predictor_pb2_grpc.PredictorStub) -> None:
        self.stub = stub

    async def predict(self, text: Any, model: str = "sentiment", version: str = "") -> dict[str, Any]:
        if not isinstance(text, str):
            raise Failure(
                "INVALID_ARGUMENT", "protobuf cannot carry a non-string text"
            )  # the schema refuses it
        try:
            output = await self.stub.Predict(
                predictor_pb2.Input(text=text, model=model, version=version), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            match = re.search(r"error_id=(\w+)", details)
            raise Failure(
                GRPC_TO_CODE.get(exc.code(), exc.code().name), details, match[1] if match else None
            ) from None
        if output.HasField("result"):
            result: dict[str, Any] = json_format.MessageToDict(output.result)
            if "length" in result:
                result["length"] = int(result["length"])
            return result
        return {"sentiment": output.sentiment, "confidence": round(output.confidence, 4)}


class WsDriver:
    """One WebSocket for the whole test: requests are pipelined on it and matched to replies by id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            reply = json.loads(raw)
            self.waiting.pop(reply["id"]).set_result(reply)

    async def predict(self, text: Any, model: str = "sentiment", version: str = "") -> dict[str, Any]:
        request_id = next(self.ids)
        message = {"id": request_id, "op": "predict", "text": text, "model": model}
        if version:
            message["version"] = version
        self.waiting[request_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(self.waiting[request_id], 10)
        if reply.get("op") == "error":
            error = reply["error"]
            raise Failure(error["code"], error["message"], error.get("details", {}).get("error_id"))
        assert reply.pop("id") == request_id
        assert reply.pop("version") == (version or "1")  # the envelope says which version answered
        return reply


class SseDriver:
    """``POST .../predict/stream`` with a one-item batch: request errors are HTTP, item errors are events."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def predict(self, text: Any, model: str = "sentiment", version: str = "") -> dict[str, Any]:
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + "/predict/stream"
        body = {"texts": [text]} if isinstance(text, str) else {"instances": [text]}
        async with self.client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                error = response.json()["error"]
                code = HTTP_TO_CODE.get(response.status_code, str(response.status_code))
                raise Failure(code, error["message"], error.get("details", {}).get("error_id"))
            events = [sse async for sse in EventSource(response).aiter_sse() if sse.data]
        assert [e.event for e in events][-1:] == ["done"]
        (item,) = events[:-1]
        data: dict[str, Any] = json.loads(item.data)
        assert data.pop("index") == 0
        if item.event == "error":
            error = data["error"]
            raise Failure(error["code"], error["message"], error.get("details", {}).get("error_id"))
        assert item.event == "prediction"
        return data


@dataclass
class Deployment:
    """What a client reaches (``front``: one server, or a gateway) and where the models run (``models``)."""

    front: Server
    models: Services

    @property
    def http_port(self) -> int:
        assert self.front.http_port is not None
        return self.front.http_port

    @property
    def grpc_port(self) -> int:
        assert self.front.grpc_port is not None
        return self.front.grpc_port


@pytest.fixture(params=["server", "gateway"])
async def live(
    request: pytest.FixtureRequest,
    make_services: Callable[..., Services],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    """Every contract case runs against one server, and again through a gateway (``modelwire gateway``'s
    services and router, in process) in front of a model service: the answers must be the same."""
    limits = LimitsSettings(request_timeout_s=1.5, max_text_chars=2000)
    settings = make_settings(limits=limits, batching=BatchingSettings(max_batch_size=64, max_delay_ms=50))
    services = make_services(
        EchoModel(),
        ErrorModel("broken"),
        SlowModel("slow", delay_s=3.0),
        IdentityModel("identity"),
        settings=settings,
    )
    if request.param == "server":
        server = Server(settings, services=services)
        await server.start()
        yield Deployment(server, services)
        await server.stop()
        return
    model_service = Server(settings, services=services, rest=False)
    await model_service.start()
    gateway_settings = make_settings(
        limits=limits,
        data_dir=tmp_path / "gateway",
        gateway=GatewaySettings(
            upstreams=(f"127.0.0.1:{model_service.grpc_port}",), discovery_interval_s=0.5
        ),
    )
    gateway_services = build_services(gateway_settings, models=[])
    gateway = Server(
        gateway_settings, services=gateway_services, components=[UpstreamRouter(gateway_settings)]
    )
    await gateway.start()
    try:
        yield Deployment(gateway, services)
    finally:
        await gateway.stop()
        await model_service.stop()


@pytest.fixture(params=["rest", "grpc", "ws", "sse"])
async def driver(request: pytest.FixtureRequest, live: Deployment) -> AsyncIterator[Driver]:
    if request.param == "ws":
        async with connect(f"ws://127.0.0.1:{live.http_port}/v1/ws") as ws:
            ws_driver = WsDriver(ws)
            yield ws_driver
            ws_driver.reader.cancel()
    elif request.param == "rest":
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as client:
            yield RestDriver(client)
    elif request.param == "sse":
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as client:
            yield SseDriver(client)
    else:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{live.grpc_port}") as channel:
            yield GrpcDriver(predictor_pb2_grpc.PredictorStub(channel))
