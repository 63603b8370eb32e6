"""The inference routes' hot path (``protocols/http/hotpath.py``) answers exactly as the framework path does.

Every request below goes to two apps over the same started services: one built as served (hot path on),
one with ``hot_path=False`` (every route through FastAPI's router). Status, headers and body must be equal
(the request id is sent, so it is echoed identically; an INTERNAL error's random ``error_id`` is masked).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Match, Route

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.http.app import create_app
from modelwire.protocols.http.hotpath import HotPathMiddleware, HotRoute
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import AuthSettings, LimitsSettings, Settings
from tests.models import EchoModel, ErrorModel

JSON = {"Content-Type": "application/json", "X-Request-Id": "contract-1"}

# (method, path, headers, body): every way a hot-route request can end.
CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", "/predict", JSON, b'{"text": "I love this product"}'),
    ("POST", "/predict", JSON, b'{"texts": ["great", "awful"]}'),
    ("POST", "/predict", JSON, b'{"text": "a", "texts": ["b"]}'),
    ("POST", "/predict", JSON, b'{"texts": []}'),
    ("POST", "/predict", JSON, b"{not json"),
    ("POST", "/predict", JSON, b""),
    ("POST", "/predict", JSON, b'{"text": 5}'),
    ("POST", "/predict", JSON, b'{"instance": ' + b"[" * 40 + b"]" * 40 + b"}"),
    ("POST", "/predict", JSON, b'{"text": "' + b"x" * 70_000 + b'"}'),
    ("POST", "/predict", {"Content-Type": "text/plain", "X-Request-Id": "c"}, b'{"text": "hi"}'),
    ("POST", "/predict", {"X-Request-Id": "c"}, b'{"text": "hi"}'),
    ("POST", "/predict", {**JSON, "Request-Timeout": "soon"}, b'{"text": "hi"}'),
    ("POST", "/predict", {**JSON, "Request-Timeout": "30"}, b'{"text": "hi"}'),
    ("POST", "/predict", {**JSON, "Origin": "https://evil.example"}, b'{"text": "hi"}'),
    ("POST", "/predict/", JSON, b'{"text": "hi"}'),
    ("GET", "/predict", {"X-Request-Id": "c"}, b""),
    ("PUT", "/predict", JSON, b'{"text": "hi"}'),
    ("POST", "/v1/models/echo/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/echo/predict", JSON, b'{"texts": ["hello", "bad", "x"]}'),
    ("POST", "/v1/models/echo/predict", JSON, b'{"text": "bad"}'),
    ("POST", "/v1/models/echo/predict", JSON, b'{"text": "' + b"y" * 1001 + b'"}'),
    ("POST", "/v1/models/nope/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/broken/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/echo/versions/1/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/echo/versions/9/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/echo%2Fx/predict", JSON, b'{"text": "hello"}'),
    ("POST", "/v1/models/echo/predict/extra", JSON, b'{"text": "hello"}'),
    (
        "POST",
        "/v2/models/echo/infer",
        JSON,
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}',
    ),
    (
        "POST",
        "/v2/models/echo/versions/1/infer",
        JSON,
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}',
    ),
    ("POST", "/v2/models/echo/infer", JSON, b'{"inputs": 3}'),
    ("POST", "/v2/models/nope/infer", JSON, b'{"inputs": []}'),
    ("POST", "/v2/models/broken/infer", {"X-Request-Id": "c"}, b'{"inputs": []}'),
]


def _normal(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    # the two apps share the services, so one rate-limit bucket: what is left of it differs by one
    counted = ("ratelimit-remaining", "ratelimit-reset")
    headers = sorted(
        (k, "<n>" if k in counted else v) for k, v in response.headers.multi_items() if k != "date"
    )
    try:
        body: Any = response.json()
    except ValueError:
        return response.status_code, headers, response.content
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if isinstance(details, dict) and "error_id" in details:
        details["error_id"] = "<masked>"
        headers = [(k, v) for k, v in headers if k != "content-length"]  # ids differ in length only
    return response.status_code, headers, body


async def _both(services: Services, cases: list[tuple[str, str, dict[str, str], bytes]]) -> None:
    apps = [create_app(services), create_app(services, hot_path=False)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 9)), base_url="http://modelwire.test"
        )
        for app in apps
    ]
    try:
        for method, path, headers, body in cases:
            hot, framework = [
                _normal(await client.request(method, path, headers=headers, content=body))
                for client in clients
            ]
            assert hot == framework, f"{method} {path} {body[:60]!r}"
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    settings = make_settings(limits=LimitsSettings(max_body_bytes=64 * 1024, max_text_chars=1000))
    services = make_services(EchoModel(), ErrorModel("broken"), settings=settings)
    await start_services(services)
    yield services
    await stop_services(services)


async def test_every_outcome_is_the_same_on_both_paths(services: Services) -> None:
    await _both(services, CASES)


async def test_authentication_and_scopes_are_the_same_on_both_paths(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    services = make_services(EchoModel(), settings=make_settings(auth=AuthSettings(mode="on")))
    store = KeyStore.in_data_dir(data_dir)
    predict = store.create([Scope.PREDICT])[0]
    jobs_only = store.create([Scope.JOBS_READ])[0]
    other_model = store.create([Scope.PREDICT], models=["sentiment"])[0]
    body = b'{"text": "hello"}'
    cases = [("POST", "/v1/models/echo/predict", JSON, body)]
    for key in (predict, jobs_only, other_model, "mw_wrong"):
        cases.append(("POST", "/v1/models/echo/predict", {**JSON, "Authorization": f"Bearer {key}"}, body))
        cases.append(("POST", "/v2/models/echo/infer", {**JSON, "X-API-Key": key}, b'{"inputs": []}'))
    await start_services(services)
    try:
        await _both(services, cases)
    finally:
        await stop_services(services)


async def test_the_hot_routes_are_the_ones_the_router_would_pick(services: Services) -> None:
    app = create_app(services)
    (hot,) = [m for m in app.user_middleware if m.cls is HotPathMiddleware]
    routes: list[HotRoute] = list(hot.kwargs["routes"])
    assert {r.path for r in routes} >= {"/predict", "/v1/models/{name}/predict"}
    for route in routes:
        path = route.path.replace("{name}", "echo").replace("{version}", "1")
        scope: dict[str, Any] = {"type": "http", "method": route.method, "path": path, "root_path": ""}
        chosen = next(r for r in app.router.routes if r.matches(scope)[0] == Match.FULL)
        assert isinstance(chosen, Route)
        assert chosen.endpoint == route.endpoint, path
        assert route.match(path) == chosen.matches(scope)[1]["path_params"]


async def test_a_hot_route_never_reaches_the_framework() -> None:
    """The fast path is taken (else the contract tests above would compare the framework with itself)."""
    reached: list[str] = []

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def endpoint(request: Any) -> Any:
        from starlette.responses import Response

        return Response(json.dumps(request.path_params), media_type="application/json")

    app = HotPathMiddleware(
        framework, routes=[HotRoute("POST", "/v1/models/{name}/predict", endpoint)], exception_handlers={}
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answered = await client.post("/v1/models/m1/predict")
        passed = await client.get("/v1/models/m1/predict")
    assert answered.json() == {"name": "m1"}
    assert passed.status_code == 204
    assert reached == ["/v1/models/m1/predict"]
