"""A real server on 127.0.0.1:0 where the wire matters: HTTP/2, tritonclient, disconnects, limits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import numpy as np
import pytest

from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.settings import LimitsSettings, Settings
from tests.models import SlowModel


@pytest.fixture
async def live(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Server]:
    settings = make_settings(limits=LimitsSettings(max_body_bytes=256 * 1024, shutdown_grace_s=5))
    server = Server(settings, services=make_services(SlowModel("slow", delay_s=1.0), settings=settings))
    await server.start()
    yield server
    await server.stop()


def url(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


async def test_http1_and_http2_prior_knowledge(live: Server) -> None:
    async with httpx.AsyncClient(base_url=url(live)) as h1:
        response = await h1.post("/predict", json={"text": "I love this product"})
        assert response.http_version == "HTTP/1.1"
        assert response.json()["sentiment"] == "positive"
    async with httpx.AsyncClient(base_url=url(live), http1=False, http2=True) as h2:
        responses = await asyncio.gather(
            *(h2.post("/predict", json={"text": f"great {i}"}) for i in range(20))
        )
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert all(r.status_code == 200 for r in responses)


async def test_body_over_the_limit_is_413_on_the_wire(live: Server) -> None:
    async with httpx.AsyncClient(base_url=url(live)) as client:
        response = await client.post(
            "/predict",
            content=b'{"text": "' + b"a" * 300_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert (await client.post("/predict", json={"text": "fine"})).status_code == 200


async def test_client_disconnect_mid_request_cancels_the_work(live: Server) -> None:
    body = b'{"text": "hang up on me"}'
    _reader, writer = await asyncio.open_connection("127.0.0.1", live.http_port)
    writer.write(
        b"POST /v1/models/slow/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    assert live.services is not None
    metrics = live.services.metrics
    for _ in range(50):
        await asyncio.sleep(0.05)
        if 'code="CANCELLED",model="slow"' in metrics.render().decode():
            break
    assert 'code="CANCELLED",model="slow",protocol="rest"' in metrics.render().decode()
    assert live.services.dataplane.inflight == 0
    async with httpx.AsyncClient(base_url=url(live)) as client:
        assert (await client.post("/predict", json={"text": "still here"})).status_code == 200


def _triton_http(port: int, binary: bool) -> tuple[list[str], list[float], bool, dict[str, object]]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        live_ok = client.is_server_live() and client.is_server_ready() and client.is_model_ready("sentiment")
        metadata = client.get_model_metadata("sentiment")
        text = httpclient.InferInput("text", [2], "BYTES")
        text.set_data_from_numpy(
            np.array([b"I love this product", b"terrible and boring"], dtype=object), binary_data=binary
        )
        outputs = [
            httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("sentiment", "confidence")
        ]
        result = client.infer("sentiment", [text], outputs=outputs)
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("sentiment").tolist()]
        confidences = result.as_numpy("confidence").tolist()
        return labels, confidences, bool(live_ok), metadata
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
async def test_tritonclient_http(live: Server, binary: bool) -> None:
    labels, confidences, ready, metadata = await asyncio.to_thread(_triton_http, live.http_port, binary)
    assert ready
    assert metadata["name"] == "sentiment"
    assert labels == ["positive", "negative"]
    assert all(0.5 <= c <= 1.0 for c in confidences)


def _triton_default_outputs(port: int) -> list[str]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        text = httpclient.InferInput("text", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[b"I love this product"]], dtype=object))
        result = client.infer("sentiment", [text])  # no outputs named: all come back binary
        return [v.decode() for v in result.as_numpy("sentiment").reshape(-1).tolist()]
    finally:
        client.close()


async def test_tritonclient_http_default_outputs(live: Server) -> None:
    assert await asyncio.to_thread(_triton_default_outputs, live.http_port) == ["positive"]


async def test_port_in_use_fails_fast(make_settings: Callable[..., Settings]) -> None:
    from modelwire.errors import ConfigurationError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(make_settings(http_port=port))
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} is already in use"):
            await server.start()
