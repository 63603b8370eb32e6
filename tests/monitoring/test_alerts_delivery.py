"""Alerts end to end on a real server: normal traffic raises nothing; shifted traffic makes the drift alert
go pending then firing, announced on SSE, WebSocket, gRPC ``Events``, a signed webhook to a real receiver and
a NATS subject; normal traffic again resolves it. A slow model breaching a latency objective fires and
resolves the same way. Monitors run every 0.2 s; every wait is on a condition, bounded."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from modelwire.jobs.webhooks import SIGNATURE_HEADER, load_secret, sign
from modelwire.protocols.grpc._generated.modelwire.v1 import events_pb2, events_pb2_grpc
from modelwire.settings import Settings
from tests.models import SlowModel
from tests.monitoring.conftest import shifted, until
from tests.protocols.queues.conftest import NATS_URL, _require
from tests.serving import ThreadedServer

WINDOW = 200
RULE = {
    "name": "reviews-input-drift",
    "monitor": "input_drift",
    "model": "sentiment",
    "threshold": 0.25,
    "window": WINDOW,
    "for_s": 0.6,
    "severity": "warning",
    "labels": {"team": "ml"},
}


class Receiver:
    """A real HTTP server on 127.0.0.1:0 keeping every POST (headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def server(data_dir: Path, receiver: Receiver) -> Iterator[tuple[ThreadedServer, str]]:
    _require(NATS_URL)
    prefix = f"test_{uuid.uuid4().hex[:8]}.events"
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=data_dir,
        monitoring={
            "interval_s": 0.2,
            "min_samples": 100,
            # every item sampled, however fast the test sends it: the budget (items a second) would
            # otherwise leave a mix of normal and shifted traffic in the window on a fast machine
            "max_samples_per_s": 1_000_000,
            "default_rules": False,
            "webhooks": [
                {"url": receiver.url + "/alertmanager", "states": ["pending", "firing", "resolved"]},
                {"url": receiver.url + "/slack", "format": "slack"},
            ],
        },
        alerts=[RULE],
        jobs={"webhook_allow": ["127.0.0.1"]},
        event_sinks=[{"url": NATS_URL, "topics": ["alerts"], "destination": prefix}],
    )
    srv = ThreadedServer(settings).start()
    try:
        yield srv, prefix
    finally:
        srv.stop()


async def _predict(client: httpx.AsyncClient, texts: list[str]) -> None:
    for start in range(0, len(texts), 20):
        response = await client.post(
            "/v1/models/sentiment/predict", json={"texts": texts[start : start + 20]}
        )
        assert response.status_code == 200, response.text


async def _window_holds(client: httpx.AsyncClient, evaluations_after: int) -> bool:
    snapshot = (await client.get("/v1/monitoring")).json()
    if snapshot["evaluations"] <= evaluations_after:
        return False
    (entry,) = [m for m in snapshot["models"] if m["model"] == "sentiment"]
    return bool(entry["monitors"]["input_drift"][str(WINDOW)]["samples"] == WINDOW)


async def _evaluations(client: httpx.AsyncClient) -> int:
    return int((await client.get("/v1/monitoring")).json()["evaluations"])


async def test_drift_alert_pending_firing_resolved_on_every_channel(
    server: tuple[ThreadedServer, str], receiver: Receiver, held_out: list[str]
) -> None:
    import nats

    srv, prefix = server
    states: dict[str, list[str]] = {"sse": [], "ws": [], "grpc": [], "nats": []}
    tasks: list[asyncio.Task[None]] = []
    client = httpx.AsyncClient(base_url=srv.http_url, timeout=30)
    nc = await nats.connect(NATS_URL)
    channel = grpc.aio.insecure_channel(srv.grpc_url.removeprefix("grpc://"))
    subscribed = {"sse": asyncio.Event(), "ws": asyncio.Event()}

    async def on_nats(msg: Any) -> None:
        envelope = json.loads(msg.data)
        assert msg.subject == f"{prefix}.alerts"
        states["nats"].append(envelope["data"]["state"])

    async def read_sse() -> None:
        async with aconnect_sse(client, "GET", "/v1/events", params={"topics": "alerts"}) as source:
            subscribed["sse"].set()
            async for sse in source.aiter_sse():
                if sse.event.startswith("alert."):
                    states["sse"].append(json.loads(sse.data)["data"]["state"])

    async def read_ws() -> None:
        url = srv.http_url.replace("http", "ws") + "/v1/ws"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "topic": "alerts"}))
            async for raw in ws:
                message = json.loads(raw)
                if message.get("op") == "subscribed":
                    subscribed["ws"].set()
                elif message.get("op") == "event" and message["topic"] == "alerts":
                    assert message["type"] == f"alert.{message['data']['state']}"
                    states["ws"].append(message["data"]["state"])

    async def read_grpc() -> None:
        stub = events_pb2_grpc.EventsStub(channel)
        call = stub.Subscribe(events_pb2.SubscribeRequest(topics=["alerts"]))
        async for event in call:
            assert event.topic == "alerts"
            assert event.type == f"alert.{event.data['state']}"
            states["grpc"].append(event.data["state"])

    try:
        await nc.subscribe(prefix + ".>", cb=on_nats)
        await nc.flush()
        tasks = [asyncio.create_task(f()) for f in (read_sse, read_ws, read_grpc)]
        assert srv.server is not None
        bus = srv.server.services.events  # type: ignore[union-attr]

        async def all_subscribed() -> bool:
            return bus.subscriber_count >= 3 and all(e.is_set() for e in subscribed.values())

        await until(all_subscribed, "SSE, WebSocket and gRPC subscribed to alerts", timeout=30)
        # 1. traffic like the held-out data: the window fills, nothing is announced
        start = await _evaluations(client)
        await _predict(client, held_out[:WINDOW])
        await until(lambda: _window_holds(client, start), "the normal traffic fills the window")
        quiet = (await client.get("/v1/alerts")).json()
        assert quiet["alerts"] == []
        assert quiet["recent"] == []
        (entry,) = [
            m for m in (await client.get("/v1/monitoring")).json()["models"] if m["model"] == "sentiment"
        ]
        assert entry["monitors"]["input_drift"][str(WINDOW)]["value"] < RULE["threshold"]
        assert entry["reference"]["status"].startswith("saved with the version")

        # 2. another language: pending, then firing after for_s
        await _predict(client, shifted(WINDOW))

        async def firing() -> bool:
            alerts = (await client.get("/v1/alerts")).json()["alerts"]
            return any(a["state"] == "firing" for a in alerts)

        await until(firing, "the drift alert fires")
        (alert,) = (await client.get("/v1/alerts")).json()["alerts"]
        assert alert["name"] == RULE["name"]
        assert alert["monitor"] == "input_drift"
        assert alert["model"] == "sentiment"
        assert alert["version"] == "1"
        assert alert["value"] > alert["threshold"] == 0.25
        assert alert["labels"]["team"] == "ml"
        assert alert["severity"] == "warning"

        # 3. normal traffic again: resolved
        await _predict(client, held_out[WINDOW : 2 * WINDOW])

        async def resolved_everywhere() -> bool:
            return all(s[-1:] == ["resolved"] for s in states.values()) and len(receiver.requests) >= 5

        await until(resolved_everywhere, "resolved reaches every channel")
        for name, seen in states.items():
            assert seen == ["pending", "firing", "resolved"], name
        body = (await client.get("/v1/alerts")).json()
        assert body["alerts"] == []
        assert [r["state"] for r in body["recent"]] == ["resolved"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()
        await nc.close()
        await client.aclose()

    # the webhooks: Alertmanager's payload (pending, firing, resolved) and Slack's text (firing, resolved),
    # each signed with the jobs' key
    secret = load_secret(None, srv.settings.data_dir / "webhook_secret")
    by_path: dict[str, list[dict[str, Any]]] = {"/alertmanager": [], "/slack": []}
    for headers, raw in receiver.requests:
        stamp = int(headers[SIGNATURE_HEADER.lower()].split(",")[0].removeprefix("t="))
        assert headers[SIGNATURE_HEADER.lower()] == sign(secret, raw, stamp)
        by_path["/slack" if b'"text"' in raw[:10] else "/alertmanager"].append(json.loads(raw))
    manager = by_path["/alertmanager"]
    assert [p["alerts"][0]["labels"].get("alertstate", p["status"]) for p in manager] == [
        "pending",
        "firing",
        "resolved",
    ]
    assert manager[1]["version"] == "4"
    assert manager[1]["groupLabels"] == {"alertname": RULE["name"]}
    assert manager[2]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    texts = [p["text"] for p in by_path["/slack"]]
    assert texts[0].startswith("[firing] reviews-input-drift (warning): sentiment 1 input_drift = ")
    assert texts[1].startswith("[resolved] reviews-input-drift")


@pytest.fixture
def slow_server(data_dir: Path) -> Iterator[tuple[ThreadedServer, SlowModel]]:
    model = SlowModel("slow", delay_s=0.0)
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=data_dir,
        monitoring={"interval_s": 0.2, "default_rules": False},
        alerts=[
            {
                "name": "slow-latency",
                "monitor": "latency_p99",
                "model": "slow",
                "threshold": 0.1,
                "window": 10,
                "for_s": 0.3,
                "severity": "critical",
            }
        ],
    )
    srv = ThreadedServer(settings, model).start()
    try:
        yield srv, model
    finally:
        srv.stop()


async def _sse_states(client: httpx.AsyncClient, out: list[str], ready: asyncio.Event) -> None:
    async with aconnect_sse(client, "GET", "/v1/events", params={"topics": "alerts"}) as source:
        ready.set()
        async for sse in source.aiter_sse():
            if sse.event.startswith("alert."):
                out.append(json.loads(sse.data)["data"]["state"])


async def test_a_slow_model_breaching_the_latency_objective_fires_and_resolves(
    slow_server: tuple[ThreadedServer, SlowModel],
) -> None:
    srv, model = slow_server
    seen: list[str] = []
    ready = asyncio.Event()
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as client:
        reader = asyncio.create_task(_sse_states(client, seen, ready))
        try:
            await asyncio.wait_for(ready.wait(), 30)

            async def send(n: int) -> None:
                for _ in range(n):
                    r = await client.post("/v1/models/slow/predict", json={"text": "hello"})
                    assert r.status_code == 200, r.text

            await send(10)  # fast: nothing
            model.options["delay_s"] = 0.15  # the model slows down past the 0.1 s objective
            await send(10)

            async def state_is(state: str) -> bool:
                return seen[-1:] == [state]

            await until(lambda: state_is("firing"), "the latency alert fires")
            model.options["delay_s"] = 0.0
            await send(10)
            await until(lambda: state_is("resolved"), "the latency alert resolves")
            assert seen == ["pending", "firing", "resolved"]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
