"""``SecurityMiddleware``: the one place REST, SSE and WebSocket calls are authenticated and admitted.

First, a WebSocket handshake or a state-changing request (not GET, HEAD, OPTIONS) that a browser sent on
a foreign page's behalf (its ``Origin`` or ``Sec-Fetch-Site`` say so) is refused with 403, even with
authentication off (``security/crosssite.py`` decides).

Per call: the route's scope (``rest_scope``), the credentials (``Authorization: Bearer``, the API-key
header, and on a WebSocket handshake the browser token from a ``modelwire.token.<token>`` subprotocol entry
or the ``modelwire_ws_token`` cookie), then ``SecurityPolicy.authenticate`` and ``decide``. The principal is
set for the downstream call (``use_principal``) and reset after it. Refusals are answered here: HTTP with
the REST error body (``/v2`` keeps the Open Inference Protocol shape) and 401 ``WWW-Authenticate`` / 403 /
429 ``RateLimit-*``; a WebSocket with the same HTTP response *instead of* the upgrade
(``websocket.http.response``), never accepted then closed. The token subprotocol entry is removed from the
scope, so the endpoint can never select (echo) it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelwire.errors import (
    ModelwireError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from modelwire.protocols.http.errors import error_response
from modelwire.security.crosssite import SAFE_METHODS
from modelwire.security.policy import Credentials, SecurityPolicy, rest_scope
from modelwire.security.principal import Principal, Scope, reset_principal, use_principal
from modelwire.security.ratelimit import RateDecision, rate_limit_headers, rate_limited_error

__all__ = ["WS_TOKEN_COOKIE", "WS_TOKEN_SUBPROTOCOL", "SecurityMiddleware"]

logger = logging.getLogger("modelwire.security")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_ROUTE_CACHE = 4096
WS_TOKEN_SUBPROTOCOL = "modelwire.token."  # noqa: S105 (a prefix, not a secret)
WS_TOKEN_COOKIE = "modelwire_ws_token"  # noqa: S105 (a cookie name)


class SecurityMiddleware:
    """Pure ASGI: ``app.add_middleware(SecurityMiddleware, policy=services.security)``."""

    def __init__(self, app: ASGIApp, policy: SecurityPolicy, api_key_header: str = "X-API-Key") -> None:
        self.app = app
        self.policy = policy
        self._key_header = api_key_header.lower().encode("latin-1")
        self._routes: dict[tuple[str, str], tuple[Scope | None, str | None]] = {}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        websocket = kind == "websocket"
        if websocket:
            scope, ws_token = _take_subprotocol_token(scope)
        elif kind == "http":
            ws_token = None
        else:
            await self.app(scope, receive, send)
            return
        policy = self.policy
        client = scope.get("client")
        peer = client[0] if client else None
        if websocket or scope["method"] not in SAFE_METHODS:
            try:  # before authentication: a forged request is refused even with auth off
                self._check_cross_site(scope, websocket)
            except PermissionDeniedError as exc:
                await self._refuse(scope, receive, send, exc, [], peer)
                return
        if not policy.enforcing:  # auth off, no rate limits: nothing to refuse, only who is calling
            token = use_principal(policy.public(peer))
            try:
                await self.app(scope, receive, send)
            finally:
                reset_principal(token)
            return
        route, model = self._route(scope.get("method", "GET"), scope["path"])
        decision: RateDecision | None = None
        try:
            if route is None or not policy.auth_on:
                principal = policy.public(peer)
            else:
                principal = policy.authenticate(self._credentials(scope, peer, ws_token))
            decision = await policy.decide(principal, route, model)
            if decision is not None and not decision.allowed:
                raise rate_limited_error(decision)
        except ModelwireError as exc:
            await self._refuse(scope, receive, send, exc, self._refusal_headers(exc, decision), peer)
            return
        await self._call(scope, receive, send, principal, decision)

    def _check_cross_site(self, scope: MutableMapping[str, Any], websocket: bool) -> None:
        origin = fetch_site = host = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        if origin is None and fetch_site is None:
            return  # not a browser (curl, the SDKs): the common case, decided without the policy
        method = "WebSocket" if websocket else scope["method"]
        self.policy.cross_site.check(
            method, scope.get("scheme", "http"), host, origin=origin, fetch_site=fetch_site
        )

    async def _refuse(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        exc: ModelwireError,
        headers: list[tuple[str, str]],
        peer: str | None,
    ) -> None:
        # An audit line without the credential: who (address), what (path quoted: it is the
        # client's text), why. Rate-limit refusals, which come in floods, only at debug.
        level = logging.DEBUG if isinstance(exc, ResourceExhaustedError) else logging.INFO
        method = scope.get("method", "WS")
        logger.log(level, "refused %s %r from %s: %s", method, scope["path"], peer, exc.code.value)
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, exc, headers)
        else:
            await _refuse_http(scope, send, exc, headers)

    def _route(self, method: str, path: str) -> tuple[Scope | None, str | None]:
        """``rest_scope``, remembered: a handful of paths make up nearly all traffic."""
        key = (method, path)
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= _ROUTE_CACHE:
                self._routes.clear()
            found = self._routes[key] = rest_scope(method, path)
        return found

    async def _call(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        principal: Principal,
        decision: RateDecision | None,
    ) -> None:
        if decision is not None and scope["type"] == "http":
            extra = [(k.encode(), v.encode()) for k, v in rate_limit_headers(decision)]
            inner = send

            async def send_with_limits(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                await inner(message)

            send = send_with_limits
        token = use_principal(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_principal(token)

    def _credentials(
        self, scope: MutableMapping[str, Any], peer: str | None, ws_token: str | None
    ) -> Credentials:
        bearer = api_key = cookie = origin = host = None
        key_header = self._key_header
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    bearer = rest.strip()
            elif name == key_header:
                api_key = value.decode("latin-1").strip() or None
            elif ws_token is None and scope["type"] == "websocket":
                if name == b"cookie":
                    cookie = _cookie(value.decode("latin-1"), WS_TOKEN_COOKIE)
                elif name == b"origin":
                    origin = value.decode("latin-1")
                elif name == b"host":
                    host = value.decode("latin-1")
        if cookie is not None and bearer is None and api_key is None:
            # A cookie rides along with any page's request: refuse cross-site WebSocket hijacking.
            if origin is not None and origin.split("://", 1)[-1] != host:
                raise PermissionDeniedError(
                    "a WebSocket authenticated by cookie must come from this server's own origin"
                )
            ws_token = cookie
        return Credentials(bearer=bearer, api_key=api_key, ws_token=ws_token, peer=peer)

    def _refusal_headers(self, exc: ModelwireError, decision: RateDecision | None) -> list[tuple[str, str]]:
        if isinstance(exc, UnauthenticatedError):
            return [("www-authenticate", self.policy.www_authenticate(exc))]
        if isinstance(exc, PermissionDeniedError) and "required_scope" in exc.details:
            scope = exc.details["required_scope"]
            return [
                ("www-authenticate", f'Bearer realm="modelwire", error="insufficient_scope", scope="{scope}"')
            ]
        if decision is not None and not decision.allowed:
            return [(k, v) for k, v in rate_limit_headers(decision) if k != "retry-after"]
        return []


def _take_subprotocol_token(scope: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], str | None]:
    """Remove a ``modelwire.token.<token>`` entry from the offered subprotocols; return it."""
    offered = scope.get("subprotocols") or ()
    token = None
    kept = []
    for entry in offered:
        if entry.startswith(WS_TOKEN_SUBPROTOCOL):
            token = entry[len(WS_TOKEN_SUBPROTOCOL) :] or None
        else:
            kept.append(entry)
    if len(kept) == len(offered):
        return scope, None
    return {**scope, "subprotocols": kept}, token


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _refuse_http(
    scope: MutableMapping[str, Any], send: Send, exc: ModelwireError, headers: list[tuple[str, str]]
) -> None:
    response = error_response(exc, v2=scope["path"].startswith("/v2"))
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [*response.raw_headers, *_encoded(headers)],
        }
    )
    await send({"type": "http.response.body", "body": bytes(response.body)})


async def _refuse_websocket(
    scope: MutableMapping[str, Any],
    receive: Receive,
    send: Send,
    exc: ModelwireError,
    headers: list[tuple[str, str]],
) -> None:
    """The HTTP refusal in place of the upgrade; a plain close (403) without the ASGI extension."""
    try:
        if (await receive()).get("type") != "websocket.connect":
            return
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response(exc)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": [*response.raw_headers, *_encoded(headers)],
            }
        )
        await send({"type": "websocket.http.response.body", "body": bytes(response.body)})
    except (RuntimeError, OSError):
        pass  # the client left before hearing why
