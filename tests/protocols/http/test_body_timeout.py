"""``limits.body_read_timeout_s`` on a real server, with raw sockets: a trickling body gets 408 and the
connection closed; an upload cut off that way stores nothing; other clients are served meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from modelwire.settings import LimitsSettings, Settings
from tests.serving import ThreadedServer


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[ThreadedServer]:
    # 0.5 s for any body, and as long again per 64 KiB received
    settings = make_settings(limits=LimitsSettings(body_read_timeout_s=0.5, max_body_bytes=64 * 1024))
    running = ThreadedServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(60)  # a guard against hanging the test, far above the timeout
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def response_of(raw: bytes) -> tuple[str, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, msgspec.json.decode(body)


def port_of(server: ThreadedServer) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("head", "sent"),
    [
        (
            b"POST /v1/models/sentiment/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n",
            b'{"text": "it never',
        ),
        (
            b"POST /v1/models/sentiment/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b'8\r\n{"text":\r\n',
        ),
    ],
    ids=["content-length", "chunked"],
)
def test_a_trickling_body_gets_408_and_the_connection_closed(
    server: ThreadedServer, head: bytes, sent: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", port_of(server))) as slow:
        slow.sendall(head + sent)  # and never the rest
        assert httpx.get(server.http_url + "/v2/health/live").status_code == 200  # others are served
        status, headers, body = response_of(read_until_closed(slow))
    assert status == "HTTP/1.1 408 Request Timeout"
    assert headers["connection"] == "close"
    assert "x-request-id" in headers
    assert body["error"]["code"] == "DEADLINE_EXCEEDED"
    assert "limits.body_read_timeout_s" in body["error"]["message"]


def test_a_trickling_job_upload_is_cut_off_and_nothing_is_stored(server: ThreadedServer) -> None:
    with socket.create_connection(("127.0.0.1", port_of(server))) as slow:
        slow.sendall(
            b"POST /v1/jobs?model=sentiment HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n8\r\n"great"\n\r\n'
        )
        status, _, body = response_of(read_until_closed(slow))
    assert status == "HTTP/1.1 408 Request Timeout"
    assert body["error"]["code"] == "DEADLINE_EXCEEDED"
    assert httpx.get(server.http_url + "/v1/jobs").json()["jobs"] == []


def test_a_body_that_arrives_in_time_is_served(server: ThreadedServer) -> None:
    def pieces() -> Iterator[bytes]:  # several chunks, each well inside the time
        yield b'{"texts": ['
        yield b'"great", "awful"'
        yield b"]}"

    response = httpx.post(
        server.http_url + "/v1/models/sentiment/predict",
        content=pieces(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_a_trickling_http2_stream_gets_408(server: ThreadedServer) -> None:
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":path", "/v1/models/sentiment/predict"),
                (":scheme", "http"),
                (":authority", "x"),
                ("content-type", "application/json"),
                ("content-length", "100"),
            ],
        )
        conn.send_data(stream, b'{"text": "it never')  # and never the rest, nor END_STREAM
        sock.sendall(conn.data_to_send())
        sock.settimeout(60)  # a guard against hanging the test, far above the timeout
        status, body = None, b""
        while True:
            data = sock.recv(65536)
            assert data, "the connection closed before the stream ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    break
            else:
                sock.sendall(conn.data_to_send())
                continue
            break
    assert status == b"408"
    assert msgspec.json.decode(body)["error"]["code"] == "DEADLINE_EXCEEDED"
