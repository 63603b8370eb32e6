"""Hard input limits on a real server with the default limits, on every route that takes a body: 413 past
``limits.max_body_bytes`` (and the refused body read, so HTTP/2 and streaming clients see the 413, not a
reset), 415 for a foreign media type, 400 past ``limits.max_json_depth`` (REST, job specs, WebSocket)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from modelwire.settings import LimitsSettings
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer

LIMIT = LimitsSettings().max_body_bytes
DEPTH = LimitsSettings().max_json_depth


def nested(depth: int) -> Any:
    """A JSON value ``depth`` containers deep (a list counts one level): ``[[...["x"]...]]``."""
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int) -> bytes:
    """The same as JSON text, built without recursion (so it can be deeper than msgspec can encode)."""
    return b"[" * depth + b'"x"' + b"]" * depth


# Every route that reads a body, and the JSON body it takes with ``X`` (bytes) as a free-form value.
BODIES: dict[str, Callable[[bytes], bytes]] = {
    "/predict": lambda x: b'{"instances": [' + x + b"]}",
    "/v1/models/echo/predict": lambda x: b'{"instances": [' + x + b"]}",
    "/v1/models/echo/versions/1/predict": lambda x: b'{"instance": ' + x + b"}",
    "/v2/models/echo/infer": lambda x: (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], '
        b'"parameters": {"x": ' + x + b"}}"
    ),
    "/v2/models/echo/versions/1/infer": lambda x: (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], '
        b'"parameters": {"x": ' + x + b"}}"
    ),
    "/v1/models/echo/predict/stream": lambda x: b'{"instances": [' + x + b"]}",
    "/v1/models/echo/versions/1/predict/stream": lambda x: b'{"instances": [' + x + b"]}",
    "/v1/jobs": lambda x: b'{"model": "echo", "inputs": ["a"], "metadata": {"x": ' + x + b"}}",
    "/v1/models/sentiment/train": lambda x: (
        b'{"texts": ["good", "bad"], "labels": [1, 0], "metadata": {"x": ' + x + b"}}"
    ),
}
ROUTES = sorted(BODIES)


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(EchoModel("echo"), trained=False)


def too_big(route: str) -> bytes:
    """A valid body of exactly twice the limit."""
    empty = BODIES[route](b'""')
    return BODIES[route](b'"' + b"a" * (2 * LIMIT - len(empty)) + b'"')


def error_code(response: httpx.Response) -> str:
    error = response.json()["error"]
    return str(error if isinstance(error, str) else error["code"])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", ROUTES)
def test_a_body_twice_the_limit_is_413(server: ThreadedServer, route: str, chunked: bool) -> None:
    body = too_big(route)
    assert len(body) == 2 * LIMIT
    content: Any = body
    if chunked:
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    response = httpx.post(
        server.http_url + route, content=content, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413, response.text
    assert str(LIMIT) in response.text


def curl_h2(url: str, body_file: Path, content_type: str = "application/json") -> tuple[str, str]:
    """POST over HTTP/2 (prior knowledge, as gRPC-era clients and proxies speak it): (status, stderr)."""
    done = subprocess.run(
        [
            *("curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"),
            *("-H", f"content-type: {content_type}", "--data-binary", f"@{body_file}", url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout, done.stderr


@pytest.mark.parametrize("route", ROUTES)
def test_an_http2_client_sending_twice_the_limit_reads_the_413(
    server: ThreadedServer, route: str, tmp_path: Path
) -> None:
    # Before the refused body was read on, curl saw "Stream error in the HTTP/2 framing layer" here.
    body = tmp_path / "body.json"
    body.write_bytes(too_big(route))
    assert curl_h2(server.http_url + route, body) == ("413", "")


def test_an_upload_refused_before_it_is_read_still_gets_its_answer(
    server: ThreadedServer, tmp_path: Path
) -> None:
    upload = tmp_path / "rows.ndjson"
    upload.write_bytes(b'"a row of text"\n' * (2 * LIMIT // 16))
    url = server.http_url + "/v1/jobs?model=no-such-model"
    assert curl_h2(url, upload, "application/x-ndjson") == ("404", "")


@pytest.mark.parametrize("route", ROUTES)
def test_a_foreign_media_type_is_415(server: ThreadedServer, route: str) -> None:
    response = httpx.post(
        server.http_url + route,
        params={"model": "echo"} if route == "/v1/jobs" else None,  # an upload names its model there
        content=b"hello",
        headers={"content-type": "text/plain"},
        timeout=30,
    )
    assert response.status_code == 415, response.text
    assert error_code(response) in ("UNSUPPORTED_MEDIA_TYPE", response.json()["error"])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [DEPTH + 1, 5000])
def test_json_deeper_than_the_limit_is_400_naming_it(server: ThreadedServer, route: str, depth: int) -> None:
    response = httpx.post(
        server.http_url + route,
        content=BODIES[route](deep_text(depth)),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "limits.max_json_depth" in response.text


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@pytest.mark.parametrize("route", ROUTES)
def test_json_as_deep_as_the_limit_passes_the_depth_check(server: ThreadedServer, route: str) -> None:
    inner = next(d for d in range(DEPTH, 0, -1) if depth_of(json.loads(BODIES[route](deep_text(d)))) == DEPTH)
    response = httpx.post(
        server.http_url + route,
        content=BODIES[route](deep_text(inner)),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert "max_json_depth" not in response.text


def test_a_deep_upload_query_metadata_is_400(server: ThreadedServer) -> None:
    response = httpx.post(
        server.http_url + "/v1/jobs",
        params={"model": "echo", "metadata": json.dumps({"x": nested(DEPTH)})},
        content=b'"a"\n',
        headers={"content-type": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "limits.max_json_depth" in response.text


@pytest.mark.parametrize("binary", [False, True], ids=["json-text", "msgpack-binary"])
async def test_a_deep_websocket_message_is_an_error_reply_not_a_close(
    server: ThreadedServer, binary: bool
) -> None:
    url = server.http_url.replace("http://", "ws://") + "/v1/ws"
    subprotocols: Any = ["modelwire.v1.msgpack"] if binary else None
    encode: Callable[[Any], Any] = msgspec.msgpack.encode if binary else msgspec.json.encode

    async with connect(url, subprotocols=subprotocols) as ws:

        async def ask(frame: Any) -> dict[str, Any]:
            await ws.send(frame if binary or not isinstance(frame, bytes) else frame.decode())
            reply = await ws.recv()
            return dict(msgspec.msgpack.decode(reply) if binary else json.loads(reply))

        deep = {"id": 1, "op": "predict", "model": "echo", "instance": nested(DEPTH)}
        for frame in (encode(deep), b'{"id": 2, "op": "predict", "text": ' + deep_text(5000) + b"}"):
            if binary and frame[:1] == b"{":
                frame = b"\x91" * 5000 + b"\xc0"  # msgpack nested 5000 deep
            reply = await ask(frame)
            assert reply["op"] == "error", reply
            assert reply["error"]["code"] == "INVALID_ARGUMENT"
            assert "limits.max_json_depth" in reply["error"]["message"]
        reply = await ask(encode({"id": 3, "op": "predict", "model": "echo", "text": "still here"}))
        assert reply["id"] == 3
        assert reply["echo"] == "still here", reply
