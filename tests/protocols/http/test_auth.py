"""``SecurityMiddleware`` in process: the principal it sets, what it strips, how it refuses without the
ASGI WebSocket denial extension, and the ws-token route with authentication off."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwire.app.builder import build_services
from modelwire.protocols.http.app import create_app
from modelwire.protocols.http.auth import SecurityMiddleware
from modelwire.security.policy import SecurityPolicy
from modelwire.security.principal import Principal, Scope, current_principal
from modelwire.security.tokens import WsTokens
from modelwire.settings import Settings
from tests.models import EchoModel

Message = MutableMapping[str, Any]


class Recorder:
    """A downstream app that records the scope and the principal it ran as, and answers 200."""

    def __init__(self) -> None:
        self.scope: MutableMapping[str, Any] | None = None
        self.principal: Principal | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.principal = current_principal()
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})


async def run(app: Any, scope: dict[str, Any], first: Message | None = None) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return first or {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def ws_scope(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "websocket", "path": path, "headers": [], "client": ("10.0.0.5", 1234)} | extra


async def test_auth_off_runs_as_the_peer_and_strips_the_token_entry(tmp_path: Path) -> None:
    downstream = Recorder()
    app = SecurityMiddleware(downstream, SecurityPolicy.build(Settings(data_dir=tmp_path)))
    offered = ["modelwire.v1.json", "modelwire.token.abc"]
    await run(app, ws_scope("/v1/ws", subprotocols=offered), {"type": "websocket.connect"})
    assert downstream.scope is not None
    assert downstream.scope["subprotocols"] == ["modelwire.v1.json"]
    assert downstream.principal is not None
    assert downstream.principal.id == "ip:10.0.0.5"
    assert current_principal().id == "anonymous"  # reset after the call


async def test_a_websocket_refusal_without_the_denial_extension_is_a_close(tmp_path: Path) -> None:
    downstream = Recorder()
    app = SecurityMiddleware(
        downstream, SecurityPolicy.build(Settings(data_dir=tmp_path, auth={"mode": "on"}))
    )
    sent = await run(app, ws_scope("/v1/ws"), {"type": "websocket.connect"})
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert downstream.scope is None
    sent = await run(
        app, ws_scope("/v1/ws", extensions={"websocket.http.response": {}}), {"type": "websocket.connect"}
    )
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b'Bearer realm="modelwire"') in sent[0]["headers"]


async def test_counted_responses_carry_rate_limit_headers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, auth={"mode": "on"})
    policy = SecurityPolicy.build(settings)
    key, _ = policy.keys.create({Scope.PREDICT})
    downstream = Recorder()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/echo/predict",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 1),
    }
    start = (await run(SecurityMiddleware(downstream, policy), scope))[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"ratelimit-limit"] == b"2000"
    assert headers[b"ratelimit-remaining"] == b"1999"
    assert downstream.principal is not None
    assert downstream.principal.id.startswith("key:")


async def test_no_ws_token_is_issued_with_authentication_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models=[{"name": "echo", "source": "tests.models:EchoModel"}])
    app = create_app(build_services(settings, models=[EchoModel()]))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 9))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/auth/ws-token")
    assert response.status_code == 409
    assert "without a token" in response.json()["error"]["message"]
    with pytest.raises(ValueError, match="authenticated"):
        WsTokens(tmp_path / "k", 60).issue(Principal("ip:1", "anonymous"))
