"""The HTTPS ASGI pieces in process: HSTS/Alt-Svc on every response, the redirect app's Location."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelwire.protocols.http.https import RedirectApp, TransportHeadersMiddleware


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"strict-transport-security", b"max-age=1")]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": b"nope"})


async def test_every_response_gets_hsts_and_alt_svc_once() -> None:
    app = TransportHeadersMiddleware(_app, hsts_max_age_s=600, h3_port=8443)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="https://testserver") as http:
        response = await http.get("/missing")
    assert response.status_code == 404  # error pages too
    assert response.headers.get_list("strict-transport-security") == ["max-age=600"]
    assert response.headers["alt-svc"] == 'h3=":8443"; ma=86400'


async def test_no_alt_svc_without_http3() -> None:
    app = TransportHeadersMiddleware(_app, hsts_max_age_s=600)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="https://testserver") as http:
        response = await http.get("/")
    assert "alt-svc" not in response.headers


@pytest.mark.parametrize(
    ("host", "https_port", "location"),
    [
        ("example.com:8080", 8443, "https://example.com:8443/a/b?q=1%202"),
        ("example.com", 443, "https://example.com/a/b?q=1%202"),
        ("[::1]:8080", 8443, "https://[::1]:8443/a/b?q=1%202"),
    ],
)
async def test_the_redirect_keeps_host_path_and_query(host: str, https_port: int, location: str) -> None:
    transport = httpx.ASGITransport(RedirectApp(https_port))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.post("http://x/a/b?q=1%202", headers={"host": host}, content=b"{}")
    assert response.status_code == 308
    assert response.headers["location"] == location
