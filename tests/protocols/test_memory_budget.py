"""The memory budget on a real server (``models.memory_budget``; core/budget.py): four models whose measured
sizes (4 MiB each) let two of them stay loaded beside a pinned one; the least recently used idle one is
unloaded (a ``model.unloaded`` event saying why), a call brings it back, a pinned model (configured, or
pinned over the admin API) is never unloaded, a call that cannot wait for the reload gets 503 +
Retry-After, and calls to the other models never fail meanwhile. REST and SSE (httpx), gRPC (grpcio) and
WebSocket."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner
from websockets.sync.client import connect

from modelwire import Model
from modelwire.cli import app
from modelwire.client import Client
from modelwire.events.bus import Event
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
)
from tests.protocols.grpc.richstatus import rich_details
from tests.serving import ServeModule, ThreadedServer

MIB = 1 << 20
SOURCE = "tests.protocols.test_memory_budget:Sized"
GATE = threading.Event()
"""Loads of ``Sized(gated=True)`` wait for it (set: they go through at once)."""
GATE.set()


class Sized(Model):
    """Holds ``mib`` MiB once loaded; answers its name."""

    def load(self) -> None:
        if self.options.get("gated"):
            assert GATE.wait(60)
        self.blob = bytearray(int(self.options["mib"]) * MIB)

    def unload(self) -> None:
        del self.blob

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        assert len(self.blob) > 0  # a call never reaches an unloaded model
        return [{"model": self.name} for _ in batch]


def spec(name: str, mib: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": SOURCE, "options": {"mib": mib, **extra.pop("options", {})}, **extra}


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> Iterator[ThreadedServer]:
    models = [
        spec("pinned", 1, pinned=True),
        spec("a", 4),
        spec("b", 4),
        spec("c", 4),
        spec("slow", 4, options={"gated": True}),
    ]
    # a call waits 3 s at most (REST v1, WebSocket and gRPC without a deadline of their own)
    limits = {"request_timeout_s": 3.0}
    yield serve_module(models=models, memory_budget="10MiB", batching={"enabled": False}, limits=limits)
    GATE.set()


@pytest.fixture
def events(server: ThreadedServer) -> list[Event]:
    seen: list[Event] = []
    assert server.server is not None
    assert server.server.services is not None
    server.server.services.events.add_publish_listener(seen.append)
    return seen


def _memory(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/v1/admin/memory")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _loaded(memory: dict[str, Any]) -> set[str]:
    return {m["name"] for m in memory["models"] if m["state"] == "ready"}


def _call(client: httpx.Client, name: str) -> None:
    answer = client.post(f"/v1/models/{name}/predict", json={"instance": "x"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model": name}


def test_lru_unloading_within_the_budget_and_loading_again_on_demand(
    server: ThreadedServer, events: list[Event]
) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        memory = _memory(client)
        assert memory["budget_bytes"] == 10 * MIB
        sizes = {m["name"]: m["size_bytes"] for m in memory["models"] if m["size_bytes"] is not None}
        assert sizes["pinned"] >= MIB
        assert all(sizes[n] >= 4 * MIB for n in ("a", "b", "c"))
        assert all(size < 5 * MIB for size in sizes.values())  # the blob and a few small objects
        assert memory["used_bytes"] <= 10 * MIB
        assert "pinned" in _loaded(memory)
        assert len(_loaded(memory) - {"pinned"}) == 2  # two of the four fit beside the pinned one
        assert {m["name"]: m["pinned"] for m in memory["models"]}["pinned"] is True

        failures: Counter[str] = Counter()
        stop = threading.Event()

        def other_traffic() -> None:  # calls to a model the budget never unloads, all along
            with httpx.Client(base_url=server.http_url, timeout=60) as other:
                while not stop.is_set():
                    answer = other.post("/v1/models/pinned/predict", json={"instance": "x"})
                    if answer.status_code != 200:
                        failures[str(answer.status_code)] += 1

        thread = threading.Thread(target=other_traffic)
        thread.start()
        try:
            for name in ["a", "b", "c", "a", "c", "b", "a"] * 2:
                _call(client, name)  # loaded again on demand when the budget had unloaded it
                memory = _memory(client)
                assert name in _loaded(memory)
                assert memory["used_bytes"] <= 10 * MIB
                assert "pinned" in _loaded(memory)
        finally:
            stop.set()
            thread.join()
        assert failures == Counter()

        unloads = [e for e in events if e.type == "model.unloaded"]
        assert unloads
        assert all(e.data["by"] == "memory_budget" for e in unloads)
        assert "least recently used idle model" in unloads[0].data["reason"]
        assert "pinned" not in {e.data["name"] for e in unloads}
        reloads = [e for e in events if e.type == "model.loaded" and e.data.get("by") == "memory_budget"]
        assert {e.data["name"] for e in reloads} == {"a", "b", "c"}

        # the least recently used one goes: after b then c, loading a unloads b
        _call(client, "b")
        _call(client, "c")
        _call(client, "a")
        assert _loaded(_memory(client)) == {"pinned", "c", "a"}
        status = client.get("/v1/admin/models/b").json()
        assert status["versions"][0]["reason"] == "unloaded by the memory budget; a call loads it again"
        assert status["versions"][0]["size_bytes"] == sizes["b"]

        samples = {
            (s.name, s.labels.get("model")): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples
            if s.name.startswith("modelwire_model_memory")
        }
        assert samples[("modelwire_model_memory_budget_bytes", None)] == 10 * MIB
        assert samples[("modelwire_model_memory_bytes", "b")] == 0
        assert samples[("modelwire_model_memory_bytes", "a")] == sizes["a"]
        assert samples[("modelwire_model_memory_used_bytes", None)] == sum(
            sizes[n] for n in ("pinned", "c", "a")
        )


def test_a_model_pinned_at_run_time_is_never_unloaded_over_grpc(server: ThreadedServer) -> None:
    with (
        httpx.Client(base_url=server.http_url, timeout=60) as client,
        grpc.insecure_channel(server.grpc_url.split("://", 1)[1]) as channel,
    ):
        stub = admin_pb2_grpc.AdminStub(channel)
        _call(client, "b")
        state = stub.SetPinned(admin_pb2.PinRequest(name="b", pinned=True), timeout=30)
        assert state.pinned
        for name in ["a", "c", "a", "c"]:
            _call(client, name)
            memory = stub.Memory(admin_pb2.MemoryRequest(), timeout=30)
            loaded = {m.name for m in memory.models if m.state == "ready"}
            assert {"pinned", "b", name} <= loaded
            assert memory.budget_bytes == 10 * MIB
            assert memory.used_bytes <= 10 * MIB
            assert {m.name: m.pinned for m in memory.models}["b"]
        assert client.get("/v1/admin/models/b").json()["pinned"] is True
        stub.SetPinned(admin_pb2.PinRequest(name="b", pinned=False), timeout=30)
        _call(client, "a")
        _call(client, "c")  # b is the least recently used now, and unpinned: it goes
        assert "b" not in _loaded(_memory(client))


def test_a_call_that_cannot_wait_for_the_reload_gets_503_with_retry_after(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        for name in ["a", "b", "c"]:
            _call(client, name)  # slow was loaded at the start: by now the budget has unloaded it
        assert "slow" not in _loaded(_memory(client))
        GATE.clear()  # its next load waits
        try:
            body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
            body["parameters"] = {"timeout": 200_000}  # µs: this call waits 0.2 s at most
            answer = client.post("/v2/models/slow/infer", json=body)
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert "being loaded again" in answer.json()["error"]
            _call(client, "a")  # the other models answer meanwhile
            # gRPC: UNAVAILABLE with RetryInfo
            with grpc.insecure_channel(server.grpc_url.split("://", 1)[1]) as channel:
                stub = predictor_pb2_grpc.PredictorStub(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Predict(predictor_pb2.Input(model="slow", text="x"), timeout=60)
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
                assert rich_details(refused.value)["RetryInfo"].retry_delay.seconds == 1
            # WebSocket: an error message saying when to retry; the connection stays open
            with connect(server.http_url.replace("http", "ws", 1) + "/v1/ws") as ws:
                ws.send(json.dumps({"id": 1, "op": "predict", "model": "slow", "instance": "x"}))
                error = json.loads(ws.recv(timeout=60))
                assert error["op"] == "error"
                assert error["error"]["code"] == "UNAVAILABLE"
                assert error["error"]["retry_after_s"] == 1.0
                ws.send(json.dumps({"id": 2, "op": "predict", "model": "a", "instance": "x"}))
                assert json.loads(ws.recv(timeout=60))["model"] == "a"
        finally:
            GATE.set()
        _call(client, "slow")  # the load went on: it is ready, or this call waits for it


def _sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_an_sse_stream_waits_for_the_reload_before_it_starts(
    server: ThreadedServer, events: list[Event]
) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        for name in ["a", "b", "c"]:
            _call(client, name)  # a is the least recently used: the budget unloaded it for c
        assert not {"a", "slow"} & _loaded(_memory(client))
        before = len(events)
        answer = client.post("/v1/models/a/predict/stream", json={"instances": ["x", "y"]})
        assert answer.status_code == 200, answer.text  # loaded again while the request waited
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["model-version"] == "1"
        streamed = _sse_events(answer.text)
        assert sorted(data["index"] for kind, data in streamed if kind == "prediction") == [0, 1]
        assert {data["model"] for kind, data in streamed if kind == "prediction"} == {"a"}
        assert streamed[-1] == ("done", {"count": 2, "errors": 0})
        budget_loads = ("model.loaded", "memory_budget")
        reloads = [e for e in events[before:] if (e.type, e.data.get("by")) == budget_loads]
        assert [e.data["name"] for e in reloads] == ["a"]
        assert "a" in _loaded(_memory(client))

        GATE.clear()  # the next load of slow waits
        try:  # a load that does not finish within the deadline: 503 + Retry-After before the stream
            refused = client.post(
                "/v1/models/slow/versions/1/predict/stream",
                json={"texts": ["x"]},
                headers={"Request-Timeout": "0.2"},
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["content-type"] == "application/json"
            assert refused.json()["error"]["code"] == "UNAVAILABLE"
            assert "being loaded again" in refused.json()["error"]["message"]
            _call(client, "b")  # the other models answer meanwhile
        finally:
            GATE.set()
        answer = client.post("/v1/models/slow/predict/stream", json={"texts": ["x"]})
        assert answer.status_code == 200, answer.text  # the load went on: ready, or this waits for it
        assert _sse_events(answer.text)[0] == ("prediction", {"model": "slow", "index": 0})

        for name in ["b", "c"]:  # loaded beside the pinned model (a and slow unloaded), then pinned
            _call(client, name)
            assert client.put(f"/v1/admin/models/{name}/pin", json={"pinned": True}).status_code == 200
        try:  # no room can be made for a: 503 + Retry-After, never a 500
            refused = client.post("/v1/models/a/predict/stream", json={"texts": ["x"]})
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "cannot make room" in refused.json()["error"]["message"]
        finally:
            for name in ["b", "c"]:
                client.put(f"/v1/admin/models/{name}/pin", json={"pinned": False})
        answer = client.post("/v1/models/a/predict/stream", json={"texts": ["x"]})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("wire", ["rest", "grpc"])
def test_the_client_and_the_cli_show_sizes_and_pins(server: ThreadedServer, wire: str) -> None:
    url = server.http_url if wire == "rest" else server.grpc_url
    with httpx.Client(base_url=server.http_url, timeout=60) as rest:
        _call(rest, "c")  # loaded (again) by a call
    with Client(url) as client:
        state = client.pin_model("c")
        assert state["pinned"] is True
        assert state["versions"][0]["size_bytes"] >= 4 * MIB
        memory = client.memory()
        assert memory["budget_bytes"] == 10 * MIB
        rows = {m["name"]: m for m in memory["models"]}
        assert rows["c"]["pinned"] is True
        assert rows["c"]["state"] == "ready"
        assert rows["c"]["last_used"] is None or rows["c"]["last_used"] > 0
        runner = CliRunner()
        status = runner.invoke(app, ["models", "status", "c", "--url", url])
        assert status.exit_code == 0, status.output
        assert "c: default version 1 (pinned: never unloaded by the memory budget)" in status.stdout
        assert "version 1: ready, 4.0 MiB" in status.stdout
        shown = runner.invoke(app, ["models", "memory", "--url", url])
        assert shown.exit_code == 0, shown.output
        assert "memory budget: " in shown.stdout
        assert "used of 10.0 MiB" in shown.stdout
        assert "  c version 1: ready, 4.0 MiB, pinned" in shown.stdout
        unpinned = runner.invoke(app, ["models", "pin", "c", "--off", "--url", url, "--json"])
        assert unpinned.exit_code == 0, unpinned.output
        assert json.loads(unpinned.stdout)["pinned"] is False
