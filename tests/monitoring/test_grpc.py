"""``modelwire.v1.Monitoring`` over a real gRPC channel with authentication on: the same JSON as REST, the
scopes (``events`` to read, ``models:admin`` to silence), errors as gRPC status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2_grpc as pb_grpc
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> tuple[ThreadedServer, dict[str, str]]:
    data_dir = serve_module.data_dir()
    store = KeyStore(data_dir / "keys.json")
    keys = {"admin": store.create([Scope.MODELS_ADMIN])[0], "events": store.create([Scope.EVENTS])[0]}
    return serve_module(data_dir=data_dir, auth={"mode": "on"}), keys


@pytest.fixture
async def channel(server: tuple[ThreadedServer, dict[str, str]]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server[0].grpc_url.removeprefix("grpc://")) as channel:
        yield channel


def auth(server: Any, who: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {server[1][who]}")]


async def test_get_and_list_alerts_read_as_rest(server: Any, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.MonitoringStub(channel)
    body = json_format.MessageToDict(
        await stub.Get(pb.GetMonitoringRequest(), metadata=auth(server, "events"))
    )
    assert body["enabled"] is True
    assert "sentiment-input-drift" in {rule["name"] for rule in body["rules"]}
    alerts = json_format.MessageToDict(
        await stub.ListAlerts(pb.ListAlertsRequest(), metadata=auth(server, "events"))
    )
    assert alerts == {"alerts": [], "recent": [], "silences": []}


async def test_silence_needs_models_admin_and_round_trips(server: Any, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.MonitoringStub(channel)
    request = pb.SilenceRequest(matchers={"model": "sentiment"}, duration_s=60, comment="deploying")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Silence(request, metadata=auth(server, "events"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    silence = json_format.MessageToDict(await stub.Silence(request, metadata=auth(server, "admin")))
    assert silence["matchers"] == {"model": "sentiment"}
    assert silence["state"] == "active"
    await stub.Unsilence(pb.UnsilenceRequest(id=silence["id"]), metadata=auth(server, "admin"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.Unsilence(pb.UnsilenceRequest(id=silence["id"]), metadata=auth(server, "admin"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.Silence(pb.SilenceRequest(duration_s=60), metadata=auth(server, "admin"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "matchers" in (bad.value.details() or "")
