"""OpenTelemetry export, end to end: real modelwire processes send their spans to a real OTLP receiver
started here (``otlp_receivers.py``), over OTLP/gRPC and OTLP/HTTP; with export off, nothing is sent and
the SDK is never imported."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from websockets.sync.client import connect

from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from tests.gateway.conftest import GATEWAY_READY, ROOT, Processes, service_port, wait_ready
from tests.observability.otlp_receivers import GrpcReceiver, HttpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
UNSET, ERROR = 0, 2  # opentelemetry.proto.trace.v1.Status.StatusCode
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}  # the batch processor's delay, ms: spans arrive promptly


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.close()


def in_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def named(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{len(found)} spans {name!r} of {service}: {spans}"
    return found[0]


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalescing", "one-call-per-request"])
def test_one_request_through_a_gateway_is_one_trace_across_both_services(
    processes: Processes, grpc_receiver: GrpcReceiver, coalesce: bool
) -> None:
    """The hop is ``BatchPredictor/PredictBatch`` when the gateway coalesces (its default; a lone request is a
    batch of one, sent in its own trace) and ``Predictor/Predict`` when it does not."""
    rpc = "modelwire.v1.BatchPredictor/PredictBatch" if coalesce else "modelwire.v1.Predictor/Predict"
    otlp = ("--otlp-endpoint", grpc_receiver.endpoint)
    models = [
        {"name": "pid", "source": "tests.gateway.models:PidModel"},
        {"name": "raising", "source": "tests.gateway.models:RaisingModel"},
    ]
    service = processes.start(
        "service",
        "model-service",
        "--host",
        "127.0.0.1",
        "--grpc-port",
        "0",
        "--data-dir",
        str(processes.root / "service"),
        *otlp,
        env={"MODELWIRE_MODELS": json.dumps(models), **FAST_EXPORT},
    )
    gateway_env = {**FAST_EXPORT, "MODELWIRE_GATEWAY__COALESCE": "true" if coalesce else "false"}
    gateway = processes.gateway("gateway", [service_port(service)], *otlp, env=gateway_env)
    url = f"http://127.0.0.1:{gateway.wait_for(GATEWAY_READY).group(1)}"
    wait_ready(url)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{caller_span}-01", "x-request-id": "otel-1"}
    reply = httpx.post(f"{url}/v1/models/pid/predict", json={"text": "hi"}, headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "otel-1"

    # Each process ends its SERVER span last: once both are in, so is every span of the request.
    last = {
        ("modelwire-gateway", "POST /v1/models/{name}/predict"),
        ("modelwire-model-service", rpc),
    }

    def complete(spans: list[ReceivedSpan]) -> bool:
        return last <= {(s.service, s.name) for s in in_trace(spans, trace_id)}

    spans = in_trace(grpc_receiver.wait_for(complete, "the request's spans from both services"), trace_id)
    gateway_server = named(spans, "modelwire-gateway", "POST /v1/models/{name}/predict")
    hop = named(spans, "modelwire-gateway", rpc)
    remote_model = named(spans, "modelwire-gateway", "model predict pid")
    service_server = named(spans, "modelwire-model-service", rpc)
    wait = named(spans, "modelwire-model-service", "batch wait")
    model = named(spans, "modelwire-model-service", "model predict pid")
    # The caller's span -> the gateway's request -> its model call -> the hop -> the model service's
    # request -> the batch wait and the model call: one trace, each span the child of the one before.
    assert gateway_server.parent_span_id == caller_span
    assert (gateway_server.kind, hop.kind, service_server.kind) == (SERVER, CLIENT, SERVER)
    assert remote_model.parent_span_id == gateway_server.span_id
    assert hop.parent_span_id == remote_model.span_id
    assert service_server.parent_span_id == hop.span_id
    assert wait.parent_span_id == service_server.span_id
    assert model.parent_span_id == service_server.span_id
    assert gateway_server.attributes["http.route"] == "/v1/models/{name}/predict"
    assert gateway_server.attributes["http.response.status_code"] == 200
    assert gateway_server.attributes["modelwire.request_id"] == "otel-1"
    assert service_server.attributes["modelwire.request_id"] == "otel-1"  # x-request-id crossed the hop
    assert service_server.attributes["rpc.grpc.status_code"] == 0
    assert model.attributes["modelwire.batch.size"] == 1
    if coalesce:  # the item's own span, under its caller's hop, names its request
        item = named(spans, "modelwire-model-service", f"{rpc} item")
        assert item.parent_span_id == hop.span_id
        assert item.attributes["modelwire.request_id"] == "otel-1"
    # A fault of the server (a model that raises: 500) marks the spans as errors; a caller's error does not.
    outcomes = {}
    for code in ("INTERNAL", "INVALID_ARGUMENT"):
        trace = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}
        body = {"text": code}
        reply = httpx.post(f"{url}/v1/models/raising/predict", json=body, headers=headers, timeout=10)
        outcomes[code] = (trace, reply.status_code)
    assert [status for _, status in outcomes.values()] == [500, 400]

    def both(spans: list[ReceivedSpan]) -> bool:
        return all(last <= {(s.service, s.name) for s in in_trace(spans, t)} for t, _ in outcomes.values())

    spans = grpc_receiver.wait_for(both, "the failed requests' spans")
    for code, (trace, _) in outcomes.items():
        failed = in_trace(spans, trace)
        server = named(failed, "modelwire-gateway", "POST /v1/models/{name}/predict")
        model = named(failed, "modelwire-model-service", "model predict raising")
        expected = ERROR if code == "INTERNAL" else UNSET
        assert (server.status_code, model.status_code) == (expected, expected), code
        assert model.attributes["modelwire.error.code"] == code
    assert gateway.stop() == 0  # stopping flushes: both exit cleanly on SIGTERM
    assert service.stop() == 0


def test_otlp_http_spans_of_every_wire_of_a_serve_process(
    processes: Processes, http_receiver: HttpReceiver
) -> None:
    models = [{"name": "echo", "source": "tests.models:EchoModel"}]
    server = processes.start(
        "serve",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--data-dir",
        str(processes.root / "serve"),
        "--otlp-endpoint",
        http_receiver.endpoint,
        "--otlp-protocol",
        "http/protobuf",
        env={"MODELWIRE_MODELS": json.dumps(models), "OTEL_SERVICE_NAME": "reviews", **FAST_EXPORT},
    )
    ready = server.wait_for(GATEWAY_READY)
    url, grpc_port = f"http://127.0.0.1:{ready.group(1)}", int(ready.group(2))
    traces = {wire: secrets.token_hex(16) for wire in ("rest", "ws", "sse", "grpc", "probe")}

    def parent(wire: str) -> dict[str, str]:
        return {"traceparent": f"00-{traces[wire]}-{secrets.token_hex(8)}-01"}

    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v2/health/ready", headers=parent("probe")).status_code == 200
        assert client.post("/v1/models/echo/predict", json={"text": "a"}, headers=parent("rest")).is_success
        stream = client.post(
            "/v1/models/echo/predict/stream", json={"texts": ["b", "c"]}, headers=parent("sse")
        )
        assert stream.status_code == 200
        assert "event: done" in stream.text
        job = client.post("/v1/jobs", json={"model": "echo", "inputs": ["d", "e", "f"]})
        assert job.status_code == 202, job.text
    ws_url = url.replace("http", "ws") + "/v1/models/echo/ws"
    with connect(ws_url, additional_headers=parent("ws")) as socket:
        socket.send(json.dumps({"op": "predict", "id": 1, "text": "g"}))
        assert json.loads(socket.recv(10)) == {"id": 1, "echo": "g", "length": 1, "version": "1"}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        metadata = tuple(parent("grpc").items())
        stub = pb_grpc.PredictorStub(channel)
        stub.Predict(pb.Input(text="h", model="echo"), metadata=metadata, timeout=10)
        with pytest.raises(grpc.RpcError) as unknown:  # aborted NOT_FOUND: the caller's error, not a fault
            stub.Predict(pb.Input(text="i", model="nope"), metadata=(("x-request-id", "nope-1"),), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {(s.trace_id, s.name) for s in spans}
        wires = {
            (traces["rest"], "model predict echo"),
            (traces["sse"], "POST /v1/models/{name}/predict/stream"),
            (traces["ws"], "model predict echo"),
            (traces["grpc"], "model predict echo"),
        }
        job = any(s.name == "job batch" for s in spans)
        return (
            wires <= names
            and job
            and any(s.attributes.get("modelwire.request_id") == "nope-1" for s in spans)
        )

    spans = http_receiver.wait_for(complete, "a span of every wire")
    assert set(http_receiver.paths) == {"/v1/traces"}  # the signal's path added to the base URL
    assert {s.service for s in spans} == {"reviews"}  # OTEL_SERVICE_NAME wins over the role's name
    assert (
        in_trace(spans, traces["probe"]) == []
    )  # health probes make no span (exported in order: it'd be in)
    rest = in_trace(spans, traces["rest"])
    assert {s.name for s in rest} == {"POST /v1/models/{name}/predict", "batch wait", "model predict echo"}
    sse = in_trace(spans, traces["sse"])
    sse_server = named(sse, "reviews", "POST /v1/models/{name}/predict/stream")
    messages = [s for s in sse if s.name == "predict message"]
    assert len(messages) == 2  # one span per streamed item, children of the stream's
    assert {m.parent_span_id for m in messages} == {sse_server.span_id}
    ws = in_trace(spans, traces["ws"])
    (message,) = [s for s in ws if s.name == "predict message"]
    assert message.attributes["modelwire.protocol"] == "ws"
    assert [s.name for s in ws if s.parent_span_id == message.span_id] != []
    grpc_server = named(in_trace(spans, traces["grpc"]), "reviews", "modelwire.v1.Predictor/Predict")
    assert (grpc_server.kind, grpc_server.status_code) == (SERVER, UNSET)
    (refused,) = [s for s in spans if s.attributes.get("modelwire.request_id") == "nope-1"]
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert refused.status_code == UNSET  # a 4xx-like answer is not the server's fault
    job_batch = next(s for s in spans if s.name == "job batch")
    assert job_batch.attributes["modelwire.job.rows"] == 3
    job_spans = in_trace(spans, job_batch.trace_id)
    assert any(s.name == "model predict echo" for s in job_spans)  # the job's model call, in its trace
    assert server.stop() == 0


OFF_SCRIPT = """
import asyncio, json, sys
import httpx
from modelwire.app.lifecycle import Server
from modelwire.app.tracing import traced
from modelwire.settings import Settings

settings = Settings(
    http_port=0, grpc_port=0, data_dir=sys.argv[1],
    models=[{"name": "echo", "source": "tests.models:EchoModel"}],
)

async def main():
    server = Server(settings)
    await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        reply = await client.post("/v1/models/echo/predict", json={"text": "x"})
        assert reply.status_code == 200, reply.text
    await server.stop()

with traced(settings, "modelwire"):
    asyncio.run(main())
print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry"))))
"""


@pytest.mark.parametrize("env", [{}, {"OTEL_SDK_DISABLED": "true"}], ids=["default", "sdk-disabled"])
def test_with_export_off_nothing_is_sent_and_the_sdk_is_not_loaded(
    grpc_receiver: GrpcReceiver, tmp_path: Path, env: dict[str, str]
) -> None:
    # Even with the standard endpoint variable pointing at a live receiver, OTEL_SDK_DISABLED wins.
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint, **env} if env else {}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWIRE_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env={**clean, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert not [name for name in loaded if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
    assert grpc_receiver.requests == 0  # the process has exited: whatever it would have sent, it has


def test_spans_still_buffered_are_exported_when_the_process_stops(
    processes: Processes, grpc_receiver: GrpcReceiver
) -> None:
    models = [{"name": "echo", "source": "tests.models:EchoModel"}]
    server = processes.start(
        "serve",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--data-dir",
        str(processes.root / "serve"),
        env={
            "MODELWIRE_MODELS": json.dumps(models),
            "MODELWIRE_OBSERVABILITY__OTLP_ENDPOINT": grpc_receiver.endpoint,  # the environment twin
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves on the timer during this test
        },
    )
    url = f"http://127.0.0.1:{server.wait_for(GATEWAY_READY).group(1)}"
    reply = httpx.post(f"{url}/v1/models/echo/predict", json={"text": "bye"}, timeout=10)
    assert reply.status_code == 200
    assert grpc_receiver.requests == 0
    assert server.stop() == 0  # SIGTERM: drain, then the tracer provider's shutdown flushes
    spans = grpc_receiver.wait_for(lambda spans: len(spans) >= 3, "the flushed spans", timeout=5)
    assert {s.service for s in spans} == {"modelwire"}  # the role's name: no OTEL_SERVICE_NAME here
    assert "POST /v1/models/{name}/predict" in {s.name for s in spans}
