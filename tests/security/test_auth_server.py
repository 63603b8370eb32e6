"""Authentication on a real server: REST, SSE, Open Inference Protocol and WebSocket, each refusing or
serving every kind of credential the same way; browser WebSocket tokens; revocation without restart."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from modelwire.client import AsyncClient
from modelwire.errors import PermissionDeniedError, UnauthenticatedError
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import RateLimitRule
from tests.models import EchoModel
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, hs256_with, mint, unsigned
from tests.serving import ServeModule, ThreadedServer

TRANSPORTS = ["rest", "sse", "v2", "ws"]


@dataclass(frozen=True)
class Keys:
    store: KeyStore
    predict: str
    reader: str  # jobs:read only
    other_model: str  # predict, restricted to the model "other"


@pytest.fixture(scope="module")
def auth_dir(serve_module: ServeModule) -> Path:
    return serve_module.data_dir()


@pytest.fixture(scope="module")
def keys(auth_dir: Path) -> Keys:
    store = KeyStore.in_data_dir(auth_dir)
    return Keys(
        store,
        store.create({Scope.PREDICT}, name="predict")[0],
        store.create({Scope.JOBS_READ}, name="reader")[0],
        store.create({Scope.PREDICT}, models=["other"], name="other")[0],
    )


@pytest.fixture(scope="module")
def server(
    serve_module: ServeModule, auth_dir: Path, keys: Keys, signing_keys: SigningKeys
) -> ThreadedServer:
    """Authentication on (JWKS with RS256 + ES256 keys, issuer and audience), on loopback."""
    jwks = auth_dir.parent / "jwks.json"
    jwks.write_text(json.dumps(signing_keys.jwks()))
    return serve_module(
        EchoModel("echo"),
        EchoModel("tiny"),
        EchoModel("other"),
        data_dir=auth_dir,
        auth={"mode": "on", "jwt_jwks": jwks, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE},
        rate_limits={
            "rules": (
                RateLimitRule(scope="*", rate_per_s=1000, burst=2000),
                RateLimitRule(scope="predict", model="tiny", rate_per_s=0.01, burst=1),
            )
        },
    )


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: Any


async def call(server: ThreadedServer, transport: str, credential: str | None, model: str = "echo") -> Answer:
    """One prediction over ``transport`` with ``credential`` as a bearer; a WebSocket that opened and
    answered counts as 200, one refused at the handshake gives the refusal's status."""
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    if transport == "ws":
        url = server.http_url.replace("http://", "ws://") + f"/v1/models/{model}/ws"
        try:
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({"id": 1, "op": "predict", "text": "hi"}))
                return Answer(200, httpx.Headers(), json.loads(await ws.recv()))
        except InvalidStatus as refused:
            response = refused.response
            return Answer(
                response.status_code,
                httpx.Headers(list(response.headers.raw_items())),
                json.loads(response.body or b"null"),
            )
    path, body = {
        "rest": (f"/v1/models/{model}/predict", {"text": "hi"}),
        "sse": (f"/v1/models/{model}/predict/stream", {"texts": ["hi"]}),
        "v2": (
            f"/v2/models/{model}/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]},
        ),
    }[transport]
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        response = await client.post(path, json=body, headers=headers)
    content = response.json() if response.headers.get("content-type") == "application/json" else response.text
    return Answer(response.status_code, response.headers, content)


def error_message(transport: str, answer: Answer) -> str:
    if transport == "v2":  # the Open Inference Protocol keeps its own shape
        assert isinstance(answer.body["error"], str)
        return str(answer.body["error"])
    return str(answer.body["error"]["message"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_credentials_is_401_with_www_authenticate(server: ThreadedServer, transport: str) -> None:
    answer = await call(server, transport, None)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="modelwire"'
    assert "Authorization: Bearer" in error_message(transport, answer)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "bad",
    ["bad key", "expired", "wrong audience", "alg none", "hs/rs confusion", "foreign key", "revoked"],
)
async def test_bad_credentials_are_401_invalid_token(
    server: ThreadedServer, keys: Keys, signing_keys: SigningKeys, transport: str, bad: str
) -> None:
    if bad == "revoked":
        key, record = keys.store.create({Scope.PREDICT})
        keys.store.revoke(record.id)
    else:
        key = {
            "bad key": keys.predict[:-2] + "xx",
            "expired": mint(signing_keys, exp=1_600_000_000),
            "wrong audience": mint(signing_keys, aud="someone-else"),
            "alg none": unsigned(),
            "hs/rs confusion": hs256_with(signing_keys.rsa_public_pem),
            "foreign key": mint(signing_keys, "HS256"),
        }[bad]
    answer = await call(server, transport, key)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="modelwire", error="invalid_token"'


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_missing_scope_is_403_naming_it(server: ThreadedServer, keys: Keys, transport: str) -> None:
    answer = await call(server, transport, keys.reader)
    assert answer.status == 403
    assert "'predict' scope" in error_message(transport, answer)
    assert 'error="insufficient_scope", scope="predict"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_for_another_model_is_403(server: ThreadedServer, keys: Keys, transport: str) -> None:
    answer = await call(server, transport, keys.other_model)
    assert answer.status == 403
    assert "model 'echo'" in error_message(transport, answer)
    assert (await call(server, transport, keys.other_model, model="other")).status == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("credential", ["key", "RS256", "ES256"])
async def test_the_right_scope_is_served(
    server: ThreadedServer, keys: Keys, signing_keys: SigningKeys, transport: str, credential: str
) -> None:
    token = keys.predict if credential == "key" else mint(signing_keys, credential)
    answer = await call(server, transport, token)
    assert answer.status == 200, answer.body
    if transport == "rest":
        assert answer.body == {"echo": "hi", "length": 2}
        assert int(answer.headers["ratelimit-limit"]) == 2000
        assert "ratelimit-remaining" in answer.headers
    elif transport == "ws":
        assert answer.body == {"id": 1, "echo": "hi", "length": 2, "version": "1"}
    elif transport == "sse":
        assert '"echo":"hi"' in answer.body


async def test_over_the_rate_limit_is_429_with_headers(server: ThreadedServer, keys: Keys) -> None:
    key, _ = keys.store.create({Scope.PREDICT})
    assert (await call(server, "rest", key, model="tiny")).status == 200
    refused = await call(server, "rest", key, model="tiny")
    assert refused.status == 429
    assert refused.headers["ratelimit-limit"] == "1"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    ws = await call(server, "ws", key, model="tiny")
    assert ws.status == 429  # refused at the handshake too
    assert (await call(server, "rest", keys.predict, model="tiny")).status == 200  # another key


async def test_public_routes_need_no_credentials(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        for path in ("/v2/health/ready", "/v2/models/echo", "/v1/models", "/openapi.json", "/"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/v1/events")).status_code == 401
        assert (await client.get("/v1/jobs")).status_code == 401


async def test_a_key_is_refused_from_the_request_after_its_revocation(
    server: ThreadedServer, auth_dir: Path
) -> None:
    cli = KeyStore.in_data_dir(auth_dir)  # as `modelwire keys` would, beside the running server
    key, record = cli.create({Scope.PREDICT})
    assert (await call(server, "rest", key)).status == 200
    cli.revoke(record.id)
    answer = await call(server, "rest", key)
    assert answer.status == 401
    assert "revoked" in answer.body["error"]["message"]


async def test_the_api_key_header_works_too(server: ThreadedServer, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        response = await client.post(
            "/v1/models/echo/predict", json={"text": "x"}, headers={"X-API-Key": keys.predict}
        )
    assert response.status_code == 200


# -- browser WebSocket tokens ----------------------------------------------------------------------------


async def ws_token(server: ThreadedServer, credential: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        response = await client.post("/v1/auth/ws-token", headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/v1"):
        assert attribute in cookie
    answer: dict[str, Any] = response.json()
    return answer


def ws_url(server: ThreadedServer, path: str = "/v1/models/echo/ws") -> str:
    return server.http_url.replace("http://", "ws://") + path


async def test_a_browser_token_in_the_subprotocol_is_accepted_and_never_echoed(
    server: ThreadedServer, keys: Keys
) -> None:
    issued = await ws_token(server, keys.predict)
    assert issued["subprotocol"] == "modelwire.token." + issued["token"]
    assert issued["principal"].startswith("key:")
    async with connect(ws_url(server), subprotocols=["modelwire.v1.json", issued["subprotocol"]]) as ws:
        assert ws.subprotocol == "modelwire.v1.json"
        assert issued["token"] not in str(ws.response.headers)
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "hi"}))
        assert json.loads(await ws.recv())["echo"] == "hi"
    async with connect(ws_url(server, "/v1/ws"), subprotocols=[issued["subprotocol"]]) as ws:
        assert ws.subprotocol is None  # the only entry offered was the token: nothing is selected
        assert "sec-websocket-protocol" not in ws.response.headers


async def test_a_browser_token_in_a_cookie_is_accepted_from_the_same_origin(
    server: ThreadedServer, keys: Keys
) -> None:
    token = (await ws_token(server, keys.predict))["token"]
    host = server.http_url.removeprefix("http://")
    cookie = {"Cookie": f"theme=dark; modelwire_ws_token={token}"}
    async with connect(ws_url(server), additional_headers=cookie | {"Origin": f"http://{host}"}) as ws:
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "hi"}))
        assert json.loads(await ws.recv())["echo"] == "hi"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server), additional_headers=cookie | {"Origin": "https://evil.test"}):
            pass
    assert refused.value.response.status_code == 403


async def test_a_browser_token_is_refused_off_the_websocket_and_when_bad(
    server: ThreadedServer, keys: Keys
) -> None:
    token = (await ws_token(server, keys.predict))["token"]
    assert (await call(server, "rest", token)).status == 401  # not a bearer credential
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server), subprotocols=["modelwire.token." + token[:-3] + "abc"]):
            pass
    assert refused.value.response.status_code == 401
    reader = await call(server, "ws", keys.reader)
    assert reader.status == 403
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        response = await client.post("/v1/auth/ws-token", headers={"Authorization": f"Bearer {keys.reader}"})
    assert response.status_code == 403  # a token for a WebSocket needs what the WebSocket needs


async def test_keys_and_tokens_never_reach_the_logs(
    server: ThreadedServer, keys: Keys, signing_keys: SigningKeys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(
        logging.DEBUG, logger="modelwire"
    )  # the server's loggers (a client logs its own headers)
    jwt_token = mint(signing_keys, "ES256")
    secrets = [keys.predict, keys.predict.split("_", 2)[2], jwt_token, jwt_token.split(".")[2]]
    for transport in TRANSPORTS:
        for credential in (keys.predict, keys.predict + "x", jwt_token, jwt_token + "x"):
            await call(server, transport, credential)
    server_lines = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("modelwire"))
    assert "refused POST '/v1/models/echo/predict' from 127.0.0.1: UNAUTHENTICATED" in server_lines
    for secret in secrets:
        assert secret not in server_lines


# -- the Python client -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", ["rest", "grpc"])
async def test_the_client_sends_its_key_on_every_wire(
    server: ThreadedServer, keys: Keys, monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    monkeypatch.delenv("MODELWIRE_API_KEY", raising=False)
    url = server.http_url if wire == "rest" else server.grpc_url
    key, _ = keys.store.create({Scope.PREDICT, Scope.EVENTS})
    async with AsyncClient(url, api_key=key, timeout=10) as client:
        assert (await client.predict("I love this product")).sentiment == "positive"
        streamed = [item async for item in client.stream_predict(["great", "awful"])]  # WebSocket / gRPC
        assert len(streamed) == 2
        async for event in client.events(["models"], last_event_id=0):  # SSE / gRPC
            assert event.is_reset or event.type.startswith("model.")  # the stream was let in
            break
    async with AsyncClient(url, timeout=10) as client:
        with pytest.raises(UnauthenticatedError):
            await client.predict("hi")
    monkeypatch.setenv("MODELWIRE_API_KEY", key)
    async with AsyncClient(url, timeout=10) as client:
        assert (await client.predict("I love this product")).sentiment == "positive"
    async with AsyncClient(url, token=keys.reader, timeout=10) as client:  # token wins over the env
        with pytest.raises(PermissionDeniedError, match="'predict' scope"):
            await client.predict("hi")
