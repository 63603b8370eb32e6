"""The HTTPS ASGI pieces in process: HSTS/Alt-Svc on every response, the redirect app's Location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwire.protocols.http.https import RedirectApp, TransportHeadersMiddleware, public_host
from modelwire.settings import Settings, TLSSettings


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
    ("public_host", "https_port", "location"),
    [
        ("example.com", 8443, "https://example.com:8443/a/b?q=1%202"),
        ("example.com", 443, "https://example.com/a/b?q=1%202"),
        ("::1", 8443, "https://[::1]:8443/a/b?q=1%202"),
    ],
)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "[::2]:80"])
async def test_the_redirect_keeps_path_and_query_on_the_public_host(
    public_host: str, https_port: int, location: str, host: str
) -> None:
    """The target host is the configured one; the request's ``Host`` (the client's word) is ignored."""
    transport = httpx.ASGITransport(RedirectApp(https_port, public_host))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.post("http://x/a/b?q=1%202", headers={"host": host}, content=b"{}")
    assert response.status_code == 308
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("bind", "configured", "expected"),
    [
        ("127.0.0.1", None, "localhost"),
        ("0.0.0.0", None, "localhost"),
        ("::", None, "localhost"),
        ("::1", None, "::1"),
        ("10.1.2.3", None, "10.1.2.3"),
        ("0.0.0.0", "Models.Example.COM", "models.example.com"),
        ("0.0.0.0", "[2001:db8::1]", "2001:db8::1"),
    ],
)
def test_the_public_host_is_configured_or_the_bind_host(
    bind: str, configured: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELWIRE_TLS__CERT", "c.pem")
    monkeypatch.setenv("MODELWIRE_TLS__KEY", "k.pem")
    if configured is not None:
        monkeypatch.setenv("MODELWIRE_TLS__PUBLIC_HOST", configured)
    settings = Settings(host=bind)
    assert settings.tls.cert == Path("c.pem")
    assert public_host(settings) == expected


@pytest.mark.parametrize(
    "value", ["https://a.example", "a.example:8443", "a.example/x", "a b", "", "-a.example"]
)
def test_a_public_host_that_is_not_a_host_name_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        TLSSettings(public_host=value)
